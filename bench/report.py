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
            w = k.get("whatif_frame_threads")
            if w:
                out.append(["  what-if x264 frame threads: wall / CPU / RSS", f"{_f(w['call_s'], ' s')} / {_f(w['cpu_s'], ' s')} / "
                            f"{_f(w['peak_rss_mb'], ' MB', 0)}", "", f"{_f(w['ratio_wall'])} / {_f(w['ratio_cpu'])} / "
                            f"{_f(w['ratio_rss'])}", f"≤ {target}", _verdict(w["ratio_wall"], target)])
    x = r.get("e2e")
    if x:
        for kind, label, target in (("copy", "export 60 s copy (keyframe), submit → ready", 1.0),
                                    ("accurate", "export 60 s copy (accurate), submit → ready", 1.3),
                                    ("h264", "export 60 s H.264, submit → ready", 1.0)):
            k = x.get(kind)
            if not k:
                continue
            out.append([label, _f(k["ours"]["latency_s"], " s"), _f(k["baseline"]["latency_s"], " s"), _f(k["ratio"]),
                        f"≤ {target}", _verdict(k["ratio"], target)])
            if k.get("paired_ratio") is not None:
                out.append(["  median of the per-repetition ratios (adjacent runs)", f"{k['reps']} repetitions", "",
                            _f(k["paired_ratio"]), f"≤ {target}", _verdict(k["paired_ratio"], target)])
            if k["ours"].get("cpu_s") is not None:
                out.append(["  machine CPU time per export (every process)", _f(k["ours"]["cpu_s"], " s"),
                            _f(k["baseline"]["cpu_s"], " s"), _f(k.get("cpu_ratio")), "", ""])
            wk = (r.get("e2e_whatif") or {}).get(kind)
            if wk:
                out.append(["  what-if with F3-F5 (same run, own baseline runs)", _f(wk["ours"]["latency_s"], " s"),
                            _f(wk["baseline"]["latency_s"], " s"), _f(wk["ratio"]), f"≤ {target}", _verdict(wk["ratio"], target)])
            st = k["ours"]["stages_s"]
            out.append(["  stages", ", ".join(f"{n} {st[n]:.2f}" for n in ("download", "cut", "encode", "thumbnail", "upload")
                                              if st.get(n) is not None) + f", queues/DB {k['ours']['overhead_s']:.2f}",
                        ", ".join(f"{n} {v:.2f}" for n, v in k["baseline"]["stages_s"].items()), "", "", ""])
        d20 = (r.get("e2e_s3_20ms") or {}).get("copy")
        if d20:
            out.append(["  copy export, S3 with 20 ms first-byte latency", _f(d20["ours"]["latency_s"], " s"),
                        _f(d20["baseline"]["latency_s"], " s"), _f(d20["ratio"]), "", ""])
        k = x.get("copy") or x.get("h264")
        need = x["needed"]["bytes"]
        out.append(["bytes fetched from the source / needed", f"{k['ours']['get_bytes']:,} B", f"{need:,} B needed",
                    _f(k["ours"]["fetched_over_needed"], "", 3), "≤ 1.05", _verdict(k["ours"]["fetched_over_needed"], 1.05)])
        out.append(["  (ffmpeg baseline fetched)", "", f"{k['baseline']['get_bytes']:,} B",
                    _f(k["baseline"]["fetched_over_needed"], "", 3), "", ""])
        out.append(["  S3 requests per export (GET + HEAD)",
                    f"{k['ours']['get_requests']:.0f} + {k['ours']['head_requests']:.0f}",
                    f"{k['baseline']['get_requests']:.0f} + 0", "", "", ""])
    d = r.get("whatif_download")
    if d and "as_is" in d:
        out.append(["  what-if one GET per segment: download of the clip's segments",
                    f"{_f(d['single_get']['seconds'], ' s')} ({d['single_get']['requests']} requests)",
                    f"{_f(d['as_is']['seconds'], ' s')} as is ({d['as_is']['requests']} requests)",
                    _f(d["single_get"]["seconds"] / d["as_is"]["seconds"]) if d["as_is"]["seconds"] else "", "", ""])
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
        p = a.get("paced") or {}
        for name, label, base, target in (("poll", "API poll GET <TaskId>", "constant_get", 20),
                                          ("repost", "API poll by re-post", "constant_post", 20),
                                          ("submit", "API submit (new export)", "constant_post", 50)):
            if name in p:
                k, b = p[name], p[base]
                out.append([f"{label}: p50 / p99, 32 clients at {k['rate_rps']:.0f} req/s", f"{k['p50_ms']:.1f} / {k['p99_ms']:.1f} ms",
                            f"{b['p50_ms']:.1f} / {b['p99_ms']:.1f} ms (constant at {b['rate_rps']:.0f} req/s)",
                            _f(k["p99_ms"] / b["p99_ms"]) if b["p99_ms"] else "", f"p99 ≤ {target} ms",
                            _verdict(k["p99_ms"], target)])
        if "single_client" in a:
            s = a["single_client"]
            out.append(["API one client p50 / p99: constant, poll, re-post",
                        f"{s['poll']['p50_ms']:.1f} / {s['poll']['p99_ms']:.1f} ms (poll), "
                        f"{s['repost']['p50_ms']:.1f} / {s['repost']['p99_ms']:.1f} ms (re-post)",
                        f"{s['constant_get']['p50_ms']:.1f} / {s['constant_get']['p99_ms']:.1f} ms", "", "", ""])
    elif a:
        out.append(["API", a["skipped"], "", "", "", ""])
    w = r.get("whatif_api")
    if w and "endpoints" in w:
        for name in ("poll", "repost", "submit"):
            e = w["endpoints"][name]
            as_is, bare = e["as_is"], e.get("no_health_check")
            out.append([f"  {name} per request, one thread in-process (statements, DB, Celery publish)",
                        f"{as_is['p50_ms']:.2f} ms ({as_is['statements']:.0f}, DB {as_is['db_ms']:.1f} ms"
                        + (f", publish {as_is['publish_ms']:.1f} ms" if as_is["publish_ms"] else "") + ")",
                        f"{bare['p50_ms']:.2f} ms without the connection health check" if bare else "",
                        _f(bare["p50_ms"] / as_is["p50_ms"]) if bare and as_is["p50_ms"] else "", "", ""])
    elif w:
        out.append(["  what-if (API per request)", "failed: see whatif_api.error in the results file", "", "", "", ""])
    s = r.get("scale")
    if s:
        out.append([f"{s['count']} H.264 exports at once: total time", _f(s["total_s"], " s", 1),
                    f"{s['cpu_slots']} cpu slots; ideal {_f(s['ideal_s'], ' s', 1)}",
                    _f(s["total_s"] / s["ideal_s"]) if s.get("ideal_s") else "", "", ""])
        out.append(["  cpu slot utilization", _f(100 * s["cpu_slot_utilization"], " %", 0), "", "", "", ""])
        out.append(["  per-export latency: first / p50 / last ready", f"{s['latency_first_s']:.0f} / {s['latency_p50_s']:.0f} / "
                    f"{s['latency_max_s']:.0f} s", "", "", "", ""])
        d = r.get("scale_whatif")
        if d:
            out.append(["  what-if with F3-F5: total; first / p50 / last ready",
                        f"{d['total_s']:.1f} s; {d['latency_first_s']:.0f} / {d['latency_p50_s']:.0f} / {d['latency_max_s']:.0f} s",
                        f"as is {s['total_s']:.1f} s; p50 {s['latency_p50_s']:.0f} s", _f(d["latency_p50_s"] / s["latency_p50_s"]),
                        "", ""])
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
    embedded = r.get("embedded")
    if embedded:
        lines += ["", "make run stack (SQLite, embedded Redis, one worker on every queue):", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in rows({k: embedded[k] for k in ("e2e", "scale")
                                                                  if k in embedded})]
    m = r.get("machine", {})
    lines.append("")
    lines.append(f"machine: {m.get('cpu', '?')}, {m.get('cores')} cores, {m.get('mem_gib')} GiB; load average at start "
                 f"{m.get('loadavg_at_start')}; PyAV {m.get('pyav')} (FFmpeg {m.get('pyav_ffmpeg')}), "
                 f"{m.get('ffmpeg_cli', '')}")
    return "\n".join(lines)


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "var" / "bench" / "results-latest.json"
    print(table(json.loads(path.read_text())))
