"""The stages of an export, declared once: their order, the task and queue that run each, their
share of Progress, and the ErrorCode when a stage keeps failing. The chain (exports/tasks.py), the
services that record progress, the dashboard, the metrics and the admin all read this table.

Consecutive stages of one task run in one Celery message: after download (any io worker), the cpu
task of the host holding the work dir cuts and encodes (a copy export records encode with nothing
to do), then the io task of that host makes the thumbnail and uploads the clip at the same time
(the upload is declared `beside` the thumbnail: it runs in a thread while the thumbnail is made,
so neither waits for the other). Fewer hops, and nothing of one export waits behind another
export's step in between.

A stream copy from keyframes (export_type 0, CutMode keyframe: a *remux*) only rewraps packets, I/O
work: the download task does all of it itself (`remux_task`), right after fetching the segments:
cut, thumbnail and upload, one message in all. An accurate copy re-encodes the partial GOPs at both
ends, CPU work that stays on the cpu queue, bounded by its concurrency.
"""

from collections.abc import Collection
from dataclasses import dataclass

from exports.errors import ErrorCode
from exports.queues import QUEUE_MEDIA_CPU, QUEUE_MEDIA_IO


@dataclass(frozen=True)
class Stage:
    name: str
    task: str
    queue: str
    progress: tuple[int, int]  # Progress at the start and at the end of the stage
    failure: ErrorCode  # when its attempts are spent
    # the stage of the same task this one runs beside (in a thread, started with it), or None
    beside: str | None = None
    # the task that runs this stage for a remux export (after its own stages), when not `task`
    remux_task: str | None = None

    def progress_at(self, fraction: float) -> int:
        low, high = self.progress
        return int(low + (high - low) * min(max(fraction, 0.0), 1.0))


DOWNLOAD = Stage("download", "exports.download", QUEUE_MEDIA_IO, (0, 40), ErrorCode.INTERNAL)
CUT = Stage("cut", "exports.process", QUEUE_MEDIA_CPU, (40, 55), ErrorCode.MEDIA, remux_task="exports.download")
ENCODE = Stage("encode", "exports.process", QUEUE_MEDIA_CPU, (55, 85), ErrorCode.MEDIA, remux_task="exports.download")
# the thumbnail decodes one frame (tens of ms, on the io worker of the host), while the upload sends the clip
THUMBNAIL = Stage("thumbnail", "exports.upload", QUEUE_MEDIA_IO, (85, 90), ErrorCode.MEDIA,
                  remux_task="exports.download")
UPLOAD = Stage("upload", "exports.upload", QUEUE_MEDIA_IO, (90, 100), ErrorCode.INTERNAL, beside="thumbnail",
               remux_task="exports.download")

STAGES: tuple[Stage, ...] = (DOWNLOAD, CUT, ENCODE, THUMBNAIL, UPLOAD)
BY_NAME = {stage.name: stage for stage in STAGES}
STAGE_NAMES = tuple(BY_NAME)


def _check_beside() -> None:
    for stage in STAGES:
        partner = BY_NAME.get(stage.beside) if stage.beside else None
        if stage.beside and (partner is None or partner.task != stage.task or partner.beside):
            raise ValueError(f"stage {stage.name} runs beside {stage.beside}: a stage of its task that runs itself")


_check_beside()


def task_stages(task: str, *, remux: bool = False) -> tuple[Stage, ...]:
    """The stages one task runs, in order. A remux export's download task runs them all; its
    process and upload tasks, should a message of them come (one sent before an upgrade), still
    run whatever of their own stages is not recorded yet."""
    return tuple(stage for stage in STAGES if stage.task == task or (remux and stage.remux_task == task))


def tasks_after(task: str, *, done: Collection[str] = ()) -> list[str]:
    """The tasks that follow `task` in the chain, in order: those with a stage not `done` yet (a
    remux's download task does them all; a message of its process task sent before an upgrade
    leaves the thumbnail and the upload to the upload task)."""
    order = list(dict.fromkeys(stage.task for stage in STAGES))
    return [later for later in order[order.index(task) + 1:]
            if any(stage.name not in done for stage in task_stages(later))]


def queue_of(task: str) -> str:
    """The queue a task is sent to (its first stage's)."""
    return task_stages(task)[0].queue
