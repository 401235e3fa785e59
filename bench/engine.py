"""Media engine alone against the ffmpeg command line (issue 3 item 8).

A 60 s clip of the 10-minute 720p DASH recording, from the same local files:
  copy:  ours = load_recording + select_segments + cut_clip (stream copy, MPEG-TS)
         ffmpeg -ss S -i manifest.mpd -t 60 -map 0:v:0 -map 0:a:0 -c copy out.ts
  h264:  ours = cut_clip to an intermediate + encode_clip (libx264 veryfast, crf 23, g 50, threads auto),
         as the pipeline's cut and encode steps do (two passes)
         one pass: encode_selection, the same encode read straight from the segments (no intermediate),
         measured in the same alternation as a third variant (--no-one-pass to skip it)
         ffmpeg -ss S -i manifest.mpd -t 60 ... -c:v libx264 -preset veryfast -crf 23 -g 50 -threads 0 -c:a copy
  accurate (--kinds accurate, opt-in): the frame-accurate cut (cut_clip mode="accurate": the
         partial GOPs at both ends re-encoded, the rest copied) against the keyframe copy
         (mode="keyframe") and against the one-pass H.264 transcode (encode_selection) of the same
         range, on a 10-minute 720p recording with 2 s GOPs (targets: accurate <= 1.3x the keyframe
         copy's time, the transcode >= 5x the accurate cut's); written to engine-accurate.json when
         measured alone
Each run is a fresh process (its peak RSS and CPU time from os.wait4), ours and ffmpeg alternate,
medians are reported. Ours is timed two ways: the engine call inside the process (what a warm
worker pays) and the whole process (interpreter + imports included); the ratio uses the call.

    python -m bench.engine [--copy-reps 7] [--h264-reps 5] [--no-one-pass] [--kinds copy,h264,accurate]
    python -m bench.engine one {copy,copy-accurate,copy-keyframe,h264,h264-1pass} RECDIR OUTDIR START_MS DURATION_MS
        [--profile FILE]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import BENCH_VAR, PY, loadavg, log, median, ratio, run_measured, write_json  # noqa: E402

START_MS = 301_500  # mid-GOP: the copy starts on the keyframe before, the encode on the exact frame
DURATION_MS = 60_000
PRESET, CRF, GOP = "veryfast", 23, 50
OUT_NAME = {"copy": "ours_copy.ts", "h264": "ours_h264.ts", "h264-1pass": "ours_h264_1pass.ts",
            "copy-accurate": "ours_copy_accurate.ts", "copy-keyframe": "ours_copy_keyframe.ts"}
ACCURATE_GOP_S = 2  # the accurate measurement's recording: the default one with 2 s GOPs


# --- the child: one run of ours ------------------------------------------------------------------
def one(kind: str, recdir: str, outdir: str, start_ms: float, duration_ms: float, profile: str | None,
        frame_threads: bool = False) -> None:
    started = time.perf_counter()
    from exports import media

    if frame_threads:
        patch_frame_threads()

    imported = time.perf_counter()
    rec_dir = Path(recdir)
    out_dir = Path(outdir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def work():
        timings = {}
        t0 = time.perf_counter()
        recording = media.load_recording(lambda key: (rec_dir / key).read_bytes(), "manifest.mpd")
        # a keyframe copy takes the audio from the keyframe before the start, as the service does
        head = media.KEYFRAME_AUDIO_HEAD_MS if kind == "copy-keyframe" else 0.0
        selection = media.select_segments(recording, start_ms, start_ms + duration_ms, audio_head_ms=head)
        files = {key: str(rec_dir / key) for key in selection.keys()}
        t1 = time.perf_counter()
        timings["select_s"] = t1 - t0
        if kind == "h264-1pass":
            info = media.encode_selection(selection=selection, files=files, out_path=str(out_dir / OUT_NAME[kind]),
                                          codec="h264", container="ts", preset=PRESET, crf=CRF, threads=0)
            timings["encode_s"] = time.perf_counter() - t1
            timings["call_s"] = time.perf_counter() - t0
            return info, timings
        if kind in ("copy-accurate", "copy-keyframe"):
            info = media.cut_clip(selection=selection, files=files, out_path=str(out_dir / OUT_NAME[kind]),
                                  container="ts", mode=kind.split("-")[1])
            timings["cut_s"] = time.perf_counter() - t1
            timings["call_s"] = time.perf_counter() - t0
            return info, timings
        # copy: the stream copy from the keyframe before the start, as `ffmpeg -ss S -i ... -c copy` cuts;
        # h264: the two-pass pipeline of old (keyframe copy to an intermediate, then encode_clip trims)
        cut_out = out_dir / ("ours_copy.ts" if kind == "copy" else "intermediate.ts")
        info = media.cut_clip(selection=selection, files=files, out_path=str(cut_out), container="ts", mode="keyframe")
        t2 = time.perf_counter()
        timings["cut_s"] = t2 - t1
        if kind == "h264":
            info = media.encode_clip(src_path=str(cut_out), out_path=str(out_dir / OUT_NAME[kind]), codec="h264",
                                     container="ts", trim_start_ms=info.lead_ms, duration_ms=duration_ms,
                                     preset=PRESET, crf=CRF, threads=0)
            timings["encode_s"] = time.perf_counter() - t2
        timings["call_s"] = time.perf_counter() - t0
        return info, timings

    if profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        info, timings = prof.runcall(work)
        with open(profile, "w") as fh:
            stats = pstats.Stats(prof, stream=fh)
            stats.sort_stats("cumulative").print_stats(30)
            stats.sort_stats("tottime").print_stats(20)
    else:
        info, timings = work()
    timings["import_s"] = imported - started
    print(json.dumps({"timings": timings, "out": info.path, "duration_ms": info.duration_ms,
                      "size": info.size_bytes, "lead_ms": info.lead_ms, "start_ms": info.start_ms}))


def patch_frame_threads() -> None:
    """What-if: libx264 with frame threads. PyAV opens encoders with thread_type SLICE, so x264
    runs sliced threads (sliced_threads=1 in the SEI of ours, 0 in ffmpeg's); the generic
    AVCodecContext option thread_type=frame in the encoder options gives frame threads (the
    fix proposed for exports/media/encode.py)."""
    from exports.media import encode

    original = encode._encoder_options

    def options(name, preset, crf, fps):
        opts = original(name, preset, crf, fps)
        if name in ("libx264", "libx265"):
            opts["thread_type"] = "frame"
        return opts

    encode._encoder_options = options


# --- the orchestrator -----------------------------------------------------------------------------
def ffmpeg_argv(kind: str, manifest: Path, out: Path, start_ms: float, duration_ms: float) -> list[str]:
    argv = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-ss", f"{start_ms / 1000:.3f}",
            "-i", str(manifest), "-t", f"{duration_ms / 1000:.3f}", "-map", "0:v:0", "-map", "0:a:0"]
    if kind == "copy":
        argv += ["-c", "copy"]
    else:
        argv += ["-c:v", "libx264", "-preset", PRESET, "-crf", str(CRF), "-g", str(GOP), "-threads", "0", "-c:a", "copy"]
    return argv + [str(out)]


def x264_settings(path: Path) -> str:
    """The version and thread settings x264 wrote into the stream (its SEI user data)."""
    import re

    data = path.read_bytes()[:1 << 20]
    m = re.search(rb"x264 - core (\d+)", data)
    t = re.search(rb"(threads=\S+ lookahead_threads=\S+ sliced_threads=\S+)", data)
    return f"core {m.group(1).decode() if m else '?'}; {t.group(1).decode() if t else '?'}"


def probe(path: Path) -> dict:
    from exports import media

    info = media.probe(str(path))
    return {"duration_ms": round(info.duration_ms, 1), "size": info.size_bytes, "video": info.video_codec,
            "audio": info.audio_codec}


def ours_argv(kind: str, recdir: Path, outdir: Path, profile: str | None = None, frame_threads: bool = False) -> list[str]:
    argv = [PY, "-m", "bench.engine", "one", kind, str(recdir), str(outdir), str(START_MS), str(DURATION_MS)]
    return argv + (["--profile", profile] if profile else []) + (["--frame-threads"] if frame_threads else [])


def _ours_summary(runs: list[dict], out: Path) -> dict:
    return {
        "call_s": median([r["call_s"] for r in runs]),
        "process_wall_s": median([r["wall_s"] for r in runs]),
        "cpu_s": median([r["cpu_s"] for r in runs]),
        "peak_rss_mb": median([r["peak_rss_mb"] for r in runs]),
        "parts_s": {k: median([r["parts"].get(k) for r in runs]) for k in runs[0]["parts"]},
        "output": probe(out),
    }


def measure(kind: str, reps: int, manifest: Path, scratch: Path, whatif: bool = False,
            one_pass: bool = False) -> dict:
    """Alternating runs; with `whatif` (H.264) a variant with x264 frame threads, with `one_pass` (H.264)
    a variant encoding straight from the segments (encode_selection) instead of cut + encode."""
    recdir = manifest.parent
    ours_runs, ff_runs, frame_runs, one_runs = [], [], [], []
    ff_out = scratch / f"ffmpeg_{kind}.ts"
    # warm-up (page cache, first-run costs), not counted
    run_measured(ours_argv(kind, recdir, scratch), cwd=ROOT)
    run_measured(ffmpeg_argv(kind, manifest, ff_out, START_MS, DURATION_MS))
    if one_pass:
        run_measured(ours_argv("h264-1pass", recdir, scratch), cwd=ROOT)
    for i in range(reps):
        order = ["ours", "ffmpeg"] + (["one"] if one_pass else []) + (["frame"] if whatif else [])
        order = order[i % len(order):] + order[:i % len(order)]
        for who in order:
            if who in ("ours", "frame", "one"):
                out_dir = scratch / "frame" if who == "frame" else scratch
                argv = ours_argv("h264-1pass" if who == "one" else kind, recdir, out_dir,
                                 frame_threads=who == "frame")
                r = run_measured(argv, cwd=ROOT)
                child = json.loads(r["stdout"].strip().splitlines()[-1])
                r.update(call_s=child["timings"]["call_s"], parts=child["timings"])
                r.pop("stdout")
                {"ours": ours_runs, "frame": frame_runs, "one": one_runs}[who].append(r)
            else:
                r = run_measured(ffmpeg_argv(kind, manifest, ff_out, START_MS, DURATION_MS))
                r.pop("stdout")
                ff_runs.append(r)
        log(f"engine {kind} rep {i + 1}/{reps}: ours {ours_runs[-1]['call_s']:.2f} s "
            f"(process {ours_runs[-1]['wall_s']:.2f} s, CPU {ours_runs[-1]['cpu_s']:.2f} s), ffmpeg "
            f"{ff_runs[-1]['wall_s']:.2f} s (CPU {ff_runs[-1]['cpu_s']:.2f} s)"
            + (f", ours in one pass {one_runs[-1]['call_s']:.2f} s (CPU {one_runs[-1]['cpu_s']:.2f} s)"
               if one_runs else "")
            + (f", ours with frame threads {frame_runs[-1]['call_s']:.2f} s" if frame_runs else ""))
        if kind == "h264" and i == 0:
            x264 = {"ours": x264_settings(scratch / OUT_NAME["h264"]), "ffmpeg": x264_settings(ff_out)}
            if one_runs:
                x264["ours_one_pass"] = x264_settings(scratch / OUT_NAME["h264-1pass"])
            if frame_runs:
                x264["ours_frame_threads"] = x264_settings(scratch / "frame" / "ours_h264.ts")
    result = {
        "reps": reps,
        "ours": _ours_summary(ours_runs, scratch / OUT_NAME[kind]),
        "ffmpeg": {
            "wall_s": median([r["wall_s"] for r in ff_runs]),
            "cpu_s": median([r["cpu_s"] for r in ff_runs]),
            "peak_rss_mb": median([r["peak_rss_mb"] for r in ff_runs]),
            "output": probe(ff_out),
            "argv": " ".join(ffmpeg_argv(kind, Path("manifest.mpd"), Path("out.ts"), START_MS, DURATION_MS)),
        },
        "x264": x264 if kind == "h264" else None,
        "runs": {"ours": ours_runs, "ffmpeg": ff_runs, "ours_frame_threads": frame_runs, "ours_one_pass": one_runs},
        "loadavg_after": loadavg(),
    }
    result["ratio_wall"] = ratio(result["ours"]["call_s"], result["ffmpeg"]["wall_s"])
    result["ratio_wall_process"] = ratio(result["ours"]["process_wall_s"], result["ffmpeg"]["wall_s"])
    result["ratio_cpu"] = ratio(result["ours"]["cpu_s"], result["ffmpeg"]["cpu_s"])
    result["ratio_rss"] = ratio(result["ours"]["peak_rss_mb"], result["ffmpeg"]["peak_rss_mb"])
    if one_runs:
        o = _ours_summary(one_runs, scratch / OUT_NAME["h264-1pass"])
        o["ratio_wall"] = ratio(o["call_s"], result["ffmpeg"]["wall_s"])
        o["ratio_wall_process"] = ratio(o["process_wall_s"], result["ffmpeg"]["wall_s"])
        o["ratio_cpu"] = ratio(o["cpu_s"], result["ffmpeg"]["cpu_s"])
        o["ratio_rss"] = ratio(o["peak_rss_mb"], result["ffmpeg"]["peak_rss_mb"])
        o["ratio_wall_vs_two_pass"] = ratio(o["call_s"], result["ours"]["call_s"])
        result["one_pass"] = o
    if frame_runs:
        w = {"call_s": median([r["call_s"] for r in frame_runs]), "cpu_s": median([r["cpu_s"] for r in frame_runs]),
             "peak_rss_mb": median([r["peak_rss_mb"] for r in frame_runs])}
        w["ratio_wall"] = ratio(w["call_s"], result["ffmpeg"]["wall_s"])
        w["ratio_cpu"] = ratio(w["cpu_s"], result["ffmpeg"]["cpu_s"])
        w["ratio_rss"] = ratio(w["peak_rss_mb"], result["ffmpeg"]["peak_rss_mb"])
        result["whatif_frame_threads"] = w
    return result


def measure_accurate(reps: int, h264_reps: int, manifest: Path, scratch: Path) -> dict:
    """Keyframe copy, accurate cut and one-pass H.264 transcode of the same range, alternating."""
    recdir = manifest.parent
    kinds = ("copy-keyframe", "copy-accurate", "h264-1pass")
    runs: dict[str, list] = {k: [] for k in kinds}
    clips: dict[str, dict] = {}
    for kind in kinds:  # warm-up (page cache, first-run costs), not counted
        run_measured(ours_argv(kind, recdir, scratch), cwd=ROOT)
    for i in range(reps):
        order = list(kinds) if i < h264_reps else list(kinds[:2])
        order = order[i % len(order):] + order[:i % len(order)]
        for kind in order:
            r = run_measured(ours_argv(kind, recdir, scratch), cwd=ROOT)
            child = json.loads(r.pop("stdout").strip().splitlines()[-1])
            r.update(call_s=child["timings"]["call_s"], parts=child["timings"])
            clips[kind] = {k: child[k] for k in ("start_ms", "lead_ms", "duration_ms", "size")}
            runs[kind].append(r)
        log(f"engine accurate rep {i + 1}/{reps}: keyframe copy {runs['copy-keyframe'][-1]['call_s']:.3f} s, "
            f"accurate {runs['copy-accurate'][-1]['call_s']:.3f} s"
            + (f", H.264 transcode {runs['h264-1pass'][-1]['call_s']:.2f} s" if i < h264_reps else ""))
    result = {"recording": recdir.name, "clip": {"start_ms": START_MS, "duration_ms": DURATION_MS},
              "reps": {"copies": reps, "h264": h264_reps}}
    for kind, label in (("copy-keyframe", "keyframe"), ("copy-accurate", "accurate"), ("h264-1pass", "h264")):
        result[label] = _ours_summary(runs[kind], scratch / OUT_NAME[kind])
        result[label]["clip"] = clips[kind]
    result["ratio_accurate_vs_keyframe"] = ratio(result["accurate"]["call_s"], result["keyframe"]["call_s"])
    result["ratio_accurate_vs_keyframe_process"] = ratio(result["accurate"]["process_wall_s"],
                                                         result["keyframe"]["process_wall_s"])
    result["ratio_h264_vs_accurate"] = ratio(result["h264"]["call_s"], result["accurate"]["call_s"])
    result["targets"] = {"accurate_vs_keyframe_max": 1.3, "h264_vs_accurate_min": 5.0}
    result["runs"] = runs
    result["loadavg_after"] = loadavg()
    return result


def baseline_rss() -> float:
    """Peak RSS of a process that only imports the engine: the floor of every 'ours' process."""
    r = run_measured([PY, "-c", "import sys; sys.path.insert(0, %r); import exports.media" % str(ROOT)], cwd=ROOT)
    return r["peak_rss_mb"]


TARGETS = {"copy": 1.0, "h264": 1.05}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--copy-reps", type=int, default=7)
    parser.add_argument("--h264-reps", type=int, default=5)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--no-whatif", action="store_true", help="skip the x264 frame-threads variant")
    parser.add_argument("--no-one-pass", action="store_true", help="skip the one-pass H.264 variant (encode_selection)")
    parser.add_argument("--kinds", default="copy,h264",
                        help="which measurements (comma-separated: copy, h264, accurate)")
    parser.add_argument("--accurate-reps", type=int, default=7)
    parser.add_argument("--accurate-h264-reps", type=int, default=3)
    args = parser.parse_args(argv)
    from bench import recordings

    kinds = [k for k in args.kinds.split(",") if k]
    manifest = recordings.recording() if {"copy", "h264"} & set(kinds) else None
    scratch = BENCH_VAR / "scratch-engine"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    results = {"import_only_peak_rss_mb": baseline_rss()}
    if manifest is not None:
        results["clip"] = {"start_ms": START_MS, "duration_ms": DURATION_MS, "recording": manifest.parent.name}
    if "accurate" in kinds:
        accurate_manifest = recordings.recording(dict(recordings.DEFAULT, gop_s=ACCURATE_GOP_S))
        results["accurate"] = measure_accurate(args.accurate_reps, args.accurate_h264_reps, accurate_manifest, scratch)
    for kind, reps in (("copy", args.copy_reps), ("h264", args.h264_reps)):
        if kind not in kinds:
            continue
        results[kind] = measure(kind, reps, manifest, scratch, whatif=kind == "h264" and not args.no_whatif,
                                one_pass=kind == "h264" and not args.no_one_pass)
        results[kind]["target"] = TARGETS[kind]
        missed = (results[kind]["ratio_wall"] or 0) > TARGETS[kind] or (results[kind]["ratio_rss"] or 0) > 1.0
        if missed and not args.no_profile:
            prof = BENCH_VAR / f"profile-engine-{kind}.txt"
            run_measured(ours_argv(kind, manifest.parent, scratch, profile=str(prof)), cwd=ROOT)
            results[kind]["profile"] = str(prof.relative_to(ROOT))
    shutil.rmtree(scratch, ignore_errors=True)
    path = write_json("engine.json" if manifest is not None else "engine-accurate.json", results)
    log(f"engine results in {path.relative_to(ROOT)}")
    return results


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "one":
        p = argparse.ArgumentParser()
        p.add_argument("cmd")
        p.add_argument("kind", choices=sorted(OUT_NAME))  # (copy-accurate / copy-keyframe: cut_clip's modes)
        p.add_argument("recdir")
        p.add_argument("outdir")
        p.add_argument("start_ms", type=float)
        p.add_argument("duration_ms", type=float)
        p.add_argument("--profile")
        p.add_argument("--frame-threads", action="store_true")
        a = p.parse_args()
        one(a.kind, a.recdir, a.outdir, a.start_ms, a.duration_ms, a.profile, a.frame_threads)
    else:
        main()
