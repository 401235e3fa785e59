"""Export services: submit (with idempotency and quotas), cancel, retry, and the state changes
the pipeline makes. Services write; selectors read; the API calls one service per request."""

import contextvars
import hashlib
import json
import logging
import re
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import IntegrityError, connections, transaction
from django.db.models import Case, Count, F, Q, Sum, Value, When
from django.db.models.functions import Greatest
from django.utils import timezone

from exports import media, steps
from exports.credentials import (
    S3Credentials,
    decrypt_credentials,
    encrypt_credentials,
    parse_export_s3_key,
)
from exports.errors import (
    ErrorCode,
    ExportError,
    ExportFailed,
    RangeNotRecorded,
    SourceArchived,
    SourceNotReady,
    TransientExportError,
)
from exports.models import Export, ExportCallback, ExportCallbackDelivery, Thumbnail
from exports.paths import ExportPaths, live_path_parts, work_dir_of
from exports.selectors import READY, export_response, quota_for
from exports.stages import BY_NAME, Stage, queue_of, task_stages, tasks_after
from resourced.callbacks import delivery as callback_delivery
from resourced.celery import app as celery_app
from resourced.celery import host_queue, max_countdown
from resourced.errors import ServiceError
from resourced.logging import bind_task_id
from resourced.s3 import S3Location
from resourced.storage_info import parse_storage_info

logger = logging.getLogger(__name__)

_HMS = re.compile(r"^(?:(\d+):)?([0-5]?\d):([0-5]?\d)(?:\.(\d{1,3}))?$")
MAX_START_TIME_MS = 2**53  # what a BigIntegerField and a JSON number both hold exactly
# at most this many progress writes a second per export (stage ends are always written)
PROGRESS_WRITES_PER_SECOND = 2


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
        if value > MAX_START_TIME_MS:
            raise ValueError(f"must be at most {MAX_START_TIME_MS} ms")
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
    if total > MAX_START_TIME_MS:
        raise ValueError(f"must be at most {MAX_START_TIME_MS} ms")
    return total


@dataclass(frozen=True)
class ExportRequest:
    """A validated export-to-s3dir request."""

    service_caller: str
    owner: str  # the session's user
    userid: str
    live_path: str
    peer_id: str
    file_name: str
    export_type: int
    export_format: str
    cut_mode: str
    restore_tier: str
    callback_url: str
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
        identity = [self.owner, self.quota_subject, self.live_path, self.start_pos, self.duration_ms, self.export_type,
                    self.export_format, self.file_name, self.dest_region, self.dest_bucket]
        if self.cut_mode != Export.CutMode.ACCURATE:  # keys of accurate exports stay as they were
            identity.append(self.cut_mode)
        return hashlib.sha256(json.dumps(identity).encode()).hexdigest()


# --- quotas ------------------------------------------------------------------------------------

def _subject_filter(request: ExportRequest) -> dict:
    return {"userid": request.userid} if request.userid else {"userid": "", "service_caller": request.service_caller}


def quota_check(request: ExportRequest) -> None:
    """Raise QuotaExceeded when this request would go over its quota or the service is saturated."""
    quota = quota_for(userid=request.userid, service_caller=request.service_caller)
    if request.duration_ms > quota.max_clip_ms:
        raise QuotaExceeded(
            f"Duration: {request.duration_ms} ms is over the quota of {quota.max_clip_ms} ms per clip", time_wait_ms=0
        )
    day_start = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    # one query for the three counts (the submit's cost is mostly its queries)
    usage = Export.objects.filter(**_subject_filter(request)).aggregate(
        active=Count("pk", filter=Q(status__in=Export.WORKING)),
        waiting=Count("pk", filter=Q(status=Export.Status.WAITING)),
        used_ms=Sum("duration_ms", filter=Q(created_at__gte=day_start)
                    & ~Q(status__in=[Export.Status.FAILED, Export.Status.CANCELLED])),
    )
    active = usage["active"]
    if active >= quota.max_active_exports:
        raise QuotaExceeded(
            f"quota: {active} exports are already queued or running (at most {quota.max_active_exports})",
            time_wait_ms=max(settings.EXPORT_POLL_MS, 5000),
        )
    waiting = usage["waiting"]
    if waiting >= quota.max_waiting:
        raise QuotaExceeded(
            f"quota: {waiting} exports are already waiting on archive restores or the live edge "
            f"(at most {quota.max_waiting})",
            time_wait_ms=max(settings.EXPORT_POLL_MS, 30_000),
        )
    used_ms = usage["used_ms"] or 0
    if used_ms + request.duration_ms > quota.max_minutes_per_day * 60_000:
        tomorrow = day_start + timedelta(days=1)
        raise QuotaExceeded(
            f"quota: {used_ms // 60000} of {quota.max_minutes_per_day} exported minutes used today",
            time_wait_ms=int((tomorrow - timezone.now()).total_seconds() * 1000),
        )
    if Export.objects.filter(status__in=Export.WORKING).count() >= settings.EXPORT_SATURATION_LIMIT:
        raise QuotaExceeded("the service is saturated, try again later", time_wait_ms=10_000)


