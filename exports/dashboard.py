"""The export app's part of the operator's dashboard (registered with resourced.dashboard):
exports queued and running per queue and stage, failures of the last 24 hours by ErrorCode, and
what was exported today."""

from datetime import timedelta

from django.db.models import Count, Min, Sum
from django.urls import reverse

from exports.errors import meaning
from exports.models import Export
from exports.stages import BY_NAME, DOWNLOAD, STAGE_NAMES
from resourced.celery import host_bound_queues, host_queue
from resourced.dashboard import changelist


# a waiting export (restoring, waiting for the live edge) is on no queue: its check is a message
# with a countdown (the broker holds it until then)
WAITING_QUEUE = "(scheduled check)"


def stage_queue(*, status: str, stage: str, host: str, remux: bool = False) -> str:
    """The queue an export in this state waits on or runs from (exports/stages.py); `remux`: a
    stream copy from keyframes, made by its download task alone."""
    if status == Export.Status.WAITING:
        return WAITING_QUEUE
    spec = BY_NAME.get(stage)
    made_by_download = remux and spec is not None and spec.remux_task == DOWNLOAD.task
    if status == "queued" or spec is None or spec is DOWNLOAD or not host or made_by_download:
        return DOWNLOAD.queue
    return host_queue(spec.queue, host) if spec.queue in host_bound_queues() else spec.queue


def export_pipeline(now) -> list[dict]:
    """Queued, running and waiting exports per queue and stage, the oldest first."""
    rows = (
        Export.objects.filter(status__in=Export.ACTIVE)
        .values("status", "stage", "host", "export_type", "cut_mode")
        .annotate(n=Count("pk"), oldest=Min("created_at"))
        .order_by()
    )
    grouped: dict[tuple[str, str], dict] = {}
    for row in rows:
        remux = Export.remuxes(export_type=row["export_type"], cut_mode=row["cut_mode"])
        queue = stage_queue(status=row["status"], stage=row["stage"], host=row["host"], remux=remux)
        entry = grouped.setdefault((queue, row["stage"]), {
            "queue": queue, "stage": row["stage"], "queued": 0, "running": 0, "waiting": 0, "oldest": row["oldest"],
            "url": changelist("exports.export", stage__exact=row["stage"], status__in="queued,running,waiting"),
        })
        entry[row["status"]] += row["n"]
        entry["oldest"] = min(entry["oldest"], row["oldest"])
    order = {stage: i for i, stage in enumerate(("restoring", "waiting", "queued", *STAGE_NAMES))}
    result = sorted(grouped.values(), key=lambda e: (order.get(e["stage"], 99), e["queue"]))
    for entry in result:
        entry["oldest_age"] = now - entry["oldest"]
    return result


def export_failures(now) -> dict:
    """Failures in the last 24 hours, by ErrorCode, and the latest few."""
    since = now - timedelta(hours=24)
    failed = Export.objects.filter(status=Export.Status.FAILED, finished_at__gte=since)
    by_code = [
        {
            "code": row["error_code"],
            "meaning": meaning(row["error_code"]),
            "n": row["n"],
            "url": changelist("exports.export", status__exact="failed", error_code=row["error_code"],
                               finished_at__gte=since.isoformat()),
        }
        for row in failed.values("error_code").annotate(n=Count("pk")).order_by("-n", "error_code")
    ]
    latest = [
        {"export": export, "url": reverse("admin:exports_export_change", args=[export.pk])}
        for export in failed.order_by("-finished_at")[:5]
    ]
    cancelled = Export.objects.filter(status=Export.Status.CANCELLED, finished_at__gte=since).count()
    return {"total": sum(r["n"] for r in by_code), "by_code": by_code, "latest": latest, "cancelled": cancelled,
            "url": changelist("exports.export", status__exact="failed", finished_at__gte=since.isoformat())}


def exported_today(now) -> dict:
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    totals = Export.objects.filter(status=Export.Status.READY, finished_at__gte=day_start).aggregate(
        n=Count("pk"), ms=Sum("duration_ms"), bytes=Sum("output_bytes")
    )
    return {
        "exports": totals["n"],
        "minutes": round((totals["ms"] or 0) / 60000, 1),
        "bytes": totals["bytes"] or 0,
        "since": day_start,
        "url": changelist("exports.export", status__exact="ready", finished_at__gte=day_start.isoformat()),
    }



def export_panel(request, now) -> dict | None:
    if not request.user.has_perm("exports.view_export"):
        return None
    pipeline = export_pipeline(now)
    return {
        "pipeline": pipeline,
        "queued_total": sum(row["queued"] for row in pipeline),
        "running_total": sum(row["running"] for row in pipeline),
        "waiting_total": sum(row["waiting"] for row in pipeline),
        "failures": export_failures(now),
        "today": exported_today(now),
    }
