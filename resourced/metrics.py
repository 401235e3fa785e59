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
from collections.abc import Callable

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
from django.http import HttpResponse, JsonResponse  # noqa: E402
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
    GaugeMetricFamily,
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

# Each app registers a function that reads its numbers from the database at scrape time.
_database_families: dict[str, Callable[[], list[Metric]]] = {}


def register_database_metrics(name: str, families: Callable[[], list[Metric]]) -> None:
    _database_families[name] = families


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
        for name, read in _database_families.items():
            try:
                families.extend(read())
            except DatabaseError:
                logger.exception("metrics: the %s numbers could not be read from the database", name)
                up = 0
        families.append(GaugeMetricFamily("resourced_metrics_database_up", "1 when every app's numbers could be read",
                                          value=up))
        families.append(GaugeMetricFamily("resourced_metrics_database_read_seconds",
                                          "Time the database metrics took to read", value=time.perf_counter() - started))
        return families

    def reset(self) -> None:
        with self._lock:
            self._families = []


database_collector = DatabaseCollector()


class _OwnFamilies:
    """The service's own families of a collector: any other process that shares the multiprocess
    folder (Flower and the Celery workers set up Django too, and Flower counts its events with
    prometheus_client) must not show up in the web's /metrics."""

    def __init__(self, collector):
        self.collector = collector

    def collect(self):
        return [family for family in self.collector.collect() if family.name.startswith(OWN_PREFIX)]


OWN_PREFIX = "resourced_"


def registry() -> CollectorRegistry:
    """What one scrape answers: every process's request metrics, and the database's numbers."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry.register(_OwnFamilies(multiprocess.MultiProcessCollector(None)))
    else:
        for metric in (REQUESTS, REQUEST_SECONDS, EXCEPTIONS):
            registry.register(metric)
    registry.register(database_collector)
    return registry


def _authorized(request) -> bool:
    """With METRICS_TOKEN set (production requires it), only its bearer scrapes."""
    token = settings.METRICS_TOKEN
    if not token:
        return True
    header = request.headers.get("Authorization", "")
    return header.startswith("Bearer ") and constant_time_compare(header[len("Bearer "):], token)


@require_GET
def metrics_view(request):
    if not _authorized(request):
        # JSON in the generic shape, as every other error of the service
        message = "metrics: a bearer token is required (Authorization: Bearer <token>)"
        response = JsonResponse({"code": 401, "message": message}, status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
