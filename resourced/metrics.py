"""GET /metrics: Prometheus text format.

Two kinds of numbers:

- **Requests** (``resourced_http_*``), counted by ``RequestMetricsMiddleware`` in the process that
  answered. gunicorn runs several worker processes, so with ``PROMETHEUS_MULTIPROC_DIR`` set (the
  default, under VAR_DIR) each process writes its counters to files there and ``/metrics`` adds up
  the files of every process (prometheus_client's multiprocess mode). Only counters and
  histograms are used: they need no clean-up when a worker process is recycled.
- **Exports and restores** (``resourced_export*``, ``resourced_restore*``), read from the database
  at scrape time by ``DatabaseCollector``: the same answer whichever process (or replica) is
  scraped, and nothing to keep in step with the Celery workers that do the work.
"""

import logging
import os
import sys
import threading
import time

from django.conf import settings

# prometheus_client picks its value class (in memory, or mmap files per process) when it is
# first imported, from the environment: the folder is put there before that.
def _multiprocess_dir() -> str:
    folder = str(settings.PROMETHEUS_MULTIPROC_DIR or "")
    if not folder:
        return ""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        logging.getLogger(__name__).warning("metrics: %s cannot be created (%s); request metrics are counted "
                                            "per process", folder, exc)
        return ""
    return folder


if _multiprocess_dir():
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(settings.PROMETHEUS_MULTIPROC_DIR))
    if "prometheus_client.values" in sys.modules:  # imported earlier in this process
        from prometheus_client import values as _values

        _values.ValueClass = _values.get_value_class()