# --- submit, cancel, retry -------------------------------------------------------------------

def _answer_existing(key: str) -> Export | None:
    """The export a repost of the same request answers: a live one, or else the latest recent
    failure (one query)."""
    cutoff = timezone.now() - timedelta(seconds=settings.EXPORT_FAILURE_TTL)
    ended = [Export.Status.FAILED, Export.Status.CANCELLED]
    return (
        Export.objects.filter(Q(status__in=Export.LIVE) | Q(status__in=ended, finished_at__gte=cutoff),
                              idempotency_key=key)
        .annotate(ended=Case(When(status__in=ended, then=Value(1)), default=Value(0)))
        .order_by("ended", F("finished_at").desc(nulls_last=True), "-pk")
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
                owner=request.owner,
                userid=request.userid,
                live_path=request.live_path,
                peer_id=request.peer_id,
                file_name=request.file_name,
                export_type=request.export_type,
                export_format=request.export_format,
                cut_mode=request.cut_mode,
                restore_tier=request.restore_tier,
                callback_url=request.callback_url,
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
    """Send the export's first task (any io worker takes it); its arguments are ids, never secrets."""
    celery_app.send_task(BY_NAME["download"].task, args=[export.task_id, export.restarts])


def export_cancel(*, export: Export) -> Export:
    with transaction.atomic():
        updated = Export.objects.filter(pk=export.pk, status__in=Export.ACTIVE).update(
            status=Export.Status.CANCELLED,
            ended_in_stage=F("stage"),
            stage=Export.Stage.CANCELLED,
            error_code=-8,
            error_message="cancelled",
            dest_credentials=b"",
            finished_at=timezone.now(),
        )
        if updated:
            _callback_at_end(export)
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
            next_check_at=None, wait_deadline=None, waiting_on={}, ended_in_stage="",
        )
        export.refresh_from_db()
        transaction.on_commit(lambda: export_enqueue(export=export))
    return export


# --- running the stages: the one place that records what the pipeline does -------------------------

def work_dir_remove(*, export: Export) -> None:
    shutil.rmtree(work_dir_of(export.task_id), ignore_errors=True)


def export_mark_failed(*, export: Export, code: int, message: str) -> None:
    with transaction.atomic():
        updated = Export.objects.filter(pk=export.pk, status__in=Export.ACTIVE).update(
            status=Export.Status.FAILED,
            ended_in_stage=F("stage"),
            stage=Export.Stage.FAILED,
            error_code=code,
            error_message=message[:1024],
            dest_credentials=b"",
            finished_at=timezone.now(),
        )
        if updated:
            _callback_at_end(export)
    work_dir_remove(export=export)
    logger.warning("export %s failed with %s: %s", export.task_id, int(code), message)


def _mark_ready(export: Export) -> None:
    with transaction.atomic():
        updated = Export.objects.filter(pk=export.pk, status=Export.Status.RUNNING).update(
            status=Export.Status.READY,
            stage=Export.Stage.DONE,
            progress=100,
            error_code=ErrorCode.READY,
            error_message=ready_message(export.skipped_segments),
            dest_credentials=b"",
            finished_at=timezone.now(),
        )
        if updated:
            _callback_at_end(export)
    logger.info("export %s ready at %s", export.task_id, export.video_path)


def _source(export: Export) -> S3Location:
    return S3Location(bucket=export.source_bucket, region=export.source_region, prefix=export.source_prefix)


def _destination(export: Export) -> S3Location:
    credentials = decrypt_credentials(export.dest_credentials)
    return S3Location(
        bucket=export.dest_bucket,
        region=export.dest_region,
        access_key=credentials.access_key if credentials else "",
        secret_key=credentials.secret_key if credentials else "",
    )


class _ProgressWriter:
    """Progress of a running stage, written at most PROGRESS_WRITES_PER_SECOND times a second (the
    fetching threads of a download call it concurrently); each write also refreshes the heartbeat."""

    def __init__(self, export: Export, stage: Stage):
        self.export, self.stage = export, stage
        self.lock = threading.Lock()
        self.written_at = time.monotonic()

    def __call__(self, fraction: float) -> None:
        now = time.monotonic()
        with self.lock:
            if now - self.written_at < 1.0 / PROGRESS_WRITES_PER_SECOND:
                return
            self.written_at = now
        Export.objects.filter(pk=self.export.pk, status=Export.Status.RUNNING).update(
            progress=_no_lower(self.stage.progress_at(fraction)), heartbeat_at=timezone.now())


