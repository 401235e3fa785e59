"""Export services: submit (with idempotency and quotas), cancel, retry, and the state changes
the pipeline makes. Services write; selectors read; the API calls one service per request."""

import hashlib
import json
import logging
import re
import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from exports.credentials import S3Credentials, encrypt_credentials, parse_export_s3_key
from exports.models import Export, Quota, Thumbnail
from resourced.errors import ServiceError
from resourced.logging import bind_task_id
from resourced.s3 import S3Location
from resourced.storage_info import parse_storage_info

logger = logging.getLogger(__name__)

CONTAINER_EXTENSIONS = {"ts": ".ts", "mp4": ".mp4"}
_HMS = re.compile(r"^(?:(\d+):)?([0-5]?\d):([0-5]?\d)(?:\.(\d{1,3}))?$")


class ExportError(ServiceError):
    """A failure of an export, with its ErrorCode (api.md §1)."""

    def __init__(self, code: int, message: str):
        super().__init__(message, kind="export")
        self.code = code


class QuotaExceeded(ServiceError):
    kind = "quota"
    status = 429

    def __init__(self, message: str, *, time_wait_ms: int):
        super().__init__(message, extra={"TimeWait": time_wait_ms})


def parse_start_time(value) -> int:
    """StartTime as ms: `HH:MM:SS`, `HH:MM:SS.mmm`, `MM:SS`, or a number of ms (as a string)."""
    if isinstance(value, bool):
        raise ValueError("must be HH:MM:SS[.mmm], MM:SS or a number of milliseconds")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("must not be negative")
        return int(value)
    text = str(value).strip()
    if re.fullmatch(r"\d{1,15}", text):
        return int(text)
    match = _HMS.fullmatch(text)
    if not match:
        raise ValueError("must be HH:MM:SS[.mmm], MM:SS or a number of milliseconds")
    hours, minutes, seconds, millis = match.groups()
    total = (int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds)) * 1000
    if millis:
        total += int(millis.ljust(3, "0"))
    return total


def live_path_parts(live_path: str) -> list[str]:
    return [part for part in PurePosixPath(live_path).parts if part not in ("", "/")]


def output_file_name(*, file_name: str, export_format: str, peer_id: str, recording: str, start_pos: int,
                     duration_ms: int) -> str:
    extension = CONTAINER_EXTENSIONS[export_format]
    base = file_name or f"{peer_id}_{recording}_{start_pos}_{duration_ms}"
    if PurePosixPath(base).suffix.lower() in CONTAINER_EXTENSIONS.values():
        return base
    return base + extension


def image_location(*, peer_id: str, recording: str, start_pos: int, duration_ms: int) -> tuple[str, str]:
    """(path, filename) of the clip's first frame in the image bed."""
    return peer_id, f"{peer_id}_{recording}_{start_pos}_{duration_ms}.jpg"


@dataclass(frozen=True)
class ExportRequest:
    """A validated export-to-s3dir request."""

    service_caller: str
    userid: str
    live_path: str
    peer_id: str
    file_name: str
    export_type: int
    export_format: str
    start_pos: int
    start_time_ms: int
    duration_ms: int
    source_bucket: str
    source_region: str
    source_prefix: str
    dest_bucket: str
    dest_region: str
    dest_credentials: S3Credentials | None

    @property
    def quota_subject(self) -> str:
        return self.userid or f"caller:{self.service_caller}"

    def idempotency_key(self) -> str:
        identity = [self.quota_subject, self.live_path, self.start_pos, self.duration_ms, self.export_type,
                    self.export_format, self.file_name, self.dest_region, self.dest_bucket]
        return hashlib.sha256(json.dumps(identity).encode()).hexdigest()


# --- quotas ------------------------------------------------------------------------------------

def quota_for(*, userid: str, service_caller: str) -> Quota:
    rows = {
        (q.scope, q.subject): q
        for q in Quota.objects.filter(
            scope__in=[Quota.Scope.USER, Quota.Scope.CALLER, Quota.Scope.DEFAULT],
            subject__in=[userid, service_caller, ""],
        )
    }
    candidates = [(Quota.Scope.USER, userid)] if userid else []
    candidates += [(Quota.Scope.CALLER, service_caller), (Quota.Scope.DEFAULT, "")]
    for candidate in candidates:
        if candidate in rows:
            return rows[candidate]
    return Quota(scope=Quota.Scope.DEFAULT, max_clip_ms=settings.EXPORT_MAX_DURATION_MS)


def _subject_filter(request: ExportRequest) -> dict:
    return {"userid": request.userid} if request.userid else {"userid": "", "service_caller": request.service_caller}


