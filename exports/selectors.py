"""Reads of exports: lookups and the answer body of export-to-s3dir."""

from datetime import datetime

from django.conf import settings
from django.utils import timezone

from exports.models import Export, Quota

VERSION = "v1"
READY = "ready to download"


# what export_response reads: a poll loads these columns only
RESPONSE_FIELDS = ("task_id", "status", "stage", "progress", "error_code", "error_message", "image_path",
                   "video_path", "lack_ms", "output_start_ms", "output_duration_ms", "created_at",
                   "started_at", "updated_at", "restarts", "waiting_on", "next_check_at")


def quota_for(*, userid: str, service_caller: str) -> Quota:
    """The quota that applies: the userid's, else the ServiceCaller's, else the default row, else
    the built-in default."""
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


def work_began_at(export: Export) -> datetime | None:
    """When the current run of a running export's work began, which its Progress counts from:
    started_at, kept through waits and restarts; for an export that waited (restoring, the live
    edge) or was restarted since, when it began running again (updated_at, which
    services._begin_stage writes as the export leaves queued or waiting, and Progress starts from
    0 again), so that the time it waited is not counted as work."""
    if not export.started_at:
        return None
    if (export.waiting_on or export.restarts) and export.updated_at:
        return max(export.started_at, export.updated_at)
    return export.started_at


