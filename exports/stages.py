"""The stages of an export, declared once: their order, the task and queue that run each, their
share of Progress, and the ErrorCode when a stage keeps failing. The chain (exports/tasks.py), the
services that record progress, the dashboard, the metrics and the admin all read this table.

Consecutive stages of one task run in one Celery message: after download (any io worker), the cpu
task of the host holding the work dir cuts, encodes (a copy export records encode with nothing to
do) and makes the thumbnail, then the io task of that host uploads. Fewer hops, and nothing of one
export waits behind another export's step in between.
"""

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

    def progress_at(self, fraction: float) -> int:
        low, high = self.progress
        return int(low + (high - low) * min(max(fraction, 0.0), 1.0))


DOWNLOAD = Stage("download", "exports.download", QUEUE_MEDIA_IO, (0, 40), ErrorCode.INTERNAL)
CUT = Stage("cut", "exports.process", QUEUE_MEDIA_CPU, (40, 55), ErrorCode.MEDIA)
ENCODE = Stage("encode", "exports.process", QUEUE_MEDIA_CPU, (55, 85), ErrorCode.MEDIA)
THUMBNAIL = Stage("thumbnail", "exports.process", QUEUE_MEDIA_CPU, (85, 90), ErrorCode.MEDIA)
UPLOAD = Stage("upload", "exports.upload", QUEUE_MEDIA_IO, (90, 100), ErrorCode.INTERNAL)

STAGES: tuple[Stage, ...] = (DOWNLOAD, CUT, ENCODE, THUMBNAIL, UPLOAD)
BY_NAME = {stage.name: stage for stage in STAGES}
STAGE_NAMES = tuple(BY_NAME)


def task_stages(task: str) -> tuple[Stage, ...]:
    """The stages one task runs, in order."""
    return tuple(stage for stage in STAGES if stage.task == task)


def tasks_after(task: str) -> list[str]:
    """The tasks that follow `task` in the chain, in order."""
    order = list(dict.fromkeys(stage.task for stage in STAGES))
    return order[order.index(task) + 1:]


def queue_of(task: str) -> str:
    return task_stages(task)[0].queue
