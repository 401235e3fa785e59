"""Celery tasks of the export chain: thin wrappers that load the row and call a pipeline step.

Arguments are the export's TaskId and its generation (the number of restarts), never secrets or
media. A task whose export is no longer active, or belongs to an older generation, does nothing.
"""

import logging

from celery import chain, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from exports import pipeline
from exports.models import Export
from exports.services import ExportError, export_enqueue, export_mark_failed, export_mark_ready, work_dir_remove
from resourced.celery import QUEUE_MEDIA_CPU, QUEUE_MEDIA_IO, host_queue
from resourced.logging import bind_task_id

logger = logging.getLogger(__name__)

RETRY_POLICY = {"max_retries": 4}
MEDIA_STAGES = {"cut", "encode", "thumbnail"}


def _load(task_id: str, generation: int, stage: str) -> Export | None:
    export = Export.objects.filter(task_id=task_id).first()
    if export is None:
        logger.warning("export %s: no such export, %s skipped", task_id, stage)
        return None
    if export.restarts != generation:
        logger.info("export %s: %s of generation %s skipped (now %s)", task_id, stage, generation, export.restarts)
        return None
    if not export.is_active:
        if export.status == Export.Status.CANCELLED and export.host == settings.WORKER_HOSTNAME:
            work_dir_remove(export=export)
        return None
    if stage in (export.timings or {}):
        # a redelivered message of a step that already completed (its ack was lost)
        logger.info("export %s: %s already done in generation %s; skipped", task_id, stage, generation)
        return None
    if stage != "download" and export.host != settings.WORKER_HOSTNAME:
        logger.warning("export %s: %s arrived on %s but the work dir is on %s; skipped",
                       task_id, stage, settings.WORKER_HOSTNAME, export.host)
        return None
    return export


def _count_attempt(task, export: Export, stage: str) -> bool:
    """Count a delivery of this step (not a retry); False when the step used up its attempts."""
    if task.request.retries:
        return True
    attempts = dict(export.attempts or {})
    attempts[stage] = attempts.get(stage, 0) + 1
    updates = {"attempts": attempts, "stage": stage, "heartbeat_at": timezone.now()}
    if export.status == Export.Status.QUEUED:
        updates.update(status=Export.Status.RUNNING, started_at=timezone.now())
    Export.objects.filter(pk=export.pk).update(**updates)
    export.attempts = attempts
    if attempts[stage] > settings.EXPORT_MAX_ATTEMPTS:
        code = -7 if stage in MEDIA_STAGES else -9
        export_mark_failed(export=export, code=code,
                           message=f"{stage} did not complete after {settings.EXPORT_MAX_ATTEMPTS} attempts")
        return False
    return True


def run_step(task, task_id: str, generation: int, stage: str, step):
    with bind_task_id(task_id):
        export = _load(task_id, generation, stage)
        if export is None or not _count_attempt(task, export, stage):
            return None
        try:
            with pipeline.heartbeat(export):
                pipeline.injected_delay(stage)
                return step(export) or {}
        except ExportError as exc:
            export_mark_failed(export=export, code=exc.code, message=exc.message)
        except pipeline.TransientError as exc:
            if task.request.retries < task.max_retries:
                logger.warning("export %s: %s will be retried: %s", task_id, stage, exc)
                raise task.retry(exc=exc, countdown=min(2 ** task.request.retries, 30))
            export_mark_failed(export=export, code=exc.code, message=f"{exc} (after {task.request.retries} retries)")
        except SoftTimeLimitExceeded:
            export_mark_failed(export=export, code=-9, message=f"{stage} ran past its time limit")
        except Exception:
            logger.exception("export %s: %s failed", task_id, stage)
            export_mark_failed(export=export, code=-9, message=f"internal error in {stage} (logged with TaskId {task_id})")
        return None


def _still_running(task_id: str) -> bool:
    return Export.objects.filter(task_id=task_id, status=Export.Status.RUNNING).exists()


@shared_task(bind=True, name="exports.download", **RETRY_POLICY)
def download(self, task_id: str, generation: int = 0):
    result = run_step(self, task_id, generation, "download", pipeline.step_download)
    if result is not None and _still_running(task_id):
        host = settings.WORKER_HOSTNAME
        cpu, io = host_queue(QUEUE_MEDIA_CPU, host), host_queue(QUEUE_MEDIA_IO, host)
        # The thumbnail (one decoded frame) runs on the io worker of the host: on the cpu queue it
        # would wait behind every encode queued meanwhile, so exports submitted together would all
        # be ready only at the end of the batch (bench: p50 212 s -> near the encode order).
        chain(
            cut.si(task_id, generation).set(queue=cpu),
            encode.si(task_id, generation).set(queue=cpu),
            thumbnail.si(task_id, generation).set(queue=io),
            upload.si(task_id, generation).set(queue=io),
        ).apply_async()
    return None