def quota_check(request: ExportRequest) -> None:
    """Raise QuotaExceeded when this request would go over its quota or the service is saturated."""
    quota = quota_for(userid=request.userid, service_caller=request.service_caller)
    if request.duration_ms > quota.max_clip_ms:
        raise QuotaExceeded(
            f"Duration: {request.duration_ms} ms is over the quota of {quota.max_clip_ms} ms per clip", time_wait_ms=0
        )
    mine = Export.objects.filter(**_subject_filter(request))
    active = mine.filter(status__in=Export.ACTIVE).count()
    if active >= quota.max_active_exports:
        raise QuotaExceeded(
            f"quota: {active} exports are already queued or running (at most {quota.max_active_exports})",
            time_wait_ms=max(settings.EXPORT_POLL_MS, 5000),
        )
    day_start = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    used_ms = (
        mine.filter(created_at__gte=day_start)
        .exclude(status__in=[Export.Status.FAILED, Export.Status.CANCELLED])
        .aggregate(total=Sum("duration_ms"))["total"]
        or 0
    )
    if used_ms + request.duration_ms > quota.max_minutes_per_day * 60_000:
        tomorrow = day_start + timedelta(days=1)
        raise QuotaExceeded(
            f"quota: {used_ms // 60000} of {quota.max_minutes_per_day} exported minutes used today",
            time_wait_ms=int((tomorrow - timezone.now()).total_seconds() * 1000),
        )
    if Export.objects.filter(status__in=Export.ACTIVE).count() >= settings.EXPORT_SATURATION_LIMIT:
        raise QuotaExceeded("the service is saturated, try again later", time_wait_ms=10_000)


# --- submit, cancel, retry -------------------------------------------------------------------

def _answer_existing(key: str) -> Export | None:
    """The export a repost of the same request answers: a live one, or a recent failure."""
    live = Export.objects.filter(idempotency_key=key, status__in=Export.LIVE).first()
    if live is not None:
        return live
    cutoff = timezone.now() - timedelta(seconds=settings.EXPORT_FAILURE_TTL)
    return (
        Export.objects.filter(
            idempotency_key=key,
            status__in=[Export.Status.FAILED, Export.Status.CANCELLED],
            finished_at__gte=cutoff,
        )
        .order_by("-finished_at")
        .first()
    )


def export_submit(*, request: ExportRequest) -> tuple[Export, bool]:
    """The export for this request, and whether it was created now (and queued)."""
    key = request.idempotency_key()
    existing = _answer_existing(key)
    if existing is not None:
        return existing, False
    quota_check(request)
    try:
        with transaction.atomic():
            export = Export.objects.create(
                idempotency_key=key,
                service_caller=request.service_caller,
                userid=request.userid,
                live_path=request.live_path,
                peer_id=request.peer_id,
                file_name=request.file_name,
                export_type=request.export_type,
                export_format=request.export_format,
                start_pos=request.start_pos,
                start_time_ms=request.start_time_ms,
                duration_ms=request.duration_ms,
                source_bucket=request.source_bucket,
                source_region=request.source_region,
                source_prefix=request.source_prefix,
                dest_bucket=request.dest_bucket,
                dest_region=request.dest_region,
                dest_credentials=encrypt_credentials(request.dest_credentials),
            )
            transaction.on_commit(lambda: export_enqueue(export=export))
    except IntegrityError:
        # the same request, posted at the same moment by another client, won the race
        existing = Export.objects.filter(idempotency_key=key, status__in=Export.LIVE).first()
        if existing is None:
            raise
        return existing, False
    with bind_task_id(export.task_id):
        logger.info("export %s queued: %s [%s ms + %s ms] type %s", export.task_id, export.live_path,
                    export.start_time_ms, export.duration_ms, export.export_type)
    return export, True


def export_enqueue(*, export: Export) -> None:
    from exports.tasks import download

    download.apply_async(args=[export.task_id, export.restarts])


def export_cancel(*, export: Export) -> Export:
    updated = Export.objects.filter(pk=export.pk, status__in=Export.ACTIVE).update(
        status=Export.Status.CANCELLED,
        stage=Export.Stage.CANCELLED,
        error_code=-8,
        error_message="cancelled",
        dest_credentials=b"",
        finished_at=timezone.now(),
    )
    export.refresh_from_db()
    if updated:
        logger.info("export %s cancelled", export.task_id)
        if export.host == settings.WORKER_HOSTNAME or not export.host:
            work_dir_remove(export=export)
        # a worker on another host removes its work dir when its next step sees the cancel
    return export


def export_retry(*, export: Export) -> Export:
    """Start a failed or cancelled export again (staff action). Credentials erased at its end are
    gone, so it uploads with the service's own credentials unless they are still there."""
    if export.status not in (Export.Status.FAILED, Export.Status.CANCELLED):
        raise ServiceError(f"export {export.task_id} is {export.status}; only failed or cancelled exports are retried")
    with transaction.atomic():
        if Export.objects.filter(idempotency_key=export.idempotency_key, status__in=Export.LIVE).exclude(
            pk=export.pk
        ).exists():
            raise ServiceError("a newer attempt of this request is live")
        Export.objects.filter(pk=export.pk).update(
            status=Export.Status.QUEUED, stage=Export.Stage.QUEUED, progress=0, error_code=1, error_message="",
            attempts={}, host="", heartbeat_at=None, finished_at=None, started_at=None, timings={}, step_hosts={},
            image_path="", video_path="", restarts=export.restarts + 1, updated_at=timezone.now(),
        )
        export.refresh_from_db()
        transaction.on_commit(lambda: export_enqueue(export=export))
    return export


