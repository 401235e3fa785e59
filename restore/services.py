"""Writes of the restore app: jobs, the restore-watch-copy flow, and callback delivery.

The flow of one job (each step a thin Celery task, see restore/tasks.py)::

    restore.start ─ type 0 callback queued; each file inspected (HEAD): archived → restore_object
        │
    restore.check ─ every RESTORE_POLL_SECONDS, a fresh task (countdown), never a waiting worker;
        │           files whose Restore header says ongoing-request="false" are ready; after
        │           RESTORE_TIMEOUT_HOURS the rest end with file_code 4
    restore.copy  ─ server-side copy of every ready file into file_dir (multipart above the
        │           threshold), in batches of RESTORE_COPY_BATCH_SECONDS
    type 1 callback with file_list_status

Every step may run twice (acks_late redelivery, a duplicate message): the check loop carries a
sequence number that only one task can advance, the final step is a compare-and-swap on the job's
status, callbacks are created once per (job, type), and a delivery attempt is numbered by a
compare-and-swap on the callback's attempt count.
"""

import json
import logging
import time
from datetime import UTC, datetime, timedelta

import botocore.exceptions
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from resourced.archive import ArchiveState, archive_state, request_restore
from resourced.callbacks import delivery as callback_delivery
from resourced.callbacks import http as http_callbacks
from resourced.callbacks.delivery import NextAttempt
from resourced.celery import app as celery_app
from resourced.celery import max_countdown
from resourced.errors import InvalidInput, ServiceError
from resourced.s3 import S3Location, is_not_found, is_transient, transfer_config
from resourced.storage_info import select_storage, storage_entries
from restore.models import (
    Callback,
    CallbackDelivery,
    ReceivedCallback,
    RestoreFile,
    RestoreJob,
)
from restore.selectors import callback_body, restore_job_unfinished_files

logger = logging.getLogger(__name__)

STORAGE_PURPOSE = "archive"
DESTINATION_PURPOSE = "restore"


def _transient(exc: Exception) -> bool:
    # a BotoCoreError that is not a connection failure (say, a checksum mismatch) is worth
    # another try here too: the restore flow retries on a countdown, never in a loop
    return is_transient(exc) or isinstance(exc, botocore.exceptions.BotoCoreError)


def _describe(exc: Exception) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        return f"{exc.operation_name}: {error.get('Code', '')} {error.get('Message', '')}".strip()[:500]
    return f"{type(exc).__name__}: {exc}"[:500]


def _source(job: RestoreJob) -> S3Location:
    return S3Location(bucket=job.bucket, region=job.region, prefix=job.prefix)


def _destination(job: RestoreJob) -> S3Location:
    return S3Location(bucket=job.dest_bucket, region=job.dest_region, prefix=job.dest_prefix)


# --- Jobs -------------------------------------------------------------------------------------


def restore_job_create(
    *,
    userid: str,
    task_id: str,
    files: list[str],
    file_dir: str,
    callback_url: str,
    days: int,
    tier: str,
    storage_info: str = "",
) -> tuple[RestoreJob, bool]:
    """The job for (userid, task_id): the existing one, or a new one whose flow starts after commit.

    Returns (job, created). Input is validated by the API; storage_info is parsed here
    (InvalidInput naming what is wrong). Nothing is stored or queued when it raises.
    """
    if storage_info:
        entries = storage_entries(storage_info)
        source = select_storage(entries, purpose=STORAGE_PURPOSE, fallback=True)
        if source is None:
            raise InvalidInput("storage_info: no enabled S3 entry")
        destination = select_storage(entries, purpose=DESTINATION_PURPOSE) or source
    else:
        source = destination = S3Location(bucket=settings.RESTORE_DEFAULT_BUCKET, region=settings.AWS_REGION)
    existing = RestoreJob.objects.filter(userid=userid, task_id=task_id).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            job = RestoreJob.objects.create(
                task_id=task_id, userid=userid,
                bucket=source.bucket, region=source.region, prefix=source.prefix,
                dest_bucket=destination.bucket, dest_region=destination.region, dest_prefix=destination.prefix,
                file_dir=file_dir, callback_url=callback_url, days=days, tier=tier,
            )
            RestoreFile.objects.bulk_create(
                RestoreFile(job=job, position=i, key=key, file_name=key.rsplit("/", 1)[-1]) for i, key in enumerate(files)
            )
            transaction.on_commit(lambda: _enqueue_start(job.id))
    except IntegrityError:  # the same task_id posted at the same moment: answer the winner
        existing = RestoreJob.objects.filter(userid=userid, task_id=task_id).first()
        if existing is None:
            raise
        return existing, False
    logger.info("restore job %s created: %d files from %r", task_id, len(files), source)
    return job, True


