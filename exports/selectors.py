"""Reads of exports: lookups and the answer body of export-to-s3dir."""

from django.conf import settings
from django.utils import timezone

from exports.models import Export

VERSION = "v1"


# what export_response reads: a poll loads these columns only
RESPONSE_FIELDS = ("task_id", "status", "stage", "progress", "error_code", "error_message", "image_path",
                   "video_path", "lack_ms", "output_start_ms", "output_duration_ms", "created_at",
                   "started_at")


def export_get(*, task_id: str, owner: str, for_response: bool = False) -> Export | None:
    """The export `task_id` if it belongs to `owner` (the session's user), else None: another
    user's export answers as if it did not exist."""
    exports = Export.objects.filter(task_id=task_id, owner=owner).order_by()  # unique: no ordering needed
    if for_response:
        exports = exports.only(*RESPONSE_FIELDS)
    return next(iter(exports[:1]), None)


def empty_response() -> dict:
    """Every field of an export-to-s3dir answer, before anything is known."""
    return {
        "ErrorCode": 1,
        "ErrorMessage": "",
        "TimeWait": 0,
        "ImagePath": "",
        "VideoPath": "",
        "Version": VERSION,
        "S3Dir": settings.EXPORT_S3_DIR,
        "LackLength": 0,
        "TaskId": "",
        "Progress": 0,
        "Stage": "",
        "ClipStart": 0,
        "ClipDuration": 0,
    }


def estimate_time_wait(export: Export) -> int:
    """ms until the next poll is worth it: queue position for a queued export, the remaining
    share of the elapsed time for a running one."""
    poll = settings.EXPORT_POLL_MS
    if export.status == Export.Status.QUEUED:
        ahead = Export.objects.filter(status=Export.Status.QUEUED, created_at__lt=export.created_at).count()
        slots = max(1, settings.CELERY_WORKER_CONCURRENCY)
        return int(min(30_000, poll * (1 + ahead // slots)))
    if export.status == Export.Status.RUNNING:
        if export.started_at and export.progress > 0:
            elapsed = (timezone.now() - export.started_at).total_seconds() * 1000
            remaining = elapsed * (100 - export.progress) / export.progress
            return int(min(max(remaining, 500), 10_000))
        return poll
    return 0


def export_response(export: Export) -> dict:
    body = empty_response()
    status = export.status
    message = {
        Export.Status.QUEUED: "queued",
        Export.Status.RUNNING: f"processing: {export.stage}",
        Export.Status.READY: "ready to download",
    }.get(status, export.error_message)
    body.update(
        ErrorCode={Export.Status.QUEUED: 1, Export.Status.RUNNING: 1, Export.Status.READY: 5}.get(status, export.error_code),
        ErrorMessage=message,
        TimeWait=estimate_time_wait(export),
        ImagePath=export.image_path,
        VideoPath=export.video_path if status == Export.Status.READY else "",
        LackLength=int(export.lack_ms),
        TaskId=export.task_id,
        Progress=int(export.progress),
        Stage=export.stage,
        ClipStart=max(0, round(export.output_start_ms)) if export.output_start_ms is not None else 0,
        ClipDuration=round(export.output_duration_ms) if export.output_duration_ms is not None else 0,
    )
    return body


def thumbnail_response(thumb) -> dict:
    from exports.models import Thumbnail

    if thumb.status == Thumbnail.Status.QUEUED:
        return {"ErrorCode": 1, "ErrorMessage": "processing", "ImagePath": "", "TimeWait": settings.EXPORT_POLL_MS // 2}
    return {"ErrorCode": thumb.error_code, "ErrorMessage": thumb.error_message, "ImagePath": thumb.image_path,
            "TimeWait": 0}
