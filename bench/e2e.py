"""Export latency end to end (submit -> ready), bytes fetched from the source, and 20 exports at once.

Ours: POST export-to-s3dir to gunicorn, the Celery chain download -> cut -> encode -> thumbnail ->
upload on an io and a cpu worker, `ready` when the upload step marks the row (finished_at).
Baseline, in the same run and alternating with ours: the ffmpeg command line reading the DASH
manifest over HTTP from the same S3 endpoint (public-read objects) with -ss/-t, a first-frame JPEG
made by ffmpeg, and a boto3 upload of the clip and of the JPEG.
Each kind is reported as the ratio of the medians and as the median of the per-repetition ratios, with
the machine's CPU time per export (all cores, every process: bench.common.machine_cpu_s).
Bytes: every request the S3 server answered while one export ran (bench/s3server.py counts the
body bytes it sent), against the bytes of the init segments and the segments that overlap the clip.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import requests

from bench.common import BENCH_VAR, loadavg, log, machine_cpu_s, median, ratio
from bench.stack import DEST_BUCKET, IMGBED_BUCKET, ORIGIN_MS, SOURCE_BUCKET, BenchStack

START_MS = 301_500
DURATION_MS = 60_000
KIND_TYPE = {"copy": 0, "accurate": 0, "h264": 1}  # copy: CutMode keyframe; accurate: the default
CUT_MODE = {"copy": "keyframe", "accurate": "accurate", "h264": "accurate"}


def export_body(stack: BenchStack, live_path: str, kind: str, *, start_ms: int = START_MS, tag: str = "") -> dict:
    return {
        "ServiceCaller": "mma",
        "StartPos": ORIGIN_MS + start_ms,
        "StartTime": str(start_ms),
        "Duration": DURATION_MS,
        "LivePath": live_path,
        "SessionId": stack.session_id,
        "export_type": KIND_TYPE[kind],
        "CutMode": CUT_MODE[kind],
        "userid": "bench",
        "FileName": f"bench-{kind}-{tag or uuid.uuid4().hex[:10]}",
    }


def submit(stack: BenchStack, body: dict, session: requests.Session | None = None) -> str:
    http = session or requests
    answer = http.post(f"{stack.web.url}/resource/v1/i/export-to-s3dir", json=body, timeout=30)
    try:
        data = answer.json()
    except ValueError:
        raise RuntimeError(f"submit answered {answer.status_code}, not JSON: {answer.text[:500]!r}") from None
    if answer.status_code != 200 or data.get("ErrorCode") != 1:
        raise RuntimeError(f"submit answered {answer.status_code}: {data}")
    return data["TaskId"]


def wait_final(stack: BenchStack, task_ids: list[str], timeout: float = 900) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    pending = set(task_ids)
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"exports {sorted(pending)[:3]} not final after {timeout} s")
        marks = ", ".join(["%s"] * len(pending))  # IN (...): PostgreSQL and SQLite alike
        rows = stack.sql(f"SELECT task_id FROM exports_export WHERE task_id IN ({marks}) AND status IN "
                         "('ready', 'failed', 'cancelled')", *pending)
        pending -= {r[0] for r in rows}
        if pending:
            time.sleep(0.02)
    return {t: stack.export(t) for t in task_ids}


def ours_once(stack: BenchStack, live_path: str, kind: str) -> dict:
    stack.s3.reset()
    body = export_body(stack, live_path, kind)
    cpu0 = machine_cpu_s()
    t0 = time.time()
    task_id = submit(stack, body)
    row = wait_final(stack, [task_id])[task_id]
    cpu_s = machine_cpu_s() - cpu0
    if row["status"] != "ready":
        raise RuntimeError(f"export {task_id} ended {row['status']}: {row['code']} {row['message']}")
    total = row["finished_at"].timestamp() - t0
    stages = dict(row["timings"] or {})
    return {"task_id": task_id, "body": body, "latency_s": total, "cpu_s": cpu_s, "stages_s": stages,
            "queue_s": (row["started_at"].timestamp() - t0) if row["started_at"] else None,
            "overhead_s": total - sum(stages.values()),
            "bytes_downloaded": row["bytes_downloaded"], "bytes_needed": row["bytes_needed"],
            "output_bytes": row["output_bytes"], "output_duration_ms": row["output_duration_ms"],
            "video_key": row["video_key"], "s3": stack.s3.requests()}


def baseline_once(stack: BenchStack, live_path: str, kind: str, scratch: Path) -> dict:
    stack.s3.reset()
    scratch.mkdir(parents=True, exist_ok=True)
    out = scratch / f"base-{kind}.ts"
    jpeg = scratch / f"base-{kind}.jpg"
    url = f"{stack.s3.url}/{SOURCE_BUCKET}/{live_path}"
    argv = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-ss", f"{START_MS / 1000:.3f}", "-i", url,
            "-t", f"{DURATION_MS / 1000:.3f}", "-map", "0:v:0", "-map", "0:a:0"]
    if kind in ("copy", "accurate"):  # ffmpeg -c copy: from the keyframe before, as ours in keyframe mode
        argv += ["-c", "copy"]
    else:
        argv += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-g", "50", "-threads", "0", "-c:a", "copy"]
    cpu0 = machine_cpu_s()
    t0 = time.time()
    subprocess.run(argv + [str(out)], check=True, capture_output=True)
    t1 = time.time()
    subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(out), "-frames:v", "1",
                    "-q:v", "3", str(jpeg)], check=True, capture_output=True)
    t2 = time.time()
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(multipart_threshold=16 * 1024 * 1024, multipart_chunksize=16 * 1024 * 1024,
                            max_concurrency=4)
    name = uuid.uuid4().hex[:10]
    stack.s3_client.upload_file(str(out), DEST_BUCKET, f"baseline/{name}.ts", Config=config,
                                ExtraArgs={"ContentType": "video/mp2t"})
    stack.s3_client.upload_file(str(jpeg), IMGBED_BUCKET, f"baseline/{name}.jpg", ExtraArgs={"ContentType": "image/jpeg"})
    t3 = time.time()
    return {"latency_s": t3 - t0, "cpu_s": machine_cpu_s() - cpu0, "stages_s": {"ffmpeg": t1 - t0, "thumbnail": t2 - t1, "upload": t3 - t2},
            "output_bytes": out.stat().st_size, "s3": stack.s3.requests()}


def needed_bytes(manifest: Path) -> dict:
    """Bytes of the init segments and of the segments that overlap [START, START + DURATION)."""
    from exports import media

    rec_dir = manifest.parent
    recording = media.load_recording(lambda key: (rec_dir / key).read_bytes(), manifest.name)
    selection = media.select_segments(recording, START_MS, START_MS + DURATION_MS)
    keys = selection.keys()
    return {"keys": len(keys), "bytes": sum((rec_dir / k).stat().st_size for k in keys),
            "manifest_bytes": manifest.stat().st_size,
            "recording_bytes": sum(p.stat().st_size for p in rec_dir.iterdir() if p.name != "DONE.json")}


def s3_summary(items: list[list], prefix: str) -> dict:
    source = [i for i in items if i[1].startswith(f"/{SOURCE_BUCKET}/{prefix}")]
    gets = [i for i in source if i[0] == "GET"]
    return {"get_requests": len(gets), "head_requests": sum(1 for i in source if i[0] == "HEAD"),
            "get_bytes": sum(i[3] for i in gets),
            "ranged_gets": sum(1 for i in gets if i[4]),
            "other_requests": len(items) - len(source)}


def latency(stack: BenchStack, live_path: str, manifest: Path, reps: dict[str, int]) -> dict:
    scratch = BENCH_VAR / "scratch-e2e"
    shutil.rmtree(scratch, ignore_errors=True)
    prefix = live_path.rsplit("/", 1)[0] + "/"
    need = needed_bytes(manifest)
    results = {"clip": {"start_ms": START_MS, "duration_ms": DURATION_MS}, "needed": need}
    # warm-up: first requests of each process (imports, connections), not counted
    ours_once(stack, live_path, "copy")
    baseline_once(stack, live_path, "copy", scratch)
    for kind in ("copy", "accurate", "h264"):
        if not reps.get(kind):
            continue
        ours, base = [], []
        for i in range(reps[kind]):
            for who in (("ours", "baseline") if i % 2 == 0 else ("baseline", "ours")):
                if who == "ours":
                    ours.append(ours_once(stack, live_path, kind))
                else:
                    base.append(baseline_once(stack, live_path, kind, scratch))
            log(f"e2e {kind} rep {i + 1}/{reps[kind]}: ours {ours[-1]['latency_s']:.2f} s "
                f"({', '.join(f'{k} {v:.2f}' for k, v in ours[-1]['stages_s'].items())}), "
                f"baseline {base[-1]['latency_s']:.2f} s; machine CPU {ours[-1]['cpu_s']:.2f} s vs {base[-1]['cpu_s']:.2f} s")
        for run in ours + base:
            run["s3_summary"] = s3_summary(run.pop("s3"), prefix)
        o_lat = median([r["latency_s"] for r in ours])
        b_lat = median([r["latency_s"] for r in base])
        stage_names = sorted({k for r in ours for k in r["stages_s"]})
        results[kind] = {
            "reps": reps[kind],
            "ours": {"latency_s": o_lat,
                     "stages_s": {k: median([r["stages_s"].get(k) for r in ours]) for k in stage_names},
                     "overhead_s": median([r["overhead_s"] for r in ours]),
                     "queue_s": median([r["queue_s"] for r in ours]),
                     "cpu_s": median([r["cpu_s"] for r in ours]),
                     "get_bytes": median([r["s3_summary"]["get_bytes"] for r in ours]),
                     "get_requests": median([r["s3_summary"]["get_requests"] for r in ours]),
                     "head_requests": median([r["s3_summary"]["head_requests"] for r in ours]),
                     "bytes_downloaded_row": median([r["bytes_downloaded"] for r in ours]),
                     "bytes_needed_row": median([r["bytes_needed"] for r in ours])},
            "baseline": {"latency_s": b_lat, "cpu_s": median([r["cpu_s"] for r in base]),
                         "stages_s": {k: median([r["stages_s"][k] for r in base]) for k in base[0]["stages_s"]},
                         "get_bytes": median([r["s3_summary"]["get_bytes"] for r in base]),
                         "get_requests": median([r["s3_summary"]["get_requests"] for r in base])},
            "ratio": ratio(o_lat, b_lat),
            # each repetition's two runs are adjacent in time: the median of their ratios is less moved by
            # the load of a shared machine drifting over the run than the ratio of the two medians
            "paired_ratio": median([o["latency_s"] / b["latency_s"] for o, b in zip(ours, base)]),
            "runs": {"ours": ours, "baseline": base},
            "loadavg_after": loadavg(),
        }
        if kind == "h264":
            from bench.engine import x264_settings

            clip = scratch / "ours-h264.ts"
            scratch.mkdir(parents=True, exist_ok=True)
            stack.s3_client.download_file(DEST_BUCKET, ours[0]["video_key"], str(clip))
            results[kind]["x264"] = x264_settings(clip)
        o = results[kind]["ours"]
        results[kind]["cpu_ratio"] = ratio(o["cpu_s"], results[kind]["baseline"]["cpu_s"])
        o["fetched_over_needed"] = ratio(o["get_bytes"], need["bytes"])
        o["fetched_over_needed_without_manifest"] = ratio(o["get_bytes"] - need["manifest_bytes"], need["bytes"])
        results[kind]["baseline"]["fetched_over_needed"] = ratio(results[kind]["baseline"]["get_bytes"], need["bytes"])
    shutil.rmtree(scratch, ignore_errors=True)
    return results


# --- 20 exports at once ------------------------------------------------------------------------
def _dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _status_kb(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def scale(stack: BenchStack, live_path: str, *, count: int, kind: str, cpu_slots: int, io_slots: int,
          single_latency_s: float | None) -> dict:
    work = stack.work_dir
    work.mkdir(parents=True, exist_ok=True)
    samples = {"disk_max": 0, "disk_series": [], "hwm": {}}
    stop = threading.Event()
    t0 = time.time()

    def sampler():
        while not stop.is_set():
            size = _dir_size(work)
            samples["disk_max"] = max(samples["disk_max"], size)
            samples["disk_series"].append((round(time.time() - t0, 2), size))
            for w in stack.workers:
                for pid in w.pids():
                    hwm = _status_kb(pid, "VmHWM")
                    if hwm:
                        key = f"{w.nodename}:{pid}" + (":main" if pid == w.process.pid else "")
                        samples["hwm"][key] = max(samples["hwm"].get(key, 0), hwm)
            stop.wait(0.1)

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    session = requests.Session()
    bodies = [export_body(stack, live_path, kind, start_ms=START_MS + 7_000 * i, tag=f"scale-{i}-{uuid.uuid4().hex[:6]}")
              for i in range(count)]
    task_ids = [submit(stack, b, session) for b in bodies]
    submitted = time.time() - t0
    rows = wait_final(stack, task_ids, timeout=1200)
    stop.set()
    thread.join()
    ends = [r["finished_at"].timestamp() for r in rows.values() if r["finished_at"]]
    makespan = max(ends) - t0
    statuses = {}
    for r in rows.values():
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    cpu_busy = sum(sum(v for k, v in (r["timings"] or {}).items() if k in ("cut", "encode", "thumbnail"))
                   for r in rows.values())
    io_busy = sum(sum(v for k, v in (r["timings"] or {}).items() if k in ("download", "upload")) for r in rows.values())
    time.sleep(0.5)
    leftover = sorted(p.name for p in work.iterdir()) if work.exists() else []
    per_export = [r["finished_at"].timestamp() - t0 for r in rows.values() if r["finished_at"]]
    hwm = samples["hwm"]
    return {
        "count": count, "kind": kind, "cpu_slots": cpu_slots, "io_slots": io_slots,
        "statuses": statuses,
        "submit_all_s": submitted,
        "total_s": makespan,
        "single_export_latency_s": single_latency_s,
        "ideal_s": (single_latency_s * count / cpu_slots) if single_latency_s else None,
        "cpu_slot_utilization": cpu_busy / (cpu_slots * makespan),
        "io_busy_s": io_busy,
        "latency_first_s": min(per_export),
        "latency_p50_s": median(per_export),
        "latency_max_s": max(per_export),
        "peak_rss_mb": {k: round(v / 1024, 1) for k, v in sorted(hwm.items())},
        "peak_rss_pool_max_mb": round(max((v for k, v in hwm.items() if not k.endswith(":main")), default=0) / 1024, 1),
        "scratch_high_water_mb": round(samples["disk_max"] / 1e6, 1),
        "scratch_series": samples["disk_series"][:: max(1, len(samples["disk_series"]) // 60)],
        "work_dirs_left": leftover,
        "loadavg_after": loadavg(),
    }
