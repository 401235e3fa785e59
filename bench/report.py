"""The results table (markdown) of a bench run: `python -m bench.report [results.json]`."""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _f(value, unit="", digits=2):
    if value is None:
        return "–"
    return f"{value:.{digits}f}{unit}"


def _verdict(value, target, lower_is_better=True):
    if value is None or target is None:
        return ""
    ok = value <= target if lower_is_better else value >= target
    return "met" if ok else "**missed**"


def rows(r: dict) -> list[list[str]]:
    out = []
    e = r.get("engine")
    if e:
        for kind, label, target in (("copy", "engine: cut (copy), 60 s 720p", 1.0), ("h264", "engine: H.264 encode, 60 s 720p", 1.05)):
            k = e.get(kind)
            if not k:
                continue
            out.append([f"{label}: wall", _f(k["ours"]["call_s"], " s"), _f(k["ffmpeg"]["wall_s"], " s"),
                        _f(k["ratio_wall"]), f"≤ {target}", _verdict(k["ratio_wall"], target)])
            out.append([f"{label}: process wall (incl. Python start)", _f(k["ours"]["process_wall_s"], " s"),
                        _f(k["ffmpeg"]["wall_s"], " s"), _f(k["ratio_wall_process"]), "", ""])
            out.append([f"{label}: CPU time", _f(k["ours"]["cpu_s"], " s"), _f(k["ffmpeg"]["cpu_s"], " s"),
                        _f(k["ratio_cpu"]), "", ""])
            out.append([f"{label}: peak RSS", _f(k["ours"]["peak_rss_mb"], " MB", 0), _f(k["ffmpeg"]["peak_rss_mb"], " MB", 0),
                        _f(k["ratio_rss"]), "", ""])
    x = r.get("e2e")
    if x:
        for kind, label, target in (("copy", "export 60 s copy, submit → ready", 1.0), ("h264", "export 60 s H.264, submit → ready", 1.05)):
            k = x.get(kind)
            if not k:
                continue
            out.append([label, _f(k["ours"]["latency_s"], " s"), _f(k["baseline"]["latency_s"], " s"), _f(k["ratio"]),
                        f"≤ {target}", _verdict(k["ratio"], target)])
        k = x.get("copy") or x.get("h264")
        need = x["needed"]["bytes"]
        out.append(["bytes fetched from the source / needed", f"{k['ours']['get_bytes']:,} B", f"{need:,} B needed",
                    _f(k["ours"]["fetched_over_needed"], "", 3), "≤ 1.05", _verdict(k["ours"]["fetched_over_needed"], 1.05)])
        out.append(["  (ffmpeg baseline fetched)", "", f"{k['baseline']['get_bytes']:,} B",
                    _f(k["baseline"]["fetched_over_needed"], "", 3), "", ""])
        out.append(["  S3 requests per export (GET + HEAD)",
                    f"{k['ours']['get_requests']:.0f} + {k['ours']['head_requests']:.0f}",
                    f"{k['baseline']['get_requests']:.0f} + 0", "", "", ""])
    a = r.get("api")
    if a and "skipped" not in a:
        for name, label, base, target in (("poll", "API poll GET <TaskId>", "constant_get", 20),
                                          ("repost", "API poll by re-post", "constant_post", 20),
                                          ("submit", "API submit (new export)", "constant_post", 50)):
            k, b = a[name], a[base]
            out.append([f"{label}: p50 / p99 @32 clients", f"{k['p50_ms']:.1f} / {k['p99_ms']:.1f} ms",
                        f"{b['p50_ms']:.1f} / {b['p99_ms']:.1f} ms (constant)", _f(k["p99_over_constant"]),
                        f"p99 ≤ {target} ms", _verdict(k["p99_ms"], target)])
            out.append([f"{label}: throughput", f"{k['rps']:.0f} req/s", f"{b['rps']:.0f} req/s", _f(k["rps_over_constant"]),
                        "", ""])
        if "single_client" in a:
            s = a["single_client"]
            out.append(["API one client p50 / p99: constant, poll, re-post",
                        f"{s['poll']['p50_ms']:.1f} / {s['poll']['p99_ms']:.1f} ms (poll), "
                        f"{s['repost']['p50_ms']:.1f} / {s['repost']['p99_ms']:.1f} ms (re-post)",
                        f"{s['constant_get']['p50_ms']:.1f} / {s['constant_get']['p99_ms']:.1f} ms", "", "", ""])
    elif a:
        out.append(["API", a["skipped"], "", "", "", ""])
    s = r.get("scale")
    if s:
        out.append([f"{s['count']} H.264 exports at once: total time", _f(s["total_s"], " s", 1),
                    f"{s['cpu_slots']} cpu slots; ideal {_f(s['ideal_s'], ' s', 1)}",
                    _f(s["total_s"] / s["ideal_s"]) if s.get("ideal_s") else "", "", ""])
        out.append(["  cpu slot utilization", _f(100 * s["cpu_slot_utilization"], " %", 0), "", "", "", ""])
        out.append(["  peak RSS per worker process (max pool / mains)", f"{s['peak_rss_pool_max_mb']} MB",
                    ", ".join(f"{k.split(':')[0]} {v}" for k, v in s["peak_rss_mb"].items() if k.endswith(":main")),
                    "", "", ""])
        out.append(["  scratch disk high-water mark", f"{s['scratch_high_water_mb']} MB", "", "", "", ""])
        out.append(["  work dirs left afterwards", str(len(s["work_dirs_left"])), "", "", "0",
                    "met" if not s["work_dirs_left"] else "**missed**"])
    return out


def table(r: dict) -> str:
    head = ["measure", "ours", "baseline", "ratio", "target", ""]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows(r)]
    m = r.get("machine", {})
    lines.append("")
    lines.append(f"machine: {m.get('cpu', '?')}, {m.get('cores')} cores, {m.get('mem_gib')} GiB; load average at start "
                 f"{m.get('loadavg_at_start')}; PyAV {m.get('pyav')} (FFmpeg {m.get('pyav_ffmpeg')}), "
                 f"{m.get('ffmpeg_cli', '')}")
    return "\n".join(lines)


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "var" / "bench" / "results-latest.json"
    print(table(json.loads(path.read_text())))
