"""GET /healthz: the database, the broker and a worker on each media queue."""

import time

from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from resourced.celery import app, host_bound_queues


def check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure means "down"; the type says why
        return f"database: {type(exc).__name__}"
    return None


def check_broker() -> str | None:
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        return f"broker: {type(exc).__name__}"
    return None


WORKERS_CACHE_KEY = "healthz:media-queue-workers"
WORKERS_CACHE_SECONDS = 5


def media_queue_workers(timeout: float = 1.0) -> dict[str, list[str]]:
    """Which workers answer on each media queue (an answer is kept a few seconds, since asking
    waits the whole timeout for replies)."""
    cached = cache.get(WORKERS_CACHE_KEY)
    if cached is not None:
        return cached
    replies = app.control.inspect(timeout=timeout).active_queues() or {}
    consumers: dict[str, list[str]] = {queue: [] for queue in host_bound_queues()}
    for worker, queues in replies.items():
        for queue in queues or []:
            if queue.get("name") in consumers:
                consumers[queue["name"]].append(worker)
    if all(consumers.values()):
        cache.set(WORKERS_CACHE_KEY, consumers, WORKERS_CACHE_SECONDS)
    return consumers


@require_GET
def healthz(request):
    started = time.monotonic()
    down = [problem for problem in (check_database(), check_broker()) if problem]
    workers: dict[str, list[str]] = {}
    if not any(p.startswith("broker") for p in down):
        try:
            workers = media_queue_workers()
        except Exception as exc:
            down.append(f"workers: {type(exc).__name__}")
        for queue, names in workers.items():
            if not names:
                down.append(f"queue {queue}: no worker answers")
    body = {
        "status": "ok" if not down else "down",
        "down": down,
        "workers": workers,
        "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
    }
    return JsonResponse(body, status=200 if not down else 503)
