"""The recordings the benchmarks use, generated once with tests/mediagen.py and cached under
var/bench/rec-<parameters>/ (the name spells every parameter, so changing one makes a new one).

    python -m bench.recordings            # make (or reuse) the default 10-minute 720p recording
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BENCH_VAR = ROOT / "var" / "bench"

# the recording of the benchmarks: 10 minutes, 1280x720 at 25 fps, 2 s segments, SegmentTimeline
DEFAULT = dict(duration_s=600, seg_s=2, width=1280, height=720, fps=25, template="timeline")


def cache_dir(params: dict) -> Path:
    name = "rec-" + "-".join(f"{k}{params[k]}" for k in sorted(params))
    return BENCH_VAR / name


def recording(params: dict | None = None) -> Path:
    """Path of the manifest of a cached recording (generated when absent)."""
    from tests import mediagen

    params = dict(DEFAULT if params is None else params)
    directory = cache_dir(params)
    done = directory / "DONE.json"
    if done.exists():
        return directory / json.loads(done.read_text())["manifest"]
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.monotonic()
    print(f"generating {directory.name} (a 10-minute 720p recording takes about 75 s) ...", flush=True)
    manifest = Path(mediagen.make_dash(str(tmp), **params))
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)
    seconds = time.monotonic() - started
    (directory / "DONE.json").write_text(json.dumps({"manifest": manifest.name, "params": params,
                                                      "generated_in_s": round(seconds, 1)}))
    print(f"generated {directory.name} in {seconds:.0f} s", flush=True)
    return directory / manifest.name


def files_of(manifest: Path) -> list[Path]:
    """Every file of a recording (manifest, init and media segments), without the cache marker."""
    return sorted(p for p in manifest.parent.rglob("*") if p.is_file() and p.name != "DONE.json")


if __name__ == "__main__":
    print(recording())
