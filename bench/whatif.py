"""Measured what-ifs for the fixes the benchmark proposes, by monkeypatching in this process only
(the service code is not changed). Run by bench/run.py in a child with the stack's environment:

    python -m bench.whatif api INPUT.json        # per-request cost of poll / re-post / submit, with and
                                                 # without the database connection's health check

INPUT.json: {"ready": [{"task_id", "body"}], "live_path": ..., "s3_url": ...}. Prints one JSON line.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _setup() -> None:
    import resourced  # noqa: F401  (the Celery app first, as gunicorn's wsgi import does)
    import django

    django.setup()


# --- API ----------------------------------------------------------------------------------------
class _DbTimer:
    """connection.execute_wrapper: count statements and the time spent in them."""

    def __init__(self):
        self.count = 0
        self.seconds = 0.0

    def __call__(self, execute, sql, params, many, context):
        t = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - t
            self.count += 1


def api(data: dict, n: int = 150, blocks: int = 3) -> dict:
    _setup()
    from django.db import close_old_connections, connection
    from django.test import Client

    from exports import services

    client = Client(HTTP_HOST="127.0.0.1")
    ready = data["ready"]
    session = data["session_id"]
    counter = {"n": 0}
    publish = {"seconds": 0.0, "count": 0}
    original_enqueue = services.export_enqueue

    def timed_enqueue(*, export):
        t = time.perf_counter()
        try:
            return original_enqueue(export=export)
        finally:
            publish["seconds"] += time.perf_counter() - t
            publish["count"] += 1

    services.export_enqueue = timed_enqueue

    def poll(i):
        return client.get(f"/resource/v1/i/export-to-s3dir/{ready[i % len(ready)]['task_id']}", HTTP_X_SESSION_ID=session)

    def repost(i):
        return client.post("/resource/v1/i/export-to-s3dir", data=json.dumps(ready[i % len(ready)]["body"]),
                           content_type="application/json")

    def submit(i):
        counter["n"] += 1
        body = dict(ready[0]["body"], FileName=f"whatif-{uuid.uuid4().hex}", userid=f"whatif-u{i % 32}")
        return client.post("/resource/v1/i/export-to-s3dir", data=json.dumps(body), content_type="application/json")

    def constant(i):
        return client.get("/bench/constant")

    def measure(fn, count):
        timer = _DbTimer()
        publish.update(seconds=0.0, count=0)
        times = []
        with connection.execute_wrapper(timer):
            for i in range(count):
                close_old_connections()  # what the request_started signal does under gunicorn
                t = time.perf_counter()
                answer = fn(i)
                times.append(time.perf_counter() - t)
                if answer.status_code != 200:
                    raise RuntimeError(f"{fn.__name__}: {answer.status_code} {answer.content[:300]}")
        return {"mean_ms": 1000 * statistics.fmean(times), "p50_ms": 1000 * statistics.median(times),
                "statements": timer.count / count, "db_ms": 1000 * timer.seconds / count,
                "publish_ms": 1000 * publish["seconds"] / count if publish["count"] else 0.0}

    # the session cache (F1) and the slim export lookup (F2) are in the service now; what is left to
    # weigh is the connection health check production settings turn on (a SELECT 1 per request)
    def use(health):
        connection.health_check_enabled = health

    variants = {
        "as_is": lambda: use(True),
        "no_health_check": lambda: use(False),
    }
    results: dict = {}
    for fn in (constant, poll, repost, submit):
        fn(0)  # warm
        runs = {v: [] for v in variants}
        for _ in range(blocks):
            for v, apply in variants.items():
                apply()
                connection.ensure_connection()
                runs[v].append(measure(fn, n))
        results[fn.__name__] = {v: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for v, rs in runs.items()}
    variants["as_is"]()
    return {"requests_per_block": n, "blocks": blocks, "endpoints": results}


# --- download -------------------------------------------------------------------------------------
if __name__ == "__main__":
    what, path = sys.argv[1], sys.argv[2]
    data = json.loads(Path(path).read_text())
    result = {"api": api}[what](data)
    print("WHATIF " + json.dumps(result))
