"""The restore app's metrics, read from the database at scrape time (registered with
resourced.metrics)."""

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily, Metric

from restore.models import Callback, RestoreJob


def restore_families() -> list[Metric]:
    """Restore jobs and callbacks, when the restore app and its tables are there."""
    families: list[Metric] = []
    jobs = GaugeMetricFamily("resourced_restore_jobs", "Restore jobs by status", labels=["status"])
    for row in RestoreJob.objects.values("status").annotate(n=Count("pk")).order_by():
        jobs.add_metric([row["status"]], row["n"])
    families.append(jobs)
    callbacks = GaugeMetricFamily("resourced_restore_callbacks", "Client callbacks by state", labels=["state"])
    for row in Callback.objects.values("state").annotate(n=Count("pk")).order_by():
        callbacks.add_metric([row["state"]], row["n"])
    families.append(callbacks)
    return families