def _no_lower(progress: int):
    """Progress never goes down while an export runs: writes of concurrent threads (fetching
    threads, a stage running beside another) may land out of order."""
    return Greatest(F("progress"), Value(progress))


@contextmanager
def _heartbeat(export: Export):
    """Keep heartbeat_at fresh while a stage runs, so that the stale sweep leaves the export alone."""
    stop = threading.Event()

    def beat():
        while not stop.wait(settings.EXPORT_HEARTBEAT_SECONDS):
            try:
                Export.objects.filter(pk=export.pk).update(heartbeat_at=timezone.now())
            except Exception:  # the stage itself reports real database trouble
                logger.debug("heartbeat update failed", exc_info=True)

    thread = threading.Thread(target=contextvars.copy_context().run, args=(beat,),
                              name=f"heartbeat-{export.task_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def _injected_delay(stage: Stage) -> None:
    """FAULT_INJECTION's delay for this stage (fault tests only; empty in production)."""
    seconds = float((settings.FAULT_INJECTION or {}).get("delay", {}).get(stage.name, 0))
    if seconds > 0:
        time.sleep(seconds)


def _codec(export: Export) -> str:
    return "h264" if export.export_type == Export.ExportType.H264 else "h265"


def _skipped(clip: steps.Clip) -> dict:
    """Damaged segments the clip left out: they count into LackLength and are named when ready."""
    if not clip.skipped_keys:
        return {}
    return {"lack_ms": F("lack_ms") + clip.skipped_ms, "skipped_segments": list(clip.skipped_keys)}


def ready_message(skipped: list[str]) -> str:
    """ErrorMessage of a ready export: selectors.READY, and the damaged segments it left out."""
    if not skipped:
        return READY
    named = ", ".join(skipped[:3]) + (f" and {len(skipped) - 3} more" if len(skipped) > 3 else "")
    return f"{READY}; skipped damaged segment{'s' if len(skipped) > 1 else ''} {named}"[:1024]


def _audio_head_ms(export: Export) -> float:
    """A keyframe copy starts on the keyframe before the start: its audio is fetched from there."""
    return media.KEYFRAME_AUDIO_HEAD_MS if export.is_remux else 0.0


def _do_stage(export: Export, stage: Stage, paths: ExportPaths, progress: Callable[[float], None],
              carried: dict) -> dict:
    """Run one stage's step; returns the Export fields its result sets. `carried`: what a stage
    leaves for the next ones of the same task (the download's segment selection, for a cut)."""
    if stage.name == "download":
        def download(wait_for_live: bool) -> steps.Downloaded:
            return steps.download(live_path=export.live_path, start_pos=export.start_pos,
                                  start_time_ms=export.start_time_ms, duration_ms=export.duration_ms,
                                  location=_source(export), paths=paths, restore=_restore_policy(export),
                                  wait_for_live=wait_for_live, audio_head_ms=_audio_head_ms(export),
                                  on_progress=progress)

        try:
            result = download(wait_for_live=True)
        except RangeNotRecorded as exc:
            why = _live_wait_over(export, exc)
            if not why:
                raise
            logger.info("export %s: %s; exporting what is recorded", export.task_id, why)
            result = download(wait_for_live=False)
        carried["selection"] = result.selection
        return {"origin_ms": result.origin_ms, "clip_start_ms": result.clip_start_ms, "lack_ms": result.lack_ms,
                "bytes_downloaded": F("bytes_downloaded") + result.bytes, "bytes_needed": result.bytes,
                "segments_missing": result.segments_missing, "host": settings.WORKER_HOSTNAME,
                "skipped_segments": []}  # a restart from download starts afresh
    if stage.name == "cut":
        if export.export_type != Export.ExportType.COPY:
            return {}  # a transcode decodes the segments itself in encode: nothing to cut first
        if carried.get("selection") is not None:  # downloaded by this task: no need to read the manifests again
            selection = carried["selection"]
            files = steps.files_in_work_dir(selection=selection, paths=paths)
        else:
            selection, files = steps.selection_in_work_dir(live_path=export.live_path, clip_start=export.clip_start_ms,
                                                           duration_ms=export.duration_ms, paths=paths,
                                                           audio_head_ms=_audio_head_ms(export))
        clip = steps.cut(selection=selection, files=files, paths=paths, container=export.export_format,
                         mode=export.cut_mode, on_progress=progress)
        return {"lead_ms": clip.lead_ms, "output_start_ms": clip.start_ms, "output_duration_ms": clip.duration_ms,
                **_skipped(clip)}
    if stage.name == "encode":
        if export.export_type == Export.ExportType.COPY:
            return {}  # the cut is the clip
        selection, files = steps.selection_in_work_dir(live_path=export.live_path, clip_start=export.clip_start_ms,
                                                       duration_ms=export.duration_ms, paths=paths,
                                                       audio_head_ms=_audio_head_ms(export))
        clip = steps.encode(selection=selection, files=files, paths=paths, codec=_codec(export),
                            container=export.export_format, on_progress=progress)
        return {"output_start_ms": clip.start_ms, "output_duration_ms": clip.duration_ms, **_skipped(clip)}
    if stage.name == "thumbnail":
        return {"image_path": steps.thumbnail(paths=paths, uploader=f"export:{export.task_id}", owner=export.owner)}
    if stage.name == "upload":
        uploaded = steps.upload(paths=paths, location=_destination(export), writer=export.task_id,
                                on_progress=progress)
        return {"video_key": uploaded.video_key, "video_path": uploaded.video_path,
                "output_bytes": uploaded.output_bytes}
    raise ValueError(f"no step for stage {stage.name}")


def _run_stage(export: Export, stage: Stage, paths: ExportPaths, carried: dict) -> tuple[dict, float]:
    """Run one stage's step; returns the Export fields its result sets and the seconds it took."""
    started = time.monotonic()
    _injected_delay(stage)
    fields = _do_stage(export, stage, paths, _ProgressWriter(export, stage), carried)
    return fields, time.monotonic() - started


def _run_beside(export: Export, stage: Stage, paths: ExportPaths) -> tuple[dict, float]:
    try:
        return _run_stage(export, stage, paths, {})
    finally:
        connections.close_all()  # (this thread's: its progress writes opened them)


@contextmanager
def _beside(export: Export, stages: list[Stage], paths: ExportPaths):
    """Run `stages` in threads while the body runs the stage they are declared beside; yields
    (stage, future) pairs for the body to record. When the body fails, what a finished side stage
    left behind is undone (_undo_stage) once it has ended, so that a failed export leaves nothing."""
    if not stages:
        yield []
        return
    with ThreadPoolExecutor(max_workers=len(stages), thread_name_prefix=f"beside-{export.task_id}") as pool:
        running = [(stage, pool.submit(contextvars.copy_context().run, _run_beside, export, stage, paths))
                   for stage in stages]
        try:
            yield running
        except BaseException:
            for stage, future in running:
                if future.exception() is None:  # (waits for it)
                    _undo_stage(export, stage, future.result()[0])
            raise


def _undo_stage(export: Export, stage: Stage, fields: dict) -> None:
    """Remove what a stage that ran beside a failed one wrote: the clip it uploaded."""
    if stage.name == "upload":
        try:
            steps.remove_upload(location=_destination(export), key=fields["video_key"], writer=export.task_id)
        except Exception:  # the failure being reported matters more; the object is named in the log
            logger.warning("export %s: the clip %s uploaded beside a failed stage could not be removed",
                           export.task_id, fields["video_key"], exc_info=True)


@dataclass(frozen=True)
class Delivery:
    """The Celery delivery running a task of an export."""

    task: str  # the task's name
    task_id: str  # the export's TaskId
    generation: int  # Export.restarts when the task was sent
    is_retry: bool  # a Celery retry of this message: its attempts are already counted
    retries_left: bool  # whether a transient failure may be retried once more


def _load_for(delivery: Delivery) -> Export | None:
    export = Export.objects.filter(task_id=delivery.task_id).first()
    first_stage = task_stages(delivery.task)[0]
    if export is None:
        logger.warning("export %s: no such export, %s skipped", delivery.task_id, delivery.task)
        return None
    if export.restarts != delivery.generation:
        logger.info("export %s: %s of generation %s skipped (now %s)", delivery.task_id, delivery.task,
                    delivery.generation, export.restarts)
        return None
    if not export.is_active:
        if export.status == Export.Status.CANCELLED and export.host == settings.WORKER_HOSTNAME:
            work_dir_remove(export=export)
        return None
    if first_stage.name != "download" and export.host != settings.WORKER_HOSTNAME:
        logger.warning("export %s: %s arrived on %s but the work dir is on %s; skipped",
                       delivery.task_id, delivery.task, settings.WORKER_HOSTNAME, export.host)
        return None
    return export


def _begin_stage(export: Export, stage: Stage, *, count_attempt: bool) -> bool:
    """Record that the stage starts (and count the attempt); False when its attempts are spent."""
    updates = {"stage": stage.name, "heartbeat_at": timezone.now(), "progress": _no_lower(stage.progress_at(0.0))}
    if count_attempt:
        export.attempts = dict(export.attempts or {}, **{stage.name: (export.attempts or {}).get(stage.name, 0) + 1})
        updates["attempts"] = export.attempts
    if export.status in (Export.Status.QUEUED, Export.Status.WAITING):
        # updated_at: when this run of work began (selectors.work_began_at: the ETA leaves out a wait)
        updates.update(status=Export.Status.RUNNING, started_at=export.started_at or timezone.now(),
                       next_check_at=None, updated_at=timezone.now())
        export.status = Export.Status.RUNNING
    Export.objects.filter(pk=export.pk, status__in=Export.ACTIVE).update(**updates)
    if export.attempts.get(stage.name, 0) > settings.EXPORT_MAX_ATTEMPTS:
        export_mark_failed(export=export, code=stage.failure,
                           message=f"{stage.name} did not complete after {settings.EXPORT_MAX_ATTEMPTS} attempts")
        return False
    return True


def _end_stage(export: Export, stage: Stage, seconds: float, fields: dict) -> None:
    export.timings = dict(export.timings or {}, **{stage.name: round(seconds, 3)})
    export.step_hosts = dict(export.step_hosts or {}, **{stage.name: settings.WORKER_HOSTNAME})
    Export.objects.filter(pk=export.pk, status=Export.Status.RUNNING).update(
        timings=export.timings, step_hosts=export.step_hosts, progress=_no_lower(stage.progress_at(1.0)),
        heartbeat_at=timezone.now(), **fields)
    for name, value in fields.items():
        if not hasattr(value, "resolve_expression"):  # an F() sum is only known to the database
            setattr(export, name, value)
    logger.info("export %s: %s done on %s in %.3f s", export.task_id, stage.name, settings.WORKER_HOSTNAME, seconds)


def _still_running(export: Export) -> bool:
    return Export.objects.filter(pk=export.pk, status=Export.Status.RUNNING).exists()


def _fail(export: Export, code: int, message: str) -> None:
    """Record the failure, then end the task in FAILURE (ExportFailed)."""
    export_mark_failed(export=export, code=code, message=message)
    raise ExportFailed(f"export {export.task_id} failed with {int(code)}: {message}")


def export_run(*, delivery: Delivery) -> str:
    """Run the stages of one task of an export and send the next task (or mark the export ready);
    returns what became of it, the task's result (what Flower shows).

    Every write of a running export's row is made here. A transient failure is raised again for
    the task to retry while it has retries left; any other failure ends the export with its code,
    and then ExportFailed is raised so that the task itself ends in FAILURE.
    """
    with bind_task_id(delivery.task_id):
        export = _load_for(delivery)
        if export is None:
            return "skipped: the export is gone, ended, restarted or on another host (see the log)"
        paths = ExportPaths.of(export)
        remux = export.is_remux
        carried: dict = {}
        stage = None
        todo = []
        for stage in task_stages(delivery.task, remux=remux):
            if stage.name in (export.timings or {}):
                # a redelivered message of a stage that already completed (its ack was lost)
                logger.info("export %s: %s already done in generation %s; skipped", export.task_id, stage.name,
                            delivery.generation)
            else:
                todo.append(stage)
        try:
            for stage in todo:
                if stage.beside in {s.name for s in todo}:
                    continue  # it runs beside that stage, started with it
                if stage.name != "download" and export.host != settings.WORKER_HOSTNAME:
                    # a redelivered download message (its download recorded) on a host without the work dir
                    logger.warning("export %s: %s is due on %s, where the work dir is, not on %s; left to the sweep",
                                   export.task_id, stage.name, export.host, settings.WORKER_HOSTNAME)
                    return f"skipped: {stage.name} is due on {export.host}, where the work dir is"
                sides = [s for s in todo if s.beside == stage.name]
                for begun in (*sides, stage):  # (Stage names the stage itself while its sides run)
                    if not _begin_stage(export, begun, count_attempt=not delivery.is_retry):
                        raise ExportFailed(f"export {export.task_id}: {begun.name} did not complete after "
                                           f"{settings.EXPORT_MAX_ATTEMPTS} attempts")
                with _heartbeat(export), _beside(export, sides, paths) as running:
                    fields, seconds = _run_stage(export, stage, paths, carried)
                    _end_stage(export, stage, seconds, fields)
                    for stage, future in running:
                        if not future.done():  # Stage follows what still runs
                            Export.objects.filter(pk=export.pk, status=Export.Status.RUNNING).update(stage=stage.name)
                        side_fields, side_seconds = future.result()  # (a side's failure is raised here)
                        _end_stage(export, stage, side_seconds, side_fields)
        except ExportError as exc:
            _fail(export, exc.code, exc.message)
        except SourceNotReady as exc:
            return _wait(export, exc, generation=delivery.generation)
        except TransientExportError as exc:
            if delivery.retries_left:
                logger.warning("export %s: %s will be retried: %s", export.task_id, stage.name, exc)
                raise
            _fail(export, exc.code, f"{exc} (after the retries)")
        except SoftTimeLimitExceeded:
            _fail(export, ErrorCode.INTERNAL, f"{stage.name} ran past its time limit")
        except ExportFailed:
            raise
        except Exception:
            logger.exception("export %s: %s failed", export.task_id, stage.name if stage else delivery.task)
            _fail(export, ErrorCode.INTERNAL,
                  f"internal error in {stage.name if stage else delivery.task} (logged with TaskId {export.task_id})")
        done = ", ".join(s.name for s in todo) or "nothing left"
        following = tasks_after(delivery.task, done=export.timings or {})
        if following:
            if not _still_running(export):
                return f"{done} done; the export was cancelled meanwhile"
            # the rest of the chain runs where the work dir is
            queue = host_queue(queue_of(following[0]), settings.WORKER_HOSTNAME)
            celery_app.send_task(following[0], args=[export.task_id, delivery.generation], queue=queue)
            return f"{done} done; {following[0]} sent to {queue}"
        _mark_ready(export)
        work_dir_remove(export=export)
        return f"{done} done; ready at {export.video_path}"


# --- waiting: archived segments being restored, a range past the live edge -------------------------

def _restore_policy(export: Export) -> steps.RestorePolicy:
    seen = frozenset((export.waiting_on or {}).get("restoring") or {})
    return steps.RestorePolicy(tier=export.restore_tier or settings.EXPORT_RESTORE_TIER,
                               days=settings.EXPORT_RESTORE_DAYS, seen=seen)


def _stored_live_deadline(export: Export) -> datetime | None:
    return export.wait_deadline if (export.waiting_on or {}).get("kind") == "waiting" else None


def _live_deadline(*, stored: datetime | None, exc: RangeNotRecorded) -> datetime:
    """EXPORT_LIVE_WAIT_SECONDS after the requested end in wall-clock time: from the manifest's
    origin when it has one, else from when the edge was first seen short of the end."""
    if stored is not None:
        return stored
    if exc.end_wall_ms is not None:
        end = datetime.fromtimestamp(exc.end_wall_ms / 1000.0, tz=UTC)
    else:
        end = timezone.now() + timedelta(milliseconds=exc.end_ms - exc.edge_ms)
    return end + timedelta(seconds=settings.EXPORT_LIVE_WAIT_SECONDS)


def _live_wait_over(export: Export, exc: RangeNotRecorded) -> str:
    """Why the export stops waiting for the live edge and exports what is recorded ("" while it
    waits): EXPORT_LIVE_WAIT_SECONDS past the requested end, or the manifest unchanged (and its
    edge still) for EXPORT_LIVE_STALL_SECONDS."""
    now = timezone.now()
    if now >= _live_deadline(stored=_stored_live_deadline(export), exc=exc):
        return f"{settings.EXPORT_LIVE_WAIT_SECONDS:g} s past the requested end"
    live = (export.waiting_on or {}).get("live") or {}
    unchanged = live.get("digest") == exc.manifest_digest and live.get("edge_ms") == exc.edge_ms
    if unchanged and live.get("changed_at"):
        still_for = (now - datetime.fromisoformat(live["changed_at"])).total_seconds()
        if still_for >= settings.EXPORT_LIVE_STALL_SECONDS:
            return f"the recording stopped growing {still_for:.0f} s ago"
    return ""


CHECK_TASKS = {"restoring": "exports.check_restore", "waiting": "exports.check_live_edge"}


def _wait(export: Export, exc: SourceNotReady, *, generation: int) -> str:
    """Record that the export waits (Stage restoring or waiting: no worker holds it) and send its
    download again with a countdown; the sweep resends it if that message is lost."""
    now = timezone.now()
    info = dict(export.waiting_on or {})
    same_wait = info.get("kind") == exc.stage and export.wait_deadline is not None
    check_in = exc.check_in_seconds
    if isinstance(exc, SourceArchived):
        restoring = dict(info.get("restoring") or {}, **exc.keys)
        deadline = export.wait_deadline if same_wait else now + timedelta(hours=settings.EXPORT_RESTORE_MAX_HOURS)
        if now >= deadline:
            late = [key for key, state in exc.keys.items() if state != "ready"] or list(exc.keys)
            Export.objects.filter(pk=export.pk, status=Export.Status.RUNNING).update(stage=Export.Stage.RESTORING)
            _fail(export, ErrorCode.SOURCE_STORAGE,
                  f"source storage: the restore of {late[0]}{f' (and {len(late) - 1} more)' if len(late) > 1 else ''} "
                  f"did not complete within {settings.EXPORT_RESTORE_MAX_HOURS:g} h")
        expected = datetime.fromisoformat(info["expected_at"]) if same_wait and info.get("expected_at") else None
        if expected is None or expected <= now:
            expected = now + timedelta(seconds=exc.ready_in_seconds if expected is None else exc.check_in_seconds)
        info.update(kind=exc.stage, restoring=restoring, expected_at=expected.isoformat())
    else:  # RangeNotRecorded
        deadline = _live_deadline(stored=export.wait_deadline if same_wait else None, exc=exc)
        live = info.get("live") or {}
        changed = live.get("digest") != exc.manifest_digest or live.get("edge_ms") != exc.edge_ms
        info.update(kind=exc.stage, expected_at=(now + timedelta(seconds=exc.ready_in_seconds)).isoformat(), live={
            "digest": exc.manifest_digest, "edge_ms": exc.edge_ms, "end_ms": exc.end_ms,
            "changed_at": now.isoformat() if changed or not live.get("changed_at") else live["changed_at"]})
        # never look later than the deadline: the export then goes on with what is recorded
        check_in = min(check_in, max(1.0, (deadline - now).total_seconds()))
    countdown = max(1.0, min(check_in, max_countdown()))
    waiting = Export.objects.filter(pk=export.pk, status=Export.Status.RUNNING).update(
        status=Export.Status.WAITING, stage=exc.stage, progress=0, error_code=ErrorCode.PROCESSING,
        error_message=exc.message[:1024], attempts={}, heartbeat_at=None, next_check_at=now + timedelta(seconds=countdown),
        wait_deadline=deadline, waiting_on=info, updated_at=now)
    if not waiting:
        return f"{exc.stage}: the export was cancelled meanwhile"
    # what was fetched is fetched again at the next check, on whichever io worker takes it
    work_dir_remove(export=export)
    logger.info("export %s %s: %s; looking again in %.0f s", export.task_id, exc.stage, exc.message, countdown)
    celery_app.send_task(CHECK_TASKS[exc.stage], args=[export.task_id, generation], countdown=countdown)
    return f"{exc.stage}: {exc.message}; {CHECK_TASKS[exc.stage]} in {countdown:.0f} s"


def _recheck_overdue_waits() -> int:
    """Send again the check of waiting exports whose countdown message is overdue (lost with a
    broker, or a worker that took it and died): the generation goes up, so a late original is
    dropped when it arrives."""
    cutoff = timezone.now() - timedelta(seconds=max(60.0, settings.EXPORT_SWEEP_INTERVAL_SECONDS))
    resent = 0
    for export in Export.objects.filter(status=Export.Status.WAITING, next_check_at__lt=cutoff):
        with bind_task_id(export.task_id):
            claimed = Export.objects.filter(pk=export.pk, status=Export.Status.WAITING,
                                            restarts=export.restarts).update(
                restarts=export.restarts + 1, next_check_at=timezone.now(), updated_at=timezone.now())
            if claimed:
                logger.warning("export %s: its %s check was due at %s; sent again", export.task_id, export.stage,
                               export.next_check_at)
                celery_app.send_task(CHECK_TASKS.get(export.stage, BY_NAME["download"].task),
                                     args=[export.task_id, export.restarts + 1])
                resent += 1
    return resent


# --- CallbackUrl: the poll body of a finished export, signed (resourced.callbacks) -----------------

def _callback_at_end(export: Export) -> None:
    """Within the transaction that ends the export: its callback (once per end), sent after
    commit. The body is the poll answer as a client would read it now."""
    if not export.callback_url:
        return
    ended = Export.objects.get(pk=export.pk)
    callback, created = ExportCallback.objects.get_or_create(
        export=ended, generation=ended.restarts,
        defaults={"url": ended.callback_url, "body": json.dumps(export_response(ended), separators=(",", ":"))})
    if created:
        transaction.on_commit(lambda: _enqueue_callback(callback.id, 1))


def _enqueue_callback(callback_id: int, attempt: int) -> None:
    celery_app.send_task(CALLBACK_TASK, args=[callback_id, attempt])


CALLBACK_TASK = "exports.callbacks.deliver"


def export_callback_deliver(*, callback_id: int, attempt: int) -> callback_delivery.NextAttempt | None:
    """Delivery attempt number `attempt` of an export's callback; the next one, or None."""
    callback = ExportCallback.objects.select_related("export").filter(id=callback_id).first()
    if callback is None:
        return None
    return callback_delivery.deliver(callback, attempt=attempt, deliveries=ExportCallbackDelivery)


def export_callback_redeliver(*, callback: ExportCallback) -> None:
    """Deliver again (admin action): same delivery id and body, a fresh retry window."""
    with transaction.atomic():
        attempt = callback_delivery.redeliver(callback)
        transaction.on_commit(lambda: _enqueue_callback(callback.id, attempt))


def _resend_lost_callbacks() -> int:
    lost = callback_delivery.overdue(ExportCallback.objects.select_related("export"), now=timezone.now())
    for callback in lost:
        logger.warning("callback %s of export %s: its attempt %d is overdue; sent again", callback.delivery_id,
                       callback.export.task_id, callback.attempts + 1)
        _enqueue_callback(callback.id, callback.attempts + 1)
    return len(lost)


def export_sweep_stale() -> int:
    """Restart exports whose worker stopped beating (a vanished host) from download, and resend
    exports queued for too long."""
    cutoff = timezone.now() - timezone.timedelta(seconds=settings.EXPORT_STALE_SECONDS)
    restarted = 0
    stale = Export.objects.filter(status=Export.Status.RUNNING).filter(Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at=None))
    for export in stale:
        with bind_task_id(export.task_id):
            if export.restarts >= settings.EXPORT_MAX_ATTEMPTS:
                export_mark_failed(export=export, code=ErrorCode.INTERNAL,
                                   message=f"worker host {export.host or '?'} lost {export.restarts} times")
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
    return restarted + _resend_long_queued() + _recheck_overdue_waits() + _resend_lost_callbacks()


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