# Tasks are sent by name (restore/tasks.py calls this module; this module never imports it).
def _enqueue_start(job_id: int) -> None:
    celery_app.send_task("restore.start", args=[job_id])


def _enqueue_check(job_id: int, seq: int) -> None:
    countdown = min(settings.RESTORE_POLL_SECONDS, max_countdown())
    celery_app.send_task("restore.check", args=[job_id, seq], countdown=countdown)


def _enqueue_copy(job_id: int, countdown: float = 0) -> None:
    celery_app.send_task("restore.copy", args=[job_id], countdown=min(countdown, max_countdown()) or None)


def restore_job_start(*, job_id: int) -> None:
    """Type 0 callback, then the first pass over the files. Safe to run twice."""
    job = RestoreJob.objects.filter(id=job_id).first()
    if job is None or job.status not in (RestoreJob.Status.QUEUED, RestoreJob.Status.RESTORING):
        return
    if job.status == RestoreJob.Status.QUEUED:
        now = timezone.now()
        RestoreJob.objects.filter(id=job.id, status=RestoreJob.Status.QUEUED).update(
            status=RestoreJob.Status.RESTORING, started_at=now, updated_at=now,
            restore_deadline=now + timedelta(hours=settings.RESTORE_TIMEOUT_HOURS),
        )
        job.refresh_from_db()
    callback_create(job=job, type=Callback.Type.NETWORK_TEST)
    _restore_pass(job)


def restore_job_check(*, job_id: int, seq: int) -> None:
    """One later pass of the watch loop; a message whose seq is not the job's current one stops."""
    job = RestoreJob.objects.filter(id=job_id).first()
    if job is None or job.status != RestoreJob.Status.RESTORING or job.check_seq != seq:
        return
    _restore_pass(job)


def _restore_pass(job: RestoreJob) -> None:
    seq = job.check_seq
    source = _source(job)
    client = source.client()
    for file in restore_job_unfinished_files(job=job):
        if file.status == RestoreFile.Status.PENDING:
            _inspect(file, job=job, source=source, client=client)
        else:
            _poll(file, source=source, client=client)
    if job.restore_deadline and timezone.now() >= job.restore_deadline:
        hours = f"{settings.RESTORE_TIMEOUT_HOURS:g}"
        for file in restore_job_unfinished_files(job=job):
            _finish(file, RestoreFile.Code.RESTORE_TIMED_OUT, f"restore not complete after {hours} h")
    with transaction.atomic():
        advanced = RestoreJob.objects.filter(id=job.id, status=RestoreJob.Status.RESTORING, check_seq=seq).update(
            check_seq=seq + 1, checks=F("checks") + 1, updated_at=timezone.now()
        )
        if not advanced:
            return  # another task ran this pass; it schedules the next one
        if restore_job_unfinished_files(job=job).exists():
            transaction.on_commit(lambda: _enqueue_check(job.id, seq + 1))
        else:
            RestoreJob.objects.filter(id=job.id).update(status=RestoreJob.Status.COPYING, updated_at=timezone.now())
            transaction.on_commit(lambda: _enqueue_copy(job.id))


def _finish(file: RestoreFile, code: int, error: str = "") -> None:
    file.status = RestoreFile.Status.DONE
    file.file_code = code
    if error:
        file.error = error
    file.save()


