"""`make bench`: every benchmark in one run, a table on stdout, results JSON under var/bench/.

    python -m bench.run [--quick] [--skip engine,e2e,scale,api]

--quick: fewer repetitions (engine 3/2, e2e 2/1, scale 8 exports), for a smoke run.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import report  # noqa: E402
from bench.common import BENCH_VAR, log, machine, write_json  # noqa: E402

CPU_SLOTS = 2  # deploy/start/worker-cpu: concurrency = cores
IO_SLOTS = 4


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip", default="")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    started = time.time()
    results: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(), "quick": args.quick}
    reps = dict(engine_copy=3, engine_h264=2, e2e_copy=2, e2e_h264=1, scale=8) if args.quick else \
        dict(engine_copy=7, engine_h264=5, e2e_copy=5, e2e_h264=3, scale=20)
    results["repetitions"] = reps

    from bench import recordings

    manifest = recordings.recording()
    if "engine" not in skip:
        from bench import engine

        log("media engine against the ffmpeg command line")
        results["engine"] = engine.main(["--copy-reps", str(reps["engine_copy"]), "--h264-reps", str(reps["engine_h264"])])

    if not {"e2e", "scale", "api"} <= skip:
        from bench import api, e2e
        from bench.stack import BenchStack

        base = Path(tempfile.mkdtemp(prefix="resourced-bench-"))
        log(f"starting the production stack under {base}")
        stack = BenchStack(base)
        try:
            live_path = stack.upload_recording(manifest, "mp4/PBENCH/rec-10min/1")
            stack.start_web()
            stack.start_workers(io=IO_SLOTS, cpu=CPU_SLOTS)
            results["stack"] = {"web": "gunicorn 2 workers x 4 threads", "io_worker_concurrency": IO_SLOTS,
                                "cpu_worker_concurrency": CPU_SLOTS, "database": "PostgreSQL", "broker": "Redis",
                                "s3": "moto server (direct, counting at the server)"}
            ready = []
            if "e2e" not in skip:
                log("export latency, ours against ffmpeg + boto3")
                results["e2e"] = e2e.latency(stack, live_path, manifest,
                                             {"copy": reps["e2e_copy"], "h264": reps["e2e_h264"]})
                for kind in ("copy", "h264"):
                    ready += [{"task_id": r["task_id"], "body": r["body"]} for r in results["e2e"][kind]["runs"]["ours"]]
            if "scale" not in skip:
                log(f"{reps['scale']} H.264 exports at once")
                single = results.get("e2e", {}).get("h264", {}).get("ours", {}).get("latency_s")
                results["scale"] = e2e.scale(stack, live_path, count=reps["scale"], kind="h264", cpu_slots=CPU_SLOTS,
                                             io_slots=IO_SLOTS, single_latency_s=single)
            stack.stop_workers()
            if "api" not in skip:
                if not ready:
                    body = e2e.export_body(stack, live_path, "copy")
                    ready = [{"task_id": e2e.submit(stack, body), "body": body}]
                log("API under 32 concurrent clients")
                results["api"] = api.run(stack, ready)
                results["api"]["single_client"] = api.single_client(stack, ready)
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
