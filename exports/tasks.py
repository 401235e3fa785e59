"""Celery tasks of the export pipeline: thin wrappers around exports.services.

Arguments are the export's TaskId and its generation (the number of restarts), never secrets or
media. Which stages each task runs, and on which queue, is declared in exports/stages.py; the
services run them, record them and send the next task.
"""

import logging

from celery import shared_task
from celery.signals import worker_process_init

from exports import services, steps
from exports.errors import ExportFailed, TransientExportError

# a transient failure (network, 5xx, image bed outage) is retried after 1, 2, 4, 8 s; a failed
# export ends its task in FAILURE (ExportFailed, an expected outcome: logged without a traceback)
RETRY = {"autoretry_for": (TransientExportError,), "max_retries": 4, "retry_backoff": 1, "retry_backoff_max": 30,
         "retry_jitter": False, "throws": (ExportFailed,)}


logger = logging.getLogger(__name__)


@worker_process_init.connect
def _warm_up(**_kwargs) -> None:
    try:
        steps.warm_up()
    except Exception:  # a worker that cannot reach S3 yet still starts; the first step retries
        logger.warning("S3 clients could not be built at start", exc_info=True)


def _run(task, task_id: str, generation: int, *, runs: str | None = None) -> str:
    """What became of the export (the task's result: Flower shows it beside SUCCESS)."""
    return services.export_run(delivery=services.Delivery(
        task=runs or task.name, task_id=task_id, generation=generation, is_retry=bool(task.request.retries),
        retries_left=task.request.retries < task.max_retries,
    ))


@shared_task(bind=True, name="exports.download", **RETRY)
def download(self, task_id: str, generation: int = 0) -> str:
    return _run(self, task_id, generation)


# A waiting export's download, sent again with a countdown: the same work as exports.download,
# under names that say in Flower why the export is looking again.
@shared_task(bind=True, name="exports.check_restore", **RETRY)
def check_restore(self, task_id: str, generation: int = 0) -> str:
    """archived objects of the range were being restored: read them now, or wait again."""
    return _run(self, task_id, generation, runs=download.name)


@shared_task(bind=True, name="exports.check_live_edge", **RETRY)
def check_live_edge(self, task_id: str, generation: int = 0) -> str:
    """the range went past the live edge: read the manifest again, export or wait again."""
    return _run(self, task_id, generation, runs=download.name)


@shared_task(bind=True, name="exports.process", **RETRY)
def process(self, task_id: str, generation: int = 0) -> str:
    """cut and encode, on the cpu queue of the host holding the work dir."""
    return _run(self, task_id, generation)


@shared_task(bind=True, name="exports.upload", **RETRY)
def upload(self, task_id: str, generation: int = 0) -> str:
    return _run(self, task_id, generation)


# The previous release sent cut, encode and thumbnail as three messages. Messages of it still
# queued at an upgrade run the stages of exports.process (those already recorded are skipped).
# Remove these once no message of the previous release can be left (docs/deploy.md, upgrades).
@shared_task(bind=True, name="exports.cut", **RETRY)
def legacy_cut(self, task_id: str, generation: int = 0) -> str:
    return _run(self, task_id, generation, runs=process.name)


@shared_task(bind=True, name="exports.encode", **RETRY)
def legacy_encode(self, task_id: str, generation: int = 0) -> str:
    return _run(self, task_id, generation, runs=process.name)


@shared_task(bind=True, name="exports.thumbnail", **RETRY)
def legacy_thumbnail(self, task_id: str, generation: int = 0) -> str:
    return _run(self, task_id, generation, runs=process.name)


@shared_task(bind=True, name="exports.callbacks.deliver", max_retries=None)
def deliver_callback(self, callback_id: int, attempt: int = 1) -> None:
    """One delivery attempt of a CallbackUrl; the next one (backoff, bounded by
    CALLBACK_RETRY_HOURS) as a retry."""
    following = services.export_callback_deliver(callback_id=callback_id, attempt=attempt)
    if following is not None:
        raise self.retry(args=[callback_id, following.attempt], countdown=following.countdown)


@shared_task(name="exports.sweep_stale")
def sweep_stale() -> int:
    return services.export_sweep_stale()


@shared_task(bind=True, name="exports.getthumbnail", **RETRY)
def getthumbnail(self, task_id: str) -> None:
    services.thumbnail_make(task_id=task_id, retries_left=self.request.retries < self.max_retries)
