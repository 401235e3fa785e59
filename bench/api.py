"""API latency and throughput under gunicorn with 32 concurrent keep-alive clients (wrk).

Endpoints, each for a few seconds after a warm-up, in one run against the same gunicorn:
  constant GET   /bench/constant (bench/urls.py: a DRF APIView answering a constant body)
  poll     GET   /resource/v1/i/export-to-s3dir/<TaskId> (ready exports, X-Session-Id header)
  constant POST  /bench/constant with an export request body (parsed, not used)
  re-post  POST  /resource/v1/i/export-to-s3dir with the body of an export that exists (idempotent answer)
  submit   POST  /resource/v1/i/export-to-s3dir, every request a new export (FileName and userid
                 vary): a row is created and the download task published to Redis. The workers
                 are stopped, so the queue only grows; the bench Quota row allows it.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import log, loadavg
from bench.stack import BenchStack

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = 32


def wrk(url: str, *, method: str, lines: list[tuple[str, str]], seconds: float, unique: bool = False,
        header: str | None = None, connections: int = CLIENTS, threads: int = 2) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        for path, body in lines:
            fh.write(f"{path}\t{body}\n")
        name = fh.name
    env = {"BENCH_METHOD": method, "BENCH_FILE": name, "BENCH_UNIQUE": "1" if unique else "0",
           "PATH": "/usr/bin:/bin:/usr/local/bin"}
    if header:
        env["BENCH_HEADER"] = header
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s",
            "-s", str(ROOT / "bench" / "wrk.lua"), url]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60)
    Path(name).unlink(missing_ok=True)
    line = [x for x in out.stdout.splitlines() if x.startswith("{")]
    if out.returncode != 0 or not line:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-2000:]} {out.stderr[-2000:]}")
    data = json.loads(line[-1])
    data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
    data["p50_ms"] = data["p50_us"] / 1000
    data["p90_ms"] = data["p90_us"] / 1000
    data["p99_ms"] = data["p99_us"] / 1000
    data["mean_ms"] = data["mean_us"] / 1000
    return data


def run(stack: BenchStack, ready: list[dict], *, seconds: float = 8, warmup: float = 2) -> dict:
    """`ready`: [{"task_id", "body"}] of ready exports. The workers must be stopped."""
    if shutil.which("wrk") is None:
        return {"skipped": "wrk is not installed (Debian: apt-get install wrk)"}
    url = stack.web.url
    export_path = "/resource/v1/i/export-to-s3dir"
    session_header = f"X-Session-Id: {stack.session_id}"
    polls = [(f"{export_path}/{r['task_id']}", "") for r in ready]
    reposts = [(export_path, json.dumps(r["body"])) for r in ready]
    template = dict(ready[0]["body"], FileName="bench-submit-@N@", userid="bench-submit-@N@")
    # 32 users: the quota queries of a user scan that user's rows only
    template_json = json.dumps(template)
    submits = [(export_path, template_json.replace('"userid": "bench-submit-@N@"', f'"userid": "bench-u{u}"'))
               for u in range(CLIENTS)]
    cases = [
        ("constant_get", dict(method="GET", lines=[("/bench/constant", "")])),
        ("poll", dict(method="GET", lines=polls, header=session_header)),
        ("constant_post", dict(method="POST", lines=[("/bench/constant", reposts[0][1])])),
        ("repost", dict(method="POST", lines=reposts)),
        ("submit", dict(method="POST", lines=submits, unique=True)),
    ]
    results = {"clients": CLIENTS, "seconds": seconds, "gunicorn": "2 workers x 4 threads (deploy/start/web defaults)"}
    before = stack.sql("SELECT count(*) FROM exports_export")[0][0]
    for name, options in cases:
        if name != "submit":
            wrk(url, seconds=warmup, **options)
        results[name] = wrk(url, seconds=seconds, **options)
        r = results[name]
        log(f"api {name}: p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, {r['rps']:.0f} req/s, "
            f"errors {sum(r['errors'].values())}")
    created = stack.sql("SELECT count(*) FROM exports_export")[0][0] - before
    results["submit"]["rows_created"] = created
    # the same endpoints at the pace clients really poll: TimeWait is at least 500 ms for a running
    # export, so 32 clients polling as told send at most 64 requests/s; a submit is answered with
    # TimeWait >= 2000 ms (queued), so 32 clients submitting back to back send at most 16/s
    results["paced"] = {}
    for name, options in cases:
        options = {k: v for k, v in options.items()}
        if name == "submit":
            options["lines"] = [(p, b.replace("bench-submit-@N@", "bench-paced-@N@")) for p, b in options["lines"]]
            options["period_s"] = 2.0
            options["seconds"] = 10
        r = paced(url, **options)
        results["paced"][name] = r
        log(f"api paced {name} ({r['rate_rps']:.0f} req/s from {r['clients']} clients): p50 {r['p50_ms']:.1f} ms, "
            f"p99 {r['p99_ms']:.1f} ms, errors {r['errors']}")
    results["loadavg_after"] = loadavg()
    for name in ("poll", "repost", "submit"):
        base = results["constant_get" if name == "poll" else "constant_post"]
        results[name]["p99_over_constant"] = results[name]["p99_ms"] / base["p99_ms"] if base["p99_ms"] else None
        results[name]["rps_over_constant"] = results[name]["rps"] / base["rps"] if base["rps"] else None
    return results


def paced(url: str, *, method: str, lines: list[tuple[str, str]], header: str | None = None, unique: bool = False,
          clients: int = CLIENTS, period_s: float = 0.5, seconds: float = 8) -> dict:
    """32 clients that each send one request every `period_s` (open loop, keep-alive, http.client):
    the latency of a request counts from the moment it was due, so a slow answer that delays the
    next request of the same client is charged to it (no coordinated omission)."""
    import http.client
    import threading
    import time
    from urllib.parse import urlparse

    target = urlparse(url)
    latencies: list[float] = []
    failures = {"count": 0}
    lock = threading.Lock()
    start = time.perf_counter() + 0.5

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
        headers = {"Content-Type": "application/json"}
        if header:
            name, value = header.split(":", 1)
            headers[name] = value.strip()
        k = 0
        while True:
            due = start + period_s * (k + i / clients)
            if due > start + seconds:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            path, body = lines[(i + k) % len(lines)]
            if unique:
                body = body.replace("@N@", f"paced-{i}-{k}")
            try:
                conn.request(method, path, body=body.encode() if body else None, headers=headers)
                answer = conn.getresponse()
                answer.read()
                ok = answer.status == 200
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
                ok = False
            with lock:
                latencies.append(time.perf_counter() - due)
                if not ok:
                    failures["count"] += 1
            k += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()

    def pct(p):
        return 1000 * latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] if latencies else None

    return {"clients": clients, "period_s": period_s, "rate_rps": clients / period_s, "requests": len(latencies),
            "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99), "max_ms": 1000 * latencies[-1] if latencies else None,
            "errors": failures["count"]}


def profile(stack: BenchStack, ready: list[dict], out_dir: Path, *, seconds: float = 8) -> dict:
    """py-spy on the gunicorn workers during a closed-loop run of poll and submit (after the
    measurements, so that sampling does not disturb them); summaries written under out_dir."""
    import os
    import sys
    import threading

    from bench import spysummary

    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists() or os.geteuid() != 0:
        return {"skipped": "py-spy needs root (ptrace) and `pip install py-spy`"}
    export_path = "/resource/v1/i/export-to-s3dir"
    template = json.dumps(dict(ready[0]["body"], FileName="bench-spy-@N@", userid="bench-spy"))
    cases = {
        "poll": dict(method="GET", lines=[(f"{export_path}/{r['task_id']}", "") for r in ready],
                     header=f"X-Session-Id: {stack.session_id}"),
        "submit": dict(method="POST", lines=[(export_path, template)], unique=True),
    }
    out = {}
    for name, options in cases.items():
        raw = out_dir / f"profile-api-{name}.raw"
        load = threading.Thread(target=wrk, args=(stack.web.url,), kwargs=dict(seconds=seconds + 3, **options))
        load.start()
        time.sleep(2)
        subprocess.run([str(spy), "record", "--pid", str(stack.web.process.pid), "--subprocesses", "--nonblocking",
                        "--rate", "200", "--duration", str(int(seconds)), "--format", "raw", "-o", str(raw)],
                       capture_output=True, timeout=seconds + 60)
        load.join()
        if raw.exists():
            summary = spysummary.summarize(raw, top=30, match=("exports/", "resourced/", "psycopg", "kombu", "redis/",
                                                               "rest_framework", "django/db"))
            text = out_dir / f"profile-api-{name}.txt"
            text.write_text(spysummary.format_summary(summary) + "\n")
            out[name] = {"summary": str(text.relative_to(ROOT)), "top": summary["inclusive"][:15]}
    return out


def single_client(stack: BenchStack, ready: list[dict], *, seconds: float = 4) -> dict:
    """The same endpoints with one client: the service time without queueing."""
    export_path = "/resource/v1/i/export-to-s3dir"
    out = {}
    for name, options in (
        ("constant_get", dict(method="GET", lines=[("/bench/constant", "")])),
        ("poll", dict(method="GET", lines=[(f"{export_path}/{r['task_id']}", "") for r in ready],
                      header=f"X-Session-Id: {stack.session_id}")),
        ("repost", dict(method="POST", lines=[(export_path, json.dumps(r["body"])) for r in ready])),
    ):
        r = wrk(stack.web.url, seconds=seconds, connections=1, threads=1, **options)
        out[name] = {k: r[k] for k in ("p50_ms", "p99_ms", "rps")}
    return out