from django.db import DatabaseError  # noqa: E402
from django.db.models import Count, FloatField, Max, Q, Sum  # noqa: E402
from django.db.models.fields.json import KT  # noqa: E402
from django.db.models.functions import Cast  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.utils.crypto import constant_time_compare  # noqa: E402
from django.views.decorators.http import require_GET  # noqa: E402
from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import (  # noqa: E402
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

logger = logging.getLogger(__name__)

# --- requests -----------------------------------------------------------------------------------

REQUESTS = Counter(
    "resourced_http_requests",
    "HTTP requests answered, by method, view (URL name) and status code",
    ["method", "view", "status"],
)
REQUEST_SECONDS = Histogram(
    "resourced_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and view (URL name)",
    ["method", "view"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
EXCEPTIONS = Counter(
    "resourced_http_exceptions",
    "Exceptions raised by a view and not handled, by view and exception type",
    ["view", "exception"],
)
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def view_label(request) -> str:
    """The URL's name, never the raw path (image paths alone are unbounded)."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "<unresolved>"
    return match.view_name or match.route or "<unnamed>"


class RequestMetricsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        method = request.method if request.method in METHODS else "other"
        view = view_label(request)
        REQUEST_SECONDS.labels(method, view).observe(time.perf_counter() - started)
        REQUESTS.labels(method, view, str(response.status_code)).inc()
        return response

    def process_exception(self, request, exception):
        EXCEPTIONS.labels(view_label(request), type(exception).__name__).inc()


# --- exports and restores, read from the database -------------------------------------------------

STAGES = ("download", "cut", "encode", "thumbnail", "upload")
STAGE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
LACK_BUCKETS = (0.0, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)


def _le(bound: float) -> str:
    return repr(float(bound))


def _export_families() -> list[Metric]:
    from exports.models import Export

    families: list[Metric] = []
    rows = GaugeMetricFamily(
        "resourced_exports", "Exports in the database by status and ErrorCode", labels=["status", "error_code"]
    )
    for row in Export.objects.values("status", "error_code").annotate(n=Count("pk")).order_by():
        rows.add_metric([row["status"], str(row["error_code"])], row["n"])
    families.append(rows)

    active = GaugeMetricFamily(
        "resourced_exports_active", "Queued and running exports by status and stage", labels=["status", "stage"]
    )
    for row in (Export.objects.filter(status__in=Export.ACTIVE).values("status", "stage")
                .annotate(n=Count("pk")).order_by()):
        active.add_metric([row["status"], row["stage"]], row["n"])
    families.append(active)

    # Stage durations, from Export.timings (seconds per stage): one query, cumulative buckets.
    timed = Export.objects.annotate(**{f"t_{s}": Cast(KT(f"timings__{s}"), FloatField()) for s in STAGES})
    aggregates = {}
    for s in STAGES:
        field = f"t_{s}"
        aggregates[f"{s}_count"] = Count("pk", filter=Q(**{f"{field}__isnull": False}))
        aggregates[f"{s}_sum"] = Sum(field)
        for i, bound in enumerate(STAGE_BUCKETS):
            aggregates[f"{s}_le{i}"] = Count("pk", filter=Q(**{f"{field}__lte": bound}))
    totals = timed.aggregate(**aggregates)
    stage_seconds = HistogramMetricFamily(
        "resourced_export_stage_duration_seconds", "Time each pipeline stage took (Export.timings)", labels=["stage"]
    )
    for s in STAGES:
        buckets = [(_le(b), totals[f"{s}_le{i}"]) for i, b in enumerate(STAGE_BUCKETS)]
        buckets.append(("+Inf", totals[f"{s}_count"]))
        stage_seconds.add_metric([s], buckets, sum_value=totals[f"{s}_sum"] or 0.0)
    families.append(stage_seconds)

    # LackLength and the bytes and minutes of ready exports.
    ready = Export.objects.filter(status=Export.Status.READY)
    lack_aggregates = {f"le{i}": Count("pk", filter=Q(lack_ms__lte=int(b * 1000))) for i, b in enumerate(LACK_BUCKETS)}
    sums = ready.aggregate(
        n=Count("pk"), lack=Sum("lack_ms"), uploaded=Sum("output_bytes"), clip=Sum("duration_ms"),
        incomplete=Count("pk", filter=Q(lack_ms__gt=0)), **lack_aggregates,
    )
    lack = HistogramMetricFamily(
        "resourced_export_lack_seconds", "LackLength of ready exports: requested media the recording lacked"
    )
    buckets = [(_le(b), sums[f"le{i}"]) for i, b in enumerate(LACK_BUCKETS)] + [("+Inf", sums["n"])]
    lack.add_metric([], buckets, sum_value=(sums["lack"] or 0) / 1000)
    families.append(lack)
    families.append(GaugeMetricFamily(
        "resourced_exports_incomplete", "Ready exports with LackLength > 0", value=sums["incomplete"]
    ))
    families.append(CounterMetricFamily(
        "resourced_export_uploaded_bytes", "Bytes of clips uploaded (ready exports)", value=sums["uploaded"] or 0
    ))
    families.append(CounterMetricFamily(
        "resourced_export_clip_seconds", "Seconds of clips exported (ready exports, as requested)",
        value=(sums["clip"] or 0) / 1000,
    ))
    downloaded = Export.objects.aggregate(n=Sum("bytes_downloaded"))["n"] or 0
    families.append(CounterMetricFamily(
        "resourced_export_downloaded_bytes", "Bytes of recording segments downloaded (every export)", value=downloaded
    ))
    last = Export.objects.aggregate(at=Max("finished_at"))["at"]
    if last is not None:
        families.append(GaugeMetricFamily(
            "resourced_export_last_finished_timestamp_seconds", "When the last export ended", value=last.timestamp()
        ))
    return families


def _restore_families() -> list[Metric]:
    """Restore jobs and callbacks, when the restore app and its tables are there."""
    from django.apps import apps

    if not apps.is_installed("restore"):
        return []
    families: list[Metric] = []
    try:
        job = apps.get_model("restore", "RestoreJob")
    except LookupError:
        return []
    jobs = GaugeMetricFamily("resourced_restore_jobs", "Restore jobs by status", labels=["status"])
    for row in job.objects.values("status").annotate(n=Count("pk")).order_by():
        jobs.add_metric([row["status"]], row["n"])
    families.append(jobs)
    try:
        callback = apps.get_model("restore", "Callback")
    except LookupError:
        return families
    callbacks = GaugeMetricFamily("resourced_restore_callbacks", "Client callbacks by state", labels=["state"])
    for row in callback.objects.values("state").annotate(n=Count("pk")).order_by():
        callbacks.add_metric([row["state"]], row["n"])
    families.append(callbacks)
    return families


class DatabaseCollector:
    """Reads the export and restore numbers at scrape time, at most every
    METRICS_DATABASE_CACHE_SECONDS per process."""

    def __init__(self):
        self._lock = threading.Lock()
        self._at = 0.0
        self._families: list[Metric] = []

    def collect(self):
        with self._lock:
            now = time.monotonic()
            if not self._families or now - self._at >= settings.METRICS_DATABASE_CACHE_SECONDS:
                self._families = self._read()
                self._at = now
            families = list(self._families)
        yield from families

    def _read(self) -> list[Metric]:
        started = time.perf_counter()
        families: list[Metric] = []
        up = 1
        try:
            families.extend(_export_families())
        except DatabaseError:
            logger.exception("metrics: the exports could not be read from the database")
            up = 0
        try:
            families.extend(_restore_families())
        except DatabaseError:  # the restore tables may not be migrated yet
            logger.warning("metrics: the restore jobs could not be read from the database", exc_info=True)
        families.append(GaugeMetricFamily("resourced_metrics_database_up", "1 when the exports could be read",
                                          value=up))
        families.append(GaugeMetricFamily("resourced_metrics_database_read_seconds",
                                          "Time the database metrics took to read", value=time.perf_counter() - started))
        return families

    def reset(self) -> None:
        with self._lock:
            self._families = []


database_collector = DatabaseCollector()


def registry() -> CollectorRegistry:
    """What one scrape answers: every process's request metrics, and the database's numbers."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        for metric in (REQUESTS, REQUEST_SECONDS, EXCEPTIONS):
            registry.register(metric)
    registry.register(database_collector)
    return registry


def _authorized(request) -> bool:
    token = settings.METRICS_TOKEN
    if not token:
        return True
    header = request.headers.get("Authorization", "")
    return header.startswith("Bearer ") and constant_time_compare(header[len("Bearer "):], token)


@require_GET
def metrics_view(request):
    if not _authorized(request):
        response = HttpResponse("metrics: a bearer token is required\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