def _s3_failed(file: RestoreFile, exc: Exception, *, source: S3Location, key: str) -> None:
    """A HEAD or a restore request that failed: the file is missing, looked at again at the next
    pass (a transient failure), or its restore failed."""
    if is_not_found(exc):
        return _finish(file, RestoreFile.Code.NOT_FOUND, f"s3://{source.bucket}/{key} not found")
    if _transient(exc):
        file.error = f"will try again: {_describe(exc)}"
        return file.save()
    return _finish(file, RestoreFile.Code.RESTORE_FAILED, _describe(exc))


def _inspect(file: RestoreFile, *, job: RestoreJob, source: S3Location, client) -> None:
    """First look at a file: missing, readable, already restored, or to restore now."""
    key = source.key(file.key)
    try:
        head = client.head_object(Bucket=source.bucket, Key=key)
    except Exception as exc:  # noqa: BLE001 (classified below)
        return _s3_failed(file, exc, source=source, key=key)
    state = archive_state(head)
    file.storage_class = state.storage_class
    file.size = head.get("ContentLength")
    if state.readable:
        file.status = RestoreFile.Status.READY
        if state.archived:
            file.restored_at = timezone.now()
        return file.save()
    if state.restore == "ongoing":
        file.status = RestoreFile.Status.RESTORING  # someone already asked; watch it
        return file.save()
    _request_restore(file, job=job, source=source, client=client, key=key, state=state)


def _request_restore(file: RestoreFile, *, job: RestoreJob, source: S3Location, client, key: str,
                     state: ArchiveState) -> None:
    try:
        # a tier S3 refuses for the class (Expedited of DEEP_ARCHIVE) falls back to Standard
        request_restore(client, bucket=source.bucket, key=key, state=state, tier=job.tier, days=job.days,
                        fall_back=True)
    except Exception as exc:  # noqa: BLE001
        return _s3_failed(file, exc, source=source, key=key)
    file.status = RestoreFile.Status.RESTORING
    file.restore_requested = True
    file.restore_requested_at = timezone.now()
    file.error = ""
    file.save()


def _poll(file: RestoreFile, *, source: S3Location, client) -> None:
    key = source.key(file.key)
    try:
        head = client.head_object(Bucket=source.bucket, Key=key)
    except Exception as exc:  # noqa: BLE001
        if is_not_found(exc):
            return _finish(file, RestoreFile.Code.NOT_FOUND, f"s3://{source.bucket}/{key} disappeared during the restore")
        file.error = f"while watching: {_describe(exc)}"  # try again at the next pass
        return file.save()
    state = archive_state(head)
    if state.readable:
        file.status = RestoreFile.Status.READY
        file.restored_at = timezone.now()
        file.error = ""
        return file.save()
    if not state.restore:  # the restore request was lost (or expired): ask again at the next pass
        file.status = RestoreFile.Status.PENDING
        return file.save()


def restore_job_copy(*, job_id: int) -> None:
    """Copy ready files into file_dir for up to RESTORE_COPY_BATCH_SECONDS, then hand over or finish."""
    job = RestoreJob.objects.filter(id=job_id).first()
    if job is None or job.status != RestoreJob.Status.COPYING:
        return
    RestoreJob.objects.filter(id=job.id).update(updated_at=timezone.now())  # alive, for restore_sweep
    source, destination = _source(job), _destination(job)
    started = time.monotonic()
    retry_in = 0.0
    for file in job.files.filter(status=RestoreFile.Status.READY).order_by("position"):
        if time.monotonic() - started > settings.RESTORE_COPY_BATCH_SECONDS:
            transaction.on_commit(lambda: _enqueue_copy(job.id))
            return
        if not _copy_file(file, job=job, source=source, destination=destination):
            retry_in = max(retry_in, min(60.0, 2.0**file.copy_attempts))
    if job.files.filter(status=RestoreFile.Status.READY).exists():
        _enqueue_copy(job.id, countdown=retry_in)
        return
    _restore_job_finish(job)


def _transfer_config():
    return transfer_config(threshold=settings.RESTORE_MULTIPART_COPY_THRESHOLD,
                           chunksize=settings.RESTORE_MULTIPART_COPY_CHUNKSIZE)