# --- state changes made by the pipeline ----------------------------------------------------------

def work_dir(export: Export) -> Path:
    return Path(settings.EXPORT_WORK_DIR) / export.task_id


def work_dir_remove(*, export: Export) -> None:
    shutil.rmtree(work_dir(export), ignore_errors=True)


def export_mark_failed(*, export: Export, code: int, message: str) -> None:
    Export.objects.filter(pk=export.pk, status__in=Export.ACTIVE).update(
        status=Export.Status.FAILED,
        stage=Export.Stage.FAILED,
        error_code=code,
        error_message=message[:1024],
        dest_credentials=b"",
        finished_at=timezone.now(),
    )
    work_dir_remove(export=export)
    logger.warning("export %s failed with %s: %s", export.task_id, code, message)


def export_mark_ready(*, export: Export, **fields) -> None:
    Export.objects.filter(pk=export.pk).update(
        status=Export.Status.READY,
        stage=Export.Stage.DONE,
        progress=100,
        error_code=5,
        error_message="ready",
        dest_credentials=b"",
        finished_at=timezone.now(),
        **fields,
    )
    logger.info("export %s ready at %s", export.task_id, fields.get("video_path", ""))


# --- building a request from validated input ----------------------------------------------------

def source_location_for(*, live_path: str, storage_info: str) -> S3Location:
    """The source storage: the storage_info entry whose purpose is LivePath's first element, or
    the service's default source."""
    if storage_info:
        return parse_storage_info(storage_info, purpose=live_path_parts(live_path)[0])
    return S3Location(bucket=settings.SOURCE_DEFAULT_BUCKET, region=settings.SOURCE_DEFAULT_REGION,
                      prefix=settings.SOURCE_DEFAULT_PREFIX)


def export_request_build(*, data: dict, session_userid: str) -> ExportRequest:
    """An ExportRequest from the API's validated fields: names, storages and credentials resolved."""
    live_path = data["LivePath"]
    parts = live_path_parts(live_path)
    peer_id = data.get("PeerId") or parts[1]
    source = source_location_for(live_path=live_path, storage_info=data.get("storage_info") or "")
    file_name = data.get("FileName") or ""
    export_format = data.get("ExportFormat")
    if export_format is None:
        suffix = PurePosixPath(file_name).suffix.lower()
        export_format = "mp4" if suffix == ".mp4" else "ts"
    credentials = parse_export_s3_key(data["ExportS3Key"]) if data.get("ExportS3Key") else None
    return ExportRequest(
        service_caller=data["ServiceCaller"],
        userid=data.get("userid") or session_userid,
        live_path=live_path,
        peer_id=peer_id,
        file_name=file_name,
        export_type=int(data.get("export_type", 0)),
        export_format=export_format,
        start_pos=int(data["StartPos"]),
        start_time_ms=parse_start_time(data["StartTime"]),
        duration_ms=int(data["Duration"]),
        source_bucket=source.bucket,
        source_region=source.region,
        source_prefix=source.prefix,
        dest_bucket=data.get("ExportS3Bucket") or settings.EXPORT_DEFAULT_BUCKET,
        dest_region=data.get("ExportS3Region") or settings.EXPORT_DEFAULT_REGION,
        dest_credentials=credentials,
    )


# --- getthumbnail -------------------------------------------------------------------------------

def thumbnail_request(*, data: dict, session_userid: str):
    """The Thumbnail for this position, queued when new (or when its failure TTL has passed)."""
    from exports.tasks import getthumbnail

    live_path = data["LivePath"]
    parts = live_path_parts(live_path)
    source = source_location_for(live_path=live_path, storage_info=data.get("storage_info") or "")
    start_time_ms = parse_start_time(data["StartTime"])
    identity = [source.bucket, source.prefix, live_path, int(data["StartPos"]), start_time_ms]
    key = hashlib.sha256(json.dumps(identity).encode()).hexdigest()
    thumb, created = Thumbnail.objects.get_or_create(
        idempotency_key=key,
        defaults=dict(userid=session_userid, live_path=live_path, peer_id=data.get("PeerId") or parts[1],
                      start_pos=int(data["StartPos"]), start_time_ms=start_time_ms, source_bucket=source.bucket,
                      source_region=source.region, source_prefix=source.prefix),
    )
    expired = (thumb.status == Thumbnail.Status.FAILED and thumb.finished_at is not None
               and thumb.finished_at < timezone.now() - timedelta(seconds=settings.EXPORT_FAILURE_TTL))
    if expired:
        Thumbnail.objects.filter(pk=thumb.pk).update(status=Thumbnail.Status.QUEUED, error_code=1, error_message="",
                                                     finished_at=None)
        thumb.refresh_from_db()
    if created or expired:
        transaction.on_commit(lambda: getthumbnail.apply_async(args=[thumb.task_id]))
    return thumb
