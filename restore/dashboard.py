"""The restore app's part of the operator's dashboard (registered with resourced.dashboard):
restore jobs not done yet, by status, and the client callbacks still pending."""

from django.db.models import Count, Min

from resourced.dashboard import changelist
from restore.models import Callback, RestoreJob


def restore_panel(request, now) -> dict | None:
    if not request.user.has_perm("restore.view_restorejob"):
        return None
    statuses = [
        {"status": row["status"], "n": row["n"], "oldest": row["oldest"]}
        for row in RestoreJob.objects.exclude(status="done").values("status").annotate(
            n=Count("pk"), oldest=Min("created_at")).order_by("status")
    ]
    pending_callbacks = Callback.objects.filter(state="pending").count()
    waiting = ",".join(s["status"] for s in statuses)
    return {"restores": {
        "total": sum(s["n"] for s in statuses),
        "statuses": statuses,
        "pending_callbacks": pending_callbacks,
        "url": changelist("restore.restorejob", **({"status__in": waiting} if waiting else {})),
        "callbacks_url": changelist("restore.callback", state__exact="pending") if pending_callbacks else "",
    }}