def _copy_file(file: RestoreFile, *, job: RestoreJob, source: S3Location, destination: S3Location) -> bool:
    """Server-side copy of one file; False when it should be tried again later."""
    src_key = source.key(file.key)
    dest_key = destination.key(f"{job.file_dir}/{file.file_name}")
    file.copy_attempts += 1
    file.dest_key = dest_key
    try:
        destination.client().copy(
            CopySource={"Bucket": source.bucket, "Key": src_key},
            Bucket=destination.bucket,
            Key=dest_key,
            ExtraArgs={"StorageClass": settings.RESTORE_COPY_STORAGE_CLASS},
            SourceClient=source.client(),
            Config=_transfer_config(),
        )
    except Exception as exc:  # noqa: BLE001
        if isinstance(exc, botocore.exceptions.ClientError) and exc.operation_name == "HeadObject" and is_not_found(exc):
            _finish(file, RestoreFile.Code.NOT_FOUND, f"s3://{source.bucket}/{src_key} disappeared before the copy")
            return True
        if _transient(exc) and file.copy_attempts < settings.RESTORE_COPY_MAX_ATTEMPTS:
            file.error = f"copy will be tried again: {_describe(exc)}"
            file.save()
            return False
        _finish(file, RestoreFile.Code.COPY_FAILED, f"copy to s3://{destination.bucket}/{dest_key}: {_describe(exc)}")
        return True
    file.copied_at = timezone.now()
    file.error = ""
    _finish(file, RestoreFile.Code.SUCCESS)
    return True


def _restore_job_finish(job: RestoreJob) -> None:
    codes = list(job.files.values_list("file_code", flat=True))
    failed = sum(1 for code in codes if code != RestoreFile.Code.SUCCESS)
    code = RestoreJob.CODE_SUCCESS if not failed else RestoreJob.CODE_PARTIAL
    message = "success" if not failed else f"{failed} of {len(codes)} files failed"
    with transaction.atomic():
        finished = RestoreJob.objects.filter(id=job.id, status=RestoreJob.Status.COPYING).update(
            status=RestoreJob.Status.DONE, code=code, message=message, finished_at=timezone.now()
        )
        if finished:
            job.refresh_from_db()
            callback_create(job=job, type=Callback.Type.RESULT)
    if finished:
        logger.info("restore job %s done: %s", job.task_id, message)


# --- Callbacks --------------------------------------------------------------------------------


def callback_create(*, job: RestoreJob, type: int) -> Callback:
    """The job's callback of this type (created once) with its first delivery queued after commit."""
    existing = Callback.objects.filter(job=job, type=type).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            callback = Callback.objects.create(job=job, type=type, url=job.callback_url, body=callback_body(job=job, type=type))
            transaction.on_commit(lambda: _enqueue_delivery(callback.id, 1))
    except IntegrityError:
        return Callback.objects.get(job=job, type=type)
    return callback


def _enqueue_delivery(callback_id: int, attempt: int, countdown: float = 0) -> None:
    celery_app.send_task("restore.callbacks.deliver", args=[callback_id, attempt],
                         countdown=min(countdown, max_countdown()) or None)


def callback_deliver(*, callback_id: int, attempt: int) -> NextAttempt | None:
    """Make delivery attempt number `attempt` (resourced.callbacks.delivery); what to do next, or
    None when nothing is left to do.

    A result (type 1) callback waits until the job's network test (type 0) is settled, so that a
    client always sees type 0 first: settling the test sends it. A message for an attempt that was
    already claimed (a duplicate, a redelivery) does nothing; a chain lost in a crash is picked up
    by restore_sweep.
    """
    callback = Callback.objects.select_related("job").filter(id=callback_id).first()
    if callback is None:
        return None
    if callback.type == Callback.Type.RESULT:
        test = Callback.objects.filter(job=callback.job_id, type=Callback.Type.NETWORK_TEST).first()
        if test is not None and test.state == Callback.State.PENDING:
            return None  # sent when the test settles (_send_waiting_result), or by the sweeper
    return callback_delivery.deliver(callback, attempt=attempt, deliveries=CallbackDelivery,
                                     on_settled=_send_waiting_result)


