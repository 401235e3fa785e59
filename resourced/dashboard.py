"""The admin index with an operator's dashboard above the list of apps.

What is waiting and running on each queue, what failed in the last 24 hours and why (ErrorCode),
how many minutes were exported today, and how many restores are still waiting. Every number is
a link to the admin list it counts, filtered. ``admin_index`` replaces the admin's index view
(resourced/urls.py routes ``admin/`` to it); the template resourced/templates/admin/index.html
draws the numbers and then the usual index.
"""

import logging
from datetime import timedelta
from urllib.parse import urlencode

from django.apps import apps
from django.contrib import admin
from django.db import DatabaseError
from django.db.models import Count, Min, Sum
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from resourced.celery import QUEUE_MEDIA_CPU, QUEUE_MEDIA_IO, host_queue

logger = logging.getLogger(__name__)

# api.md §1: what each ErrorCode of a failed export means.
ERROR_CODES = {
    -1: "no such recording",
    -2: "invalid request",
    -3: "authentication failed",
    -4: "over quota",
    -5: "source storage unreachable or denied",
    -6: "destination upload failed",
    -7: "media could not be decoded or encoded",
    -8: "cancelled",
    -9: "internal error",
}
CPU_STAGES = {"cut", "encode", "thumbnail"}


def stage_queue(*, status: str, stage: str, host: str) -> str:
    """The queue an export in this state waits on or runs from (architecture.md, the pipeline)."""
    if status == "queued" or stage in ("queued", "download") or not host:
        return QUEUE_MEDIA_IO
    if stage in CPU_STAGES:
        return host_queue(QUEUE_MEDIA_CPU, host)
    return host_queue(QUEUE_MEDIA_IO, host)


def _changelist(model_label: str, **filters) -> str:
    url = reverse(f"admin:{model_label.replace('.', '_')}_changelist")
    return f"{url}?{urlencode(filters)}" if filters else url


def export_pipeline(now) -> list[dict]:
    """Queued and running exports per queue and stage, the oldest first."""
    from exports.models import Export

    rows = (
        Export.objects.filter(status__in=Export.ACTIVE)
        .values("status", "stage", "host")
        .annotate(n=Count("pk"), oldest=Min("created_at"))
        .order_by()
    )
    grouped: dict[tuple[str, str], dict] = {}
    for row in rows:
        queue = stage_queue(status=row["status"], stage=row["stage"], host=row["host"])
        entry = grouped.setdefault((queue, row["stage"]), {
            "queue": queue, "stage": row["stage"], "queued": 0, "running": 0, "oldest": row["oldest"],
            "url": _changelist("exports.export", stage__exact=row["stage"], status__in="queued,running"),
        })
        entry[row["status"]] += row["n"]
        entry["oldest"] = min(entry["oldest"], row["oldest"])
    order = {stage: i for i, stage in enumerate(Export.Stage.values)}
    result = sorted(grouped.values(), key=lambda e: (order.get(e["stage"], 99), e["queue"]))
    for entry in result:
        entry["oldest_age"] = now - entry["oldest"]
    return result


def export_failures(now) -> dict:
    """Failures in the last 24 hours, by ErrorCode, and the latest few."""
    from exports.models import Export

    since = now - timedelta(hours=24)
    failed = Export.objects.filter(status=Export.Status.FAILED, finished_at__gte=since)
    by_code = [
        {
            "code": row["error_code"],
            "meaning": ERROR_CODES.get(row["error_code"], "unknown"),
            "n": row["n"],
            "url": _changelist("exports.export", status__exact="failed", error_code=row["error_code"],
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
            "url": _changelist("exports.export", status__exact="failed", finished_at__gte=since.isoformat())}


def exported_today(now) -> dict:
    from exports.models import Export

    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    totals = Export.objects.filter(status=Export.Status.READY, finished_at__gte=day_start).aggregate(
        n=Count("pk"), ms=Sum("duration_ms"), bytes=Sum("output_bytes")
    )
    return {
        "exports": totals["n"],
        "minutes": round((totals["ms"] or 0) / 60000, 1),
        "bytes": totals["bytes"] or 0,
        "since": day_start,
        "url": _changelist("exports.export", status__exact="ready", finished_at__gte=day_start.isoformat()),
    }


def restores_waiting() -> dict | None:
    """Restore jobs not done yet, by status; None when the restore app or its tables are absent."""
    if not apps.is_installed("restore"):
        return None
    try:
        job = apps.get_model("restore", "RestoreJob")
    except LookupError:
        return None
    try:
        statuses = [
            {"status": row["status"], "n": row["n"], "oldest": row["oldest"]}
            for row in job.objects.exclude(status="done").values("status").annotate(
                n=Count("pk"), oldest=Min("created_at")).order_by("status")
        ]
        pending_callbacks = None
        try:
            callback = apps.get_model("restore", "Callback")
        except LookupError:
            callback = None
        if callback is not None:
            pending_callbacks = callback.objects.filter(state="pending").count()
    except DatabaseError:  # not migrated yet
        logger.warning("dashboard: restore jobs could not be read", exc_info=True)
        return None
    waiting = ",".join(s["status"] for s in statuses)
    try:
        url = _changelist("restore.restorejob", **({"status__in": waiting} if waiting else {}))
    except NoReverseMatch:  # the restore admin is not registered
        url = ""
    try:
        callbacks_url = _changelist("restore.callback", state__exact="pending") if pending_callbacks else ""
    except NoReverseMatch:
        callbacks_url = ""
    return {"total": sum(s["n"] for s in statuses), "statuses": statuses, "pending_callbacks": pending_callbacks,
            "url": url, "callbacks_url": callbacks_url}


def dashboard_context(request) -> dict:
    if not request.user.has_perm("exports.view_export"):
        return {}
    now = timezone.now()
    pipeline = export_pipeline(now)
    return {
        "resourced_dashboard": {
            "now": now,
            "pipeline": pipeline,
            "queued_total": sum(row["queued"] for row in pipeline),
            "running_total": sum(row["running"] for row in pipeline),
            "failures": export_failures(now),
            "today": exported_today(now),
            "restores": restores_waiting(),
        }
    }


def admin_index(request, extra_context=None):
    """The admin site's index, with the dashboard."""
    context = dashboard_context(request)
    context.update(extra_context or {})
    return admin.site.index(request, extra_context=context)