# --- getthumbnail: the Thumbnail row's one writer ----------------------------------------------------

def thumbnail_make(*, task_id: str, retries_left: bool) -> None:
    """Make a queued Thumbnail and record the outcome; a transient failure is raised again while
    the task has retries left, a failure recorded ends the task in FAILURE (ExportFailed)."""
    with bind_task_id(task_id):
        thumb = Thumbnail.objects.filter(task_id=task_id, status=Thumbnail.Status.QUEUED).first()
        if thumb is None:
            return
        fields = {"status": Thumbnail.Status.FAILED, "finished_at": timezone.now()}
        image_dir, image_name = thumb.image_location()
        try:
            image_path = steps.frame_thumbnail(
                live_path=thumb.live_path, start_pos=thumb.start_pos, start_time_ms=thumb.start_time_ms,
                location=S3Location(bucket=thumb.source_bucket, region=thumb.source_region, prefix=thumb.source_prefix),
                image_dir=image_dir, image_name=image_name, uploader=f"getthumbnail:{thumb.task_id}", owner=thumb.userid)
            fields.update(image_path=image_path, status=Thumbnail.Status.READY, error_code=0, error_message="Success")
        except ExportError as exc:
            fields.update(error_code=exc.code, error_message=exc.message)
        except TransientExportError as exc:
            if retries_left:
                raise
            fields.update(error_code=exc.code, error_message=exc.message)
        except Exception:
            logger.exception("getthumbnail %s failed", task_id)
            fields.update(error_code=ErrorCode.INTERNAL, error_message=f"internal error (logged with TaskId {task_id})")
        Thumbnail.objects.filter(pk=thumb.pk).update(**fields)
        if fields["status"] == Thumbnail.Status.FAILED:
            raise ExportFailed(f"getthumbnail {task_id} failed with {int(fields['error_code'])}: "
                               f"{fields['error_message']}")


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
        owner=session_userid,
        userid=data.get("userid") or session_userid,
        live_path=live_path,
        peer_id=peer_id,
        file_name=file_name,
        export_type=int(data.get("export_type", 0)),
        export_format=export_format,
        cut_mode=data.get("CutMode") or Export.CutMode.ACCURATE,
        restore_tier=data.get("RestoreTier") or "",
        callback_url=data.get("CallbackUrl") or "",
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
    live_path = data["LivePath"]
    parts = live_path_parts(live_path)
    source = source_location_for(live_path=live_path, storage_info=data.get("storage_info") or "")
    start_time_ms = parse_start_time(data["StartTime"])
    # the session's user is part of the identity: one user's request never answers another's frame
    identity = [session_userid, source.bucket, source.prefix, live_path, int(data["StartPos"]), start_time_ms]
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
        transaction.on_commit(lambda: celery_app.send_task("exports.getthumbnail", args=[thumb.task_id]))
    return thumb