def _send_waiting_result(callback: Callback, state: str) -> None:
    if callback.type == Callback.Type.NETWORK_TEST:
        # A result that waits for this test goes now rather than at its next look.
        result = Callback.objects.filter(job=callback.job_id, type=Callback.Type.RESULT, state=Callback.State.PENDING).first()
        if result is not None and result.attempts == 0:
            _enqueue_delivery(result.id, 1)


def callback_redeliver(*, callback: Callback) -> None:
    """Deliver again (admin action): same delivery id and body, a fresh retry window."""
    with transaction.atomic():
        attempt = callback_delivery.redeliver(callback)
        transaction.on_commit(lambda: _enqueue_delivery(callback.id, attempt))


# --- Recovery --------------------------------------------------------------------------------

SWEEP_GRACE = callback_delivery.SWEEP_GRACE


def restore_sweep() -> dict:
    """Pick up flows whose next message was lost (a crash between two steps, a broker outage at
    commit time). Whatever it sends may duplicate a live message: every step tolerates that.

    Runs every RESTORE_SWEEP_SECONDS (a django-celery-beat periodic task, restore/migrations/0003).
    """
    now = timezone.now()
    counts = {"start": 0, "check": 0, "copy": 0, "deliver": 0}
    for job in RestoreJob.objects.filter(status=RestoreJob.Status.QUEUED, created_at__lt=now - SWEEP_GRACE):
        _enqueue_start(job.id)
        counts["start"] += 1
    poll = timedelta(seconds=min(settings.RESTORE_POLL_SECONDS, max_countdown()))
    for job in RestoreJob.objects.filter(status=RestoreJob.Status.RESTORING, updated_at__lt=now - poll - SWEEP_GRACE):
        _enqueue_check(job.id, job.check_seq)
        counts["check"] += 1
    copy_stale = timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT) + SWEEP_GRACE  # a copy task may run that long
    for job in RestoreJob.objects.filter(status=RestoreJob.Status.COPYING, updated_at__lt=now - copy_stale):
        _enqueue_copy(job.id)
        counts["copy"] += 1
    for callback in callback_delivery.overdue(Callback.objects.select_related("job"), now=now):
        if callback.attempts == 0 and callback.type == Callback.Type.RESULT and callback.job.callbacks.filter(
            type=Callback.Type.NETWORK_TEST, state=Callback.State.PENDING
        ).exists():
            continue  # waits for the network test, whose own chain is looked at here too
        _enqueue_delivery(callback.id, callback.attempts + 1)
        counts["deliver"] += 1
    if any(counts.values()):
        logger.warning("restore sweep picked up lost flows: %s", counts)
    return counts


# --- The reference receiver -------------------------------------------------------------------


class SignatureRefused(ServiceError):
    kind = "auth"
    status = 401


def callback_receive(*, body: bytes, signature: str | None, delivery_id: str | None) -> ReceivedCallback:
    """Verify a PutRestoreResult delivery and record it once per delivery id."""
    # the delivery id is part of what is signed: without one there is nothing to verify
    if not delivery_id or len(delivery_id) > 64:
        raise InvalidInput(f"{http_callbacks.DELIVERY_HEADER}: required (at most 64 characters)")
    try:
        signed_at = http_callbacks.verify_signature(
            body, signature, delivery_id=delivery_id, secret=settings.CALLBACK_SECRET,
            tolerance=settings.CALLBACK_SIGNATURE_TOLERANCE_SECONDS,
        )
    except http_callbacks.SignatureError as exc:
        raise SignatureRefused(str(exc)) from None
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput("body: not JSON") from None
    if not isinstance(payload, dict):
        raise InvalidInput("body: not a JSON object")

    def number(name):
        value = payload.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    received, created = ReceivedCallback.objects.get_or_create(
        delivery_id=delivery_id,
        defaults={
            "task_id": str(payload.get("task_id") or "")[:64],
            "type": number("type"),
            "code": number("code"),
            "body": payload,
            "signed_at": datetime.fromtimestamp(signed_at, tz=UTC),
        },
    )
    if not created:
        ReceivedCallback.objects.filter(id=received.id).update(times_received=F("times_received") + 1)
        received.refresh_from_db()
    return received