@shared_task(bind=True, name="exports.cut", **RETRY_POLICY)
def cut(self, task_id: str, generation: int = 0):
    run_step(self, task_id, generation, "cut", pipeline.step_cut)


@shared_task(bind=True, name="exports.encode", **RETRY_POLICY)
def encode(self, task_id: str, generation: int = 0):
    run_step(self, task_id, generation, "encode", pipeline.step_encode)


@shared_task(bind=True, name="exports.thumbnail", **RETRY_POLICY)
def thumbnail(self, task_id: str, generation: int = 0):
    run_step(self, task_id, generation, "thumbnail", pipeline.step_thumbnail)


@shared_task(bind=True, name="exports.upload", **RETRY_POLICY)
def upload(self, task_id: str, generation: int = 0):
    result = run_step(self, task_id, generation, "upload", pipeline.step_upload)
    if result is not None:
        with bind_task_id(task_id):
            export = Export.objects.get(task_id=task_id)
            export_mark_ready(export=export, **result)
            work_dir_remove(export=export)


@shared_task(name="exports.sweep_stale")
def sweep_stale() -> int:
    """Restart exports whose worker stopped beating (a vanished host) from download, and resend
    exports queued for too long."""
    cutoff = timezone.now() - timezone.timedelta(seconds=settings.EXPORT_STALE_SECONDS)
    restarted = 0
    stale = Export.objects.filter(status=Export.Status.RUNNING).filter(Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at=None))
    for export in stale:
        with bind_task_id(export.task_id):
            if export.restarts >= settings.EXPORT_MAX_ATTEMPTS:
                export_mark_failed(export=export, code=-9, message=f"worker host {export.host or '?'} lost "
                                                                    f"{export.restarts} times")
                continue
            claimed = Export.objects.filter(pk=export.pk, status=Export.Status.RUNNING, heartbeat_at=export.heartbeat_at,
                                            restarts=export.restarts).update(
                status=Export.Status.QUEUED, stage=Export.Stage.QUEUED, progress=0, host="", attempts={},
                timings={}, step_hosts={}, restarts=export.restarts + 1, heartbeat_at=timezone.now(),
                updated_at=timezone.now(),
            )
            if claimed:
                logger.warning("export %s stale on host %s; restarted from download", export.task_id, export.host)
                export.refresh_from_db()
                export_enqueue(export=export)
                restarted += 1
    return restarted + _resend_long_queued()


def _resend_long_queued() -> int:
    """Publish again the download of exports queued for longer than EXPORT_QUEUED_RESEND_SECONDS
    (a message lost with a broker): the generation goes up, so the old message, if it is only
    waiting behind a backlog, is dropped when it arrives."""
    cutoff = timezone.now() - timezone.timedelta(seconds=settings.EXPORT_QUEUED_RESEND_SECONDS)
    resent = 0
    for export in Export.objects.filter(status=Export.Status.QUEUED, updated_at__lt=cutoff):
        with bind_task_id(export.task_id):
            claimed = Export.objects.filter(pk=export.pk, status=Export.Status.QUEUED,
                                            restarts=export.restarts).update(
                restarts=export.restarts + 1, updated_at=timezone.now())
            if claimed:
                logger.warning("export %s queued since %s; its download is published again",
                               export.task_id, export.updated_at)
                export.refresh_from_db()
                export_enqueue(export=export)
                resent += 1
    return resent


@shared_task(bind=True, name="exports.getthumbnail", **RETRY_POLICY)
def getthumbnail(self, task_id: str):
    from exports.models import Thumbnail

    with bind_task_id(task_id):
        thumb = Thumbnail.objects.filter(task_id=task_id, status=Thumbnail.Status.QUEUED).first()
        if thumb is None:
            return
        fields = {"status": Thumbnail.Status.FAILED, "finished_at": timezone.now()}
        try:
            fields.update(image_path=pipeline.make_thumbnail(thumb), status=Thumbnail.Status.READY, error_code=0,
                          error_message="Success")
        except ExportError as exc:
            fields.update(error_code=exc.code, error_message=exc.message)
        except pipeline.TransientError as exc:
            if self.request.retries < self.max_retries:
                raise self.retry(exc=exc, countdown=min(2 ** self.request.retries, 30))
            fields.update(error_code=exc.code, error_message=str(exc))
        except Exception:
            logger.exception("getthumbnail %s failed", task_id)
            fields.update(error_code=-9, error_message=f"internal error (logged with TaskId {task_id})")
        Thumbnail.objects.filter(pk=thumb.pk).update(**fields)
