"""`make bench`: every benchmark in one run, a table on stdout, results JSON under var/bench/.

    python -m bench.run [--quick] [--skip engine,e2e,scale,whatif,api]

--quick: fewer repetitions (engine 3/2, e2e 2/1, 6 exports at once), for a smoke run.
Order: the media engine alone (nothing else of ours running), then one production stack for the
export latency and bytes, 20 exports at once (as is, then the depth-first what-if), the API
(workers stopped), the API what-if, and the py-spy profiles of the API.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import report  # noqa: E402
from bench.common import BENCH_VAR, PY, log, machine, write_json  # noqa: E402

CPU_SLOTS = 2  # deploy/start/worker-cpu: concurrency = cores
IO_SLOTS = 4
EMBEDDED_SLOTS = 2  # make run: the worker's default concurrency (CELERY_WORKER_CONCURRENCY)


def whatif(stack, what: str, data: dict) -> dict:
    """bench/whatif.py in a child with the stack's environment (Django configured there only)."""
    path = stack.base / f"whatif-{what}.json"
    path.write_text(json.dumps(data))
    env = dict(stack.env, DJANGO_SETTINGS_MODULE="bench.settings")
    out = subprocess.run([PY, "-m", "bench.whatif", what, str(path)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=900)
    line = [x for x in out.stdout.splitlines() if x.startswith("WHATIF ")]
    if out.returncode != 0 or not line:
        return {"error": (out.stderr or out.stdout)[-2000:]}
    return json.loads(line[-1][len("WHATIF "):])


def embedded_stack(manifest, reps: dict, skip: set) -> dict:
    """Export latency and the batch on the `make run` stack: SQLite, the embedded Redis, one worker
    on every queue with make run's concurrency, against the same ffmpeg + boto3 baseline."""
    from bench import e2e
    from bench.stack import BenchStack

    base = Path(tempfile.mkdtemp(prefix="resourced-bench-embedded-"))
    log(f"starting the make run stack under {base}")
    stack = BenchStack(base, embedded=True)
    out: dict = {"stack": {"web": "gunicorn, 2 workers x 4 threads (make run)", "worker": "one, every queue",
                           "worker_concurrency": EMBEDDED_SLOTS, "database": "SQLite (WAL)",
                           "broker": "embedded Redis (unix socket)"}}
    kept = False
    try:
        live_path = stack.upload_recording(manifest, "mp4/PBENCH/rec-10min/1")
        stack.start_web()
        stack.start_workers(io=EMBEDDED_SLOTS)
        if "e2e" not in skip:
            log("make run stack: export latency, ours against ffmpeg + boto3")
            out["e2e"] = e2e.latency(stack, live_path, manifest, {"copy": reps["e2e_copy"], "accurate": reps["e2e_copy"],
                                                                  "h264": reps["e2e_h264"]})
        if "scale" not in skip:
            single = out.get("e2e", {}).get("h264", {}).get("ours", {}).get("latency_s")
            log(f"make run stack: {reps['scale']} H.264 exports at once")
            out["scale"] = e2e.scale(stack, live_path, count=reps["scale"], kind="h264", cpu_slots=EMBEDDED_SLOTS,
                                     io_slots=EMBEDDED_SLOTS, single_latency_s=single)
    except Exception:
        kept = True
        log(f"make run stack failed; its logs are kept under {base / 'logs'}")
        raise
    finally:
        stack.stop()
        if not kept:
            shutil.rmtree(base, ignore_errors=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip", default="")
    parser.add_argument("--stacks", default="production,embedded",
                        help="where to run the end-to-end latency: the production stack, the `make run` stack")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    started = time.time()
    results: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(), "quick": args.quick}
    reps = dict(engine_copy=3, engine_h264=2, e2e_copy=2, e2e_h264=1, scale=4) if args.quick else \
        dict(engine_copy=7, engine_h264=4, e2e_copy=9, e2e_h264=5, scale=20)
    results["repetitions"] = reps

    from bench import recordings

    manifest = recordings.recording()
    results["recording"] = {"dir": manifest.parent.name, **recordings.DEFAULT}
    if "engine" not in skip:
        from bench import engine

        log("media engine against the ffmpeg command line")
        results["engine"] = engine.main(["--copy-reps", str(reps["engine_copy"]), "--h264-reps", str(reps["engine_h264"])])

    stacks = set(filter(None, args.stacks.split(",")))
    if "embedded" in stacks and not {"e2e", "scale"} <= skip:
        results["embedded"] = embedded_stack(manifest, reps, skip)
    if "production" in stacks and not {"e2e", "scale", "api", "whatif"} <= skip:
        from bench import api, e2e
        from bench.stack import BenchStack

        base = Path(tempfile.mkdtemp(prefix="resourced-bench-"))
        log(f"starting the production stack under {base}")
        stack = BenchStack(base)
        try:
            live_path = stack.upload_recording(manifest, "mp4/PBENCH/rec-10min/1")
            stack.start_web()
            stack.start_workers(io=IO_SLOTS, cpu=CPU_SLOTS)
            results["stack"] = {"web": "gunicorn, 2 workers x 4 threads (deploy/start/web defaults)",
                                "io_worker_concurrency": IO_SLOTS, "cpu_worker_concurrency": CPU_SLOTS,
                                "database": "PostgreSQL (fsync off)", "broker": "Redis",
                                "s3": "moto server, direct (bytes counted inside the server)"}
            ready = []
            if "e2e" not in skip:
                log("export latency, ours against ffmpeg + boto3")
                results["e2e"] = e2e.latency(stack, live_path, manifest,
                                             {"copy": reps["e2e_copy"], "accurate": reps["e2e_copy"],
                                                                  "h264": reps["e2e_h264"]})
                for kind in ("copy", "h264"):
                    ready += [{"task_id": r["task_id"], "body": r["body"]} for r in results["e2e"][kind]["runs"]["ours"]]
                # the same copy export when every S3 request has 20 ms of first-byte latency, as a
                # remote endpoint has (loopback moto answers in ~2 ms): parallel fetches against
                # ffmpeg's sequential ones
                stack.s3.set_delay(20)
                log("export latency (copy) with 20 ms S3 first-byte latency")
                results["e2e_s3_20ms"] = e2e.latency(stack, live_path, manifest, {"copy": reps["e2e_copy"] // 2 + 1})
                stack.s3.set_delay(0)
            single = results.get("e2e", {}).get("h264", {}).get("ours", {}).get("latency_s")
            if "scale" not in skip:
                log(f"{reps['scale']} H.264 exports at once")
                results["scale"] = e2e.scale(stack, live_path, count=reps["scale"], kind="h264", cpu_slots=CPU_SLOTS,
                                             io_slots=IO_SLOTS, single_latency_s=single)
            stack.stop_workers()
            if not ready:
                stack.start_workers(io=IO_SLOTS, cpu=CPU_SLOTS)
                r = e2e.ours_once(stack, live_path, "copy")
                ready = [{"task_id": r["task_id"], "body": r["body"]}]
                stack.stop_workers()
            if "api" not in skip:
                log("API under 32 concurrent clients (workers stopped)")
                results["api"] = api.run(stack, ready)
                results["api"]["single_client"] = api.single_client(stack, ready)
            if "whatif" not in skip:
                data = {"ready": ready, "session_id": stack.session_id, "live_path": live_path, "s3_url": stack.s3.url,
                        "start_ms": e2e.START_MS, "duration_ms": e2e.DURATION_MS}
                log("API per-request cost in one thread, with and without the connection health check")
                results["whatif_api"] = whatif(stack, "api", data)
            if "api" not in skip:
                log("py-spy profiles of the API")
                results["api_profile"] = api.profile(stack, ready, BENCH_VAR)
        finally:
            stack.stop()
            shutil.rmtree(base, ignore_errors=True)

    results["total_s"] = time.time() - started
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = write_json(f"results-{stamp}.json", results)
    shutil.copyfile(path, BENCH_VAR / "results-latest.json")
    print()
    print(report.table(results))
    print(f"\nresults: {path.relative_to(ROOT)} (also var/bench/results-latest.json); {results['total_s'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