def estimate_time_wait(export: Export) -> int:
    """ms until the next poll is worth it: queue position for a queued export, the remaining
    share of the elapsed time for a running one."""
    poll = settings.EXPORT_POLL_MS
    if export.status == Export.Status.QUEUED:
        ahead = Export.objects.filter(status=Export.Status.QUEUED, created_at__lt=export.created_at).count()
        slots = max(1, settings.CELERY_WORKER_CONCURRENCY)
        return int(min(30_000, poll * (1 + ahead // slots)))
    if export.status == Export.Status.WAITING:
        # when the restores should be done / the live edge past the end; never before the next look
        expected = (export.waiting_on or {}).get("expected_at")
        moments = [m for m in (datetime.fromisoformat(expected) if expected else None, export.next_check_at) if m]
        if not moments:
            return poll
        return int(max(poll, (max(moments) - timezone.now()).total_seconds() * 1000))
    if export.status == Export.Status.RUNNING:
        began = work_began_at(export)
        if began and export.progress > 0:
            elapsed = (timezone.now() - began).total_seconds() * 1000
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
        # ready: what services.ready_message stored (it names skipped damaged segments)
        Export.Status.READY: export.error_message if export.error_message.startswith(READY) else READY,
    }.get(status, export.error_message)
    body.update(
        ErrorCode={Export.Status.QUEUED: 1, Export.Status.RUNNING: 1, Export.Status.WAITING: 1,
                   Export.Status.READY: 5}.get(status, export.error_code),
        ErrorMessage=message,
        TimeWait=estimate_time_wait(export),
        ImagePath=export.image_path,
        VideoPath=export.video_path if status == Export.Status.READY else "",
        LackLength=int(export.lack_ms),
        TaskId=export.task_id,
        # 100 means ready: an export that ended otherwise after its last stage never says 100
        Progress=int(export.progress) if status == Export.Status.READY else min(int(export.progress), 99),
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


# --- what the admin shows of an export's state ---------------------------------------------------

def export_failed_stage(export: Export) -> str:
    """The stage a failed or cancelled export was in when it ended. Its Stage then reads "failed"
    (or "cancelled"), so this is read from what the pipeline recorded for its last generation: the
    last stage it began (attempts) without completing it (timings); a restore that passed its
    deadline (the check that found it runs as download); else what it last waited on, or "queued"
    when it never started."""
    from exports.stages import STAGE_NAMES

    if export.ended_in_stage:  # recorded when it ended (exports/services.py); rows from before: inferred
        return export.ended_in_stage
    attempts, timings, waited = export.attempts or {}, export.timings or {}, export.waiting_on or {}
    begun = [name for name in STAGE_NAMES if attempts.get(name)]
    unfinished = [name for name in begun if name not in timings]
    if (waited.get("kind") == Export.Stage.RESTORING and unfinished in ([], ["download"]) and export.wait_deadline
            and export.finished_at and export.finished_at >= export.wait_deadline):
        return Export.Stage.RESTORING
    if unfinished:
        return unfinished[-1]
    if begun:
        return begun[-1]  # every stage it began completed: it ended between two of them
    return waited.get("kind") or Export.Stage.QUEUED


def export_eta_seconds(export: Export) -> float | None:
    """Seconds a running export still needs: the time its current run of work has taken
    (work_began_at: not the time it waited on restores or the live edge), scaled by the Progress to
    go (TimeWait's estimate, without its bounds on the next poll). None before there is progress,
    and for a waiting export (its TimeWait says when it goes on)."""
    began = work_began_at(export)
    if export.status != Export.Status.RUNNING or not began or export.progress <= 0:
        return None
    elapsed = max(0.0, (timezone.now() - began).total_seconds())
    return elapsed * (100 - min(export.progress, 100)) / export.progress


def export_state(export: Export) -> dict:
    """An export's state as the admin shows it (list, detail, and the progress endpoint). A failed
    or cancelled export has no Progress (None), only the stage it ended in."""
    status = export.status
    ended = status in (Export.Status.FAILED, Export.Status.CANCELLED)
    waiting = status == Export.Status.WAITING
    waited = export.waiting_on or {}
    return {
        "id": export.pk,
        "task_id": export.task_id,
        "status": status,
        "stage": export.stage,
        "progress": None if ended or waiting else (100 if status == Export.Status.READY else
                                                   min(int(export.progress), 99)),
        "eta_seconds": export_eta_seconds(export),
        "total_seconds": export.total_seconds,
        "ended_in": export_failed_stage(export) if ended else None,
        "error_code": export.error_code if ended else None,
        "next_check_at": export.next_check_at if waiting else None,
        "wait_deadline": export.wait_deadline if waiting else None,
        "waiting_on": (len(waited.get("restoring") or {}) if export.stage == Export.Stage.RESTORING
                       else "the live edge") if waiting else None,
    }


def export_states(*, ids: list[int]) -> list[dict]:
    """export_state of each export in `ids` that exists."""
    return [export_state(export) for export in Export.objects.filter(pk__in=ids).order_by()]


def quota_usage_today(*, limit: int = 100) -> list[dict]:
    """Per quota subject (a userid; the ServiceCaller for requests without one) with exports
    today (UTC) or active now: exports and minutes today as quota_check counts them, queued or
    running now, waiting now, and the quota that applies (quota_for)."""
    from django.db.models import Count, Q, Sum

    day_start = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    today = Q(created_at__gte=day_start)
    counted = today & ~Q(status__in=[Export.Status.FAILED, Export.Status.CANCELLED])
    rows = (
        Export.objects.filter(today | Q(status__in=Export.ACTIVE))
        .values("userid", "service_caller")
        .annotate(exports=Count("pk", filter=today), ms=Sum("duration_ms", filter=counted),
                  active=Count("pk", filter=Q(status__in=Export.WORKING)),
                  waiting=Count("pk", filter=Q(status=Export.Status.WAITING)))
        .order_by()
    )
    subjects: dict[tuple[str, str], dict] = {}
    for row in rows:
        key = ("user", row["userid"]) if row["userid"] else ("caller", row["service_caller"])
        usage = subjects.setdefault(key, {"scope": key[0], "subject": key[1], "callers": [], "exports": 0,
                                          "ms": 0, "active": 0, "waiting": 0})
        usage["callers"].append(row["service_caller"])
        for name in ("exports", "ms", "active", "waiting"):
            usage[name] += row[name] or 0
    usage_rows = sorted(subjects.values(), key=lambda u: (-u["ms"], -u["active"] - u["waiting"], u["subject"]))[:limit]
    for usage in usage_rows:
        usage["callers"] = sorted(set(usage["callers"]))
        userid = usage["subject"] if usage["scope"] == "user" else ""
        usage["quota"] = quota_for(userid=userid, service_caller=usage["callers"][0])
        usage["minutes"] = round(usage["ms"] / 60_000, 1)
    return usage_rows
