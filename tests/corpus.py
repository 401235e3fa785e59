"""A corpus of short recordings made by real packagers (ffmpeg's dash / hls muxers, GStreamer's
dashsink / hlssink2) and by editing their manifests (multi-period, on-demand profile), for the
media engine and export tests.

Plain functions, no pytest::

    from tests import corpus
    rec = corpus.build("ffmpeg-dash-time")      # -> Built (generated once, then cached)
    rec.root, rec.manifest_key, rec.now_ms       # the bucket directory, the manifest's key in it

Every recording is made from the same stamped source (tests/mediagen.py: each frame shows its
second and frame number, see ``mediagen.read_stamp``): 12 s, 320x180, 25 fps, 2 s GOPs, AAC
stereo 48 kHz, packaged into 2 s segments.  Frame ``(s, f)`` is at ``s * 1000 + f * 40`` ms after
the recording's first video frame (the multi-period one keeps counting across its periods).

Recordings are cached under ``$RESOURCED_CORPUS_DIR`` (default ``~/.cache/resourced-corpus``) in a
directory named by a hash of the parameters, the recipes' version and the tools' versions; each
one is built in a temporary directory and renamed into place, so concurrent runs are safe and a
second run reuses it.  ``missing_tool(name)`` says why a recording cannot be built here (the
command that installs what is missing), for the tests to skip with that reason.
"""
from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import inspect
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ENTRIES", "Entry", "Built", "build", "missing_tool", "corpus_root", "frame_ms", "PARAMS"]

# bump when a recipe changes what it writes
RECIPES_VERSION = 3

PARAMS = {"duration_s": 12, "width": 320, "height": 180, "fps": 25, "gop_s": 2, "seg_s": 2}
FRAME_MS = 1000.0 / PARAMS["fps"]

FFMPEG_INSTALL = "apt-get install -y ffmpeg"
GST_INSTALL = ("apt-get install -y gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-bad "
               "gstreamer1.0-plugins-ugly gstreamer1.0-libav")
GST_ELEMENTS = ("matroskademux", "h264parse", "aacparse", "dashsink", "hlssink2")

MPD_NS = "urn:mpeg:dash:schema:mpd:2011"


@dataclass(frozen=True)
class Entry:
    name: str
    recipe: str  # directory (one recipe may write several manifests)
    manifest: str  # manifest file name in that directory
    tool: str  # "ffmpeg" or "gstreamer"
    style: str  # what it exercises
    byte_ranges: bool = False  # its segments are byte ranges of bigger files
    dynamic: bool = False


ENTRIES: dict[str, Entry] = {e.name: e for e in [
    Entry("ffmpeg-dash-time", "ffmpeg-dash-time", "manifest.mpd", "ffmpeg",
          "DASH SegmentTemplate $Time$ + SegmentTimeline (use_timeline 1)"),
    Entry("ffmpeg-dash-number", "ffmpeg-dash-number", "manifest.mpd", "ffmpeg",
          "DASH SegmentTemplate $Number$ + @duration (use_timeline 0)"),
    Entry("ffmpeg-dash-list", "ffmpeg-dash-list", "manifest.mpd", "ffmpeg",
          "DASH SegmentList of SegmentURL@media (use_template 0)"),
    Entry("ffmpeg-dash-single", "ffmpeg-dash-single", "manifest.mpd", "ffmpeg",
          "DASH single file: SegmentList of SegmentURL@mediaRange, Initialization@range, per-segment sidx",
          byte_ranges=True),
    Entry("ffmpeg-dash-live", "ffmpeg-dash-live", "live.mpd", "ffmpeg",
          "DASH type=dynamic (streaming 1, ldash 1, real time), SegmentTemplate @duration, snapshot while live",
          dynamic=True),
    Entry("ffmpeg-dash-epoch", "ffmpeg-dash-epoch", "manifest.mpd", "ffmpeg",
          "DASH $Time$ timeline whose media time starts at 1.7e9 s, no availabilityStartTime"),
    Entry("ffmpeg-hls-ts", "ffmpeg-hls-ts", "index.m3u8", "ffmpeg", "HLS MPEG-TS segments"),
    Entry("ffmpeg-hls-fmp4", "ffmpeg-hls-fmp4", "index.m3u8", "ffmpeg", "HLS fMP4 segments, EXT-X-MAP"),
    Entry("ffmpeg-hls-single", "ffmpeg-hls-single", "index.m3u8", "ffmpeg",
          "HLS single file MPEG-TS, EXT-X-BYTERANGE n@o", byte_ranges=True),
    Entry("edited-hls-byterange-implicit", "ffmpeg-hls-single", "implicit.m3u8", "ffmpeg",
          "HLS single file MPEG-TS, EXT-X-BYTERANGE without offsets after the first", byte_ranges=True),
    Entry("ffmpeg-hls-single-fmp4", "ffmpeg-hls-single-fmp4", "index.m3u8", "ffmpeg",
          "HLS single file fMP4, EXT-X-MAP BYTERANGE + EXT-X-BYTERANGE", byte_ranges=True),
    Entry("gst-dashsink", "gst-dashsink", "manifest.mpd", "gstreamer",
          "GStreamer dashsink (MPEG-TS segments, audio AdaptationSet with mimeType video/mp2t, timescale 1)"),
    Entry("gst-hlssink2", "gst-hlssink2", "playlist.m3u8", "gstreamer", "GStreamer hlssink2 (MPEG-TS)"),
    Entry("edited-multiperiod", "edited-multiperiod", "manifest.mpd", "ffmpeg",
          "two ffmpeg DASH outputs as two Periods ($Time$ timeline / $Number$ @duration, own inits, "
          "timescales and presentationTimeOffset)"),
    Entry("edited-ondemand", "edited-ondemand", "manifest.mpd", "ffmpeg",
          "DASH on-demand profile: SegmentBase@indexRange (global sidx) + Initialization@range",
          byte_ranges=True),
    Entry("edited-hls-map-change", "edited-hls-joined", "map-change.m3u8", "ffmpeg",
          "two ffmpeg HLS fMP4 encodes joined: EXT-X-DISCONTINUITY-SEQUENCE, EXT-X-MAP changing mid-playlist"),
    Entry("edited-hls-mixed", "edited-hls-joined", "mixed.m3u8", "ffmpeg",
          "ffmpeg HLS MPEG-TS segments then fMP4 segments (EXT-X-DISCONTINUITY + EXT-X-MAP) in one playlist"),
    Entry("edited-hls-mixed-fmp4-first", "edited-hls-mixed-fmp4-first", "mixed.m3u8", "ffmpeg",
          "ffmpeg HLS fMP4 segments then MPEG-TS segments (EXT-X-DISCONTINUITY, EXT-X-MAP of their PAT + PMT)"),
    Entry("edited-hls-mixed-stale-map", "edited-hls-mixed-fmp4-first", "stale-map.m3u8", "ffmpeg",
          "ffmpeg HLS fMP4 segments then MPEG-TS segments, the fMP4 EXT-X-MAP left in effect over them"),
    Entry("ffmpeg-hls-aes", "ffmpeg-hls-aes", "index.m3u8", "ffmpeg",
          "HLS MPEG-TS segments encrypted with AES-128 (hls_key_info_file: one EXT-X-KEY, its IV every segment's)"),
    Entry("edited-hls-aes-iv-none", "ffmpeg-hls-aes", "iv-none.m3u8", "ffmpeg",
          "HLS AES-128 (periodic_rekey) without IV attributes (IV = media sequence number), then "
          "EXT-X-KEY METHOD=NONE and segments in the clear"),
    Entry("ffmpeg-hls-aes-single", "ffmpeg-hls-aes", "single/index.m3u8", "ffmpeg",
          "HLS single file of AES-128 encrypted byte ranges (hls_flags single_file), the key one directory up",
          byte_ranges=True),
    Entry("edited-hls-aes-ranges", "ffmpeg-hls-aes", "ranges/index.m3u8", "ffmpeg",
          "HLS AES-128 segments joined into one file as byte ranges, no IV (each range's media sequence number)",
          byte_ranges=True),
    Entry("ffmpeg-hls-aes-rekey", "ffmpeg-hls-aes-rekey", "index.m3u8", "ffmpeg",
          "HLS AES-128 with keys rotated while packaging (hls_flags periodic_rekey)"),
]}


@dataclass(frozen=True)
class Built:
    entry: Entry
    root: str  # the directory playing the bucket
    manifest_key: str  # "<recipe>/<manifest>"
    now_ms: float | None  # dynamic: when the manifest was published (what "now" was for it)

    @property
    def dir(self) -> str:
        return os.path.join(self.root, self.entry.recipe)


# --------------------------------------------------------------------------- tools
def _run(cmd: list[str], *, cwd: str | None = None, timeout: float = 120) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


@functools.lru_cache(maxsize=None)
def _ffmpeg_version() -> str | None:
    if not shutil.which("ffmpeg"):
        return None
    try:
        return _run(["ffmpeg", "-hide_banner", "-version"]).splitlines()[0]
    except Exception:
        return None


@functools.lru_cache(maxsize=None)
def _gst_version() -> str | None:
    if not (shutil.which("gst-launch-1.0") and shutil.which("gst-inspect-1.0")):
        return None
    try:
        return _run(["gst-launch-1.0", "--version"]).splitlines()[1].strip()
    except Exception:
        return None


@functools.lru_cache(maxsize=None)
def _gst_missing_elements() -> tuple[str, ...]:
    out = []
    for element in GST_ELEMENTS:
        if subprocess.run(["gst-inspect-1.0", element], capture_output=True).returncode != 0:
            out.append(element)
    return tuple(out)


def missing_tool(name: str) -> str | None:
    """Why the recording `name` cannot be generated here (with the install command), or None."""
    entry = ENTRIES[name]
    if not _ffmpeg_version():  # every recipe needs ffmpeg (the stamped source, or the packaging)
        return f"ffmpeg is not installed (on Debian: {FFMPEG_INSTALL})"
    if entry.tool == "gstreamer":
        if not _gst_version():
            return f"GStreamer is not installed (on Debian: {GST_INSTALL})"
        missing = _gst_missing_elements()
        if missing:
            return f"GStreamer elements {', '.join(missing)} are missing (on Debian: {GST_INSTALL})"
    return None


def _pyav_versions() -> str:
    import av

    return f"{av.__version__} {sorted(av.library_versions.items())}"


def _mediagen_source() -> str:
    from tests import mediagen

    return "".join(inspect.getsource(f) for f in (mediagen._bits, mediagen._luma_plane, mediagen._make_video_frame,
                                                    mediagen._encode_into, mediagen.make_file))


def corpus_root() -> Path:
    """The cache directory for the current parameters, recipes and tool versions."""
    base = Path(os.environ.get("RESOURCED_CORPUS_DIR") or Path.home() / ".cache" / "resourced-corpus")
    key = json.dumps({
        "params": PARAMS,
        "recipes": RECIPES_VERSION,
        "ffmpeg": _ffmpeg_version(),
        "gstreamer": _gst_version(),
        "pyav": _pyav_versions(),
        "mediagen": hashlib.sha256(_mediagen_source().encode()).hexdigest(),
    }, sort_keys=True)
    return base / hashlib.sha256(key.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- building
def build(name: str) -> Built:
    """The recording `name`, generated on first use and cached (see the module docstring).

    Raises RuntimeError when a tool is missing (see missing_tool) or fails."""
    entry = ENTRIES[name]
    reason = missing_tool(name)
    if reason:
        raise RuntimeError(reason)
    root = corpus_root()
    done = _ensure(root, entry.recipe)
    meta = json.loads((done / ".meta.json").read_text())
    return Built(entry=entry, root=str(root), manifest_key=f"{entry.recipe}/{entry.manifest}",
                 now_ms=meta.get("now_ms"))


def _ensure(root: Path, recipe: str) -> Path:
    final = root / recipe
    if (final / ".meta.json").exists():
        return final
    root.mkdir(parents=True, exist_ok=True)
    sources = _ensure_sources(root)
    tmp = Path(tempfile.mkdtemp(prefix=f".{recipe}-", dir=root))
    try:
        meta = _RECIPES[recipe](str(tmp), sources) or {}
        (tmp / ".meta.json").write_text(json.dumps(meta))
        try:
            os.rename(tmp, final)
        except OSError:  # built meanwhile by another process
            if not (final / ".meta.json").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _ensure_sources(root: Path) -> dict[str, str]:
    """The stamped sources (Matroska, H.264 + AAC): "a" seconds 0-11, "b" seconds 6-11 (6 s)."""
    from tests import mediagen

    src = root / "_src"
    out = {"a": str(src / "a.mkv"), "b": str(src / "b.mkv")}
    if all(os.path.exists(p) for p in out.values()):
        return out
    src.mkdir(parents=True, exist_ok=True)
    p = PARAMS
    common = dict(width=p["width"], height=p["height"], fps=p["fps"], gop_s=p["gop_s"], audio=True)
    for label, duration, first in (("a", p["duration_s"], 0), ("b", p["duration_s"] // 2, p["duration_s"] // 2)):
        fd, tmp = tempfile.mkstemp(prefix=f".{label}-", suffix=".mkv", dir=src)
        os.close(fd)
        mediagen.make_file(tmp, duration_s=duration, start_second=first, container="matroska", **common)
        os.replace(tmp, out[label])
    return out


_FF = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
_MAP = ["-map", "0:v", "-map", "0:a", "-c", "copy"]


def _dash_args() -> list[str]:
    return ["-f", "dash", "-seg_duration", str(PARAMS["seg_s"]), "-adaptation_sets", "id=0,streams=v id=1,streams=a"]


def _hls_args() -> list[str]:
    return ["-f", "hls", "-hls_time", str(PARAMS["seg_s"]), "-hls_list_size", "0", "-hls_playlist_type", "vod"]


def _r_dash_time(d: str, src: dict) -> dict:
    _run(_FF + ["-i", src["a"]] + _MAP + _dash_args() + ["-use_template", "1", "-use_timeline", "1",
         "-media_seg_name", "chunk-$RepresentationID$-$Time$.$ext$", "manifest.mpd"], cwd=d)
    return {}


def _r_dash_number(d: str, src: dict) -> dict:
    _run(_FF + ["-i", src["a"]] + _MAP + _dash_args() + ["-use_template", "1", "-use_timeline", "0", "manifest.mpd"],
         cwd=d)
    return {}


def _r_dash_list(d: str, src: dict) -> dict:
    _run(_FF + ["-i", src["a"]] + _MAP + _dash_args() + ["-use_template", "0", "manifest.mpd"], cwd=d)
    return {}


def _r_dash_single(d: str, src: dict) -> dict:
    _run(_FF + ["-i", src["a"]] + _MAP + _dash_args() + ["-single_file", "1", "manifest.mpd"], cwd=d)
    return {}


def _r_dash_epoch(d: str, src: dict) -> dict:
    _run(_FF + ["-i", src["a"]] + _MAP + ["-output_ts_offset", "1700000000"] + _dash_args()
         + ["-use_template", "1", "-use_timeline", "1", "-media_seg_name", "chunk-$RepresentationID$-$Time$.$ext$",
            "manifest.mpd"], cwd=d)
    return {}


def _r_dash_live(d: str, src: dict) -> dict:
    """ffmpeg packaging in real time (-re) with -streaming 1 -ldash 1: the MPD is type="dynamic"
    while it runs (it is rewritten as static at the end); the last dynamic one is kept as live.mpd."""
    cmd = _FF + ["-re", "-i", src["a"]] + _MAP + _dash_args() + [
        "-use_template", "1", "-use_timeline", "0", "-streaming", "1", "-ldash", "1", "-window_size", "0",
        "-frag_type", "duration", "-frag_duration", "0.5", "manifest.mpd"]
    proc = subprocess.Popen(cmd, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = None
    path = os.path.join(d, "manifest.mpd")
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = b""
        if b'type="dynamic"' in data and data.rstrip().endswith(b"</MPD>"):
            last = data
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
    _out, err = proc.communicate()
    if proc.returncode != 0 or last is None:
        raise RuntimeError(f"ffmpeg live DASH failed ({proc.returncode}): {err.decode(errors='replace')[-2000:]}")
    with open(os.path.join(d, "live.mpd"), "wb") as f:
        f.write(last)
    m = re.search(rb'publishTime="([^"]+)"', last)
    now_ms = None
    if m:
        value = m.group(1).decode().replace("Z", "+00:00")
        now_ms = _dt.datetime.fromisoformat(value).timestamp() * 1000.0
    return {"now_ms": now_ms}


def _r_hls_ts(d: str, src: dict) -> dict:
    _run(_FF + ["-i", src["a"]] + _MAP + _hls_args() + ["-hls_segment_filename", "seg%03d.ts", "index.m3u8"], cwd=d)
    return {}


def _r_hls_fmp4(d: str, src: dict) -> dict:
    _run(_FF + ["-i", src["a"]] + _MAP + _hls_args() + [
        "-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4", "-hls_segment_filename", "seg%03d.m4s",
        "index.m3u8"], cwd=d)
    return {}


def _r_hls_single(d: str, src: dict) -> dict:
    _run(_FF + ["-i", src["a"]] + _MAP + _hls_args() + ["-hls_flags", "single_file", "index.m3u8"], cwd=d)
    # the same playlist with EXT-X-BYTERANGE offsets left out after the first (they continue the previous range)
    lines = Path(d, "index.m3u8").read_text().splitlines()
    seen = False
    out = []
    for ln in lines:
        if ln.startswith("#EXT-X-BYTERANGE:"):
            if seen:
                ln = ln.split("@")[0]
            seen = True
        out.append(ln)
    Path(d, "implicit.m3u8").write_text("\n".join(out) + "\n")
    return {}


def _r_hls_single_fmp4(d: str, src: dict) -> dict:
    _run(_FF + ["-i", src["a"]] + _MAP + _hls_args() + ["-hls_flags", "single_file", "-hls_segment_type", "fmp4",
                                                         "index.m3u8"], cwd=d)
    return {}


def _gst(d: str, pipeline: str) -> None:
    _run(["gst-launch-1.0", "-q", "-e"] + pipeline.split(), cwd=d, timeout=120)


def _r_gst_dashsink(d: str, src: dict) -> dict:
    # muxer=mp4 hangs after the first fragment in GStreamer 1.22: the (default) MPEG-TS muxer it is
    _gst(d, f"filesrc location={src['a']} ! matroskademux name=d "
            f"d.video_0 ! queue ! h264parse ! ds.video_0 d.audio_0 ! queue ! aacparse ! ds.audio_0 "
            f"dashsink name=ds muxer=ts target-duration={PARAMS['seg_s']} mpd-root-path={d} mpd-filename=manifest.mpd")
    return {}


def _r_gst_hlssink2(d: str, src: dict) -> dict:
    _gst(d, f"filesrc location={src['a']} ! matroskademux name=d "
            f"d.video_0 ! queue ! h264parse ! hs.video d.audio_0 ! queue ! aacparse ! hs.audio "
            f"hlssink2 name=hs target-duration={PARAMS['seg_s']} playlist-length=0 max-files=0 "
            f"location={d}/segment%05d.ts playlist-location={d}/playlist.m3u8")
    return {}


def _q(tag: str) -> str:
    return f"{{{MPD_NS}}}{tag}"


def _register_ns() -> None:
    ET.register_namespace("", MPD_NS)
    ET.register_namespace("xsi", "http://www.w3.org/2001/XMLSchema-instance")
    ET.register_namespace("xlink", "http://www.w3.org/1999/xlink")


def _r_multiperiod(d: str, src: dict) -> dict:
    """Period p0: seconds 0-5 of "a" packaged with a $Time$ SegmentTimeline (timescales 12800 / 48000);
    Period p1 (start 6 s): "b" (seconds 6-11) packaged with $Number$ @duration (timescale 1e6), its media
    time starting at 1000 s, which presentationTimeOffset maps to the period start."""
    half = PARAMS["duration_s"] // 2
    p0, p1 = os.path.join(d, "p0"), os.path.join(d, "p1")
    os.makedirs(p0)
    os.makedirs(p1)
    _run(_FF + ["-t", str(half), "-i", src["a"]] + _MAP + _dash_args() + [
        "-use_template", "1", "-use_timeline", "1", "-media_seg_name", "chunk-$RepresentationID$-$Time$.$ext$",
        "manifest.mpd"], cwd=p0)
    _run(_FF + ["-i", src["b"]] + _MAP + ["-output_ts_offset", "1000"] + _dash_args() + [
        "-use_template", "1", "-use_timeline", "0", "manifest.mpd"], cwd=p1)
    _register_ns()
    t0 = ET.parse(os.path.join(p0, "manifest.mpd"))
    t1 = ET.parse(os.path.join(p1, "manifest.mpd"))
    root = t0.getroot()
    per0 = root.find(_q("Period"))
    per1 = t1.getroot().find(_q("Period"))
    for period, pid, start, base in ((per0, "p0", 0, "p0/"), (per1, "p1", half, "p1/")):
        period.set("id", pid)
        period.set("start", f"PT{start}S")
        b = ET.Element(_q("BaseURL"))
        b.text = base
        period.insert(0, b)
    for st in per1.iter(_q("SegmentTemplate")):
        st.set("presentationTimeOffset", str(1000 * int(st.get("timescale", "1"))))
    root.append(per1)
    root.set("mediaPresentationDuration", f"PT{PARAMS['duration_s']}S")
    t0.write(os.path.join(d, "manifest.mpd"), encoding="utf-8", xml_declaration=True)
    os.remove(os.path.join(p0, "manifest.mpd"))
    os.remove(os.path.join(p1, "manifest.mpd"))
    return {}


def _top_boxes(path: str) -> list[tuple[str, int, int]]:
    out = []
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos + 8 <= len(data):
        size, typ = struct.unpack_from(">I4s", data, pos)
        if size == 1:
            size = struct.unpack_from(">Q", data, pos + 8)[0]
        elif size == 0:
            size = len(data) - pos
        out.append((typ.decode("latin-1"), pos, size))
        pos += size
    return out


def _r_ondemand(d: str, src: dict) -> dict:
    """ffmpeg single-file DASH with a global sidx, its manifest rewritten to the on-demand profile:
    SegmentBase@indexRange (the sidx box) + Initialization@range (ftyp + moov), no segment list."""
    _run(_FF + ["-i", src["a"]] + _MAP + _dash_args() + ["-single_file", "1", "-global_sidx", "1", "manifest.mpd"],
         cwd=d)
    _register_ns()
    tree = ET.parse(os.path.join(d, "manifest.mpd"))
    root = tree.getroot()
    root.set("profiles", "urn:mpeg:dash:profile:isoff-on-demand:2011")
    for aset in root.iter(_q("AdaptationSet")):
        aset.set("subsegmentAlignment", "true")
        aset.set("subsegmentStartsWithSAP", "1")
        for rep in aset.findall(_q("Representation")):
            sl = rep.find(_q("SegmentList"))
            base = rep.find(_q("BaseURL")).text
            boxes = _top_boxes(os.path.join(d, base))
            sidx = next(b for b in boxes if b[0] == "sidx")
            seg_base = ET.Element(_q("SegmentBase"), {
                "indexRange": f"{sidx[1]}-{sidx[1] + sidx[2] - 1}", "timescale": sl.get("timescale", "1")})
            ET.SubElement(seg_base, _q("Initialization"), {"range": f"0-{sidx[1] - 1}"})
            rep.remove(sl)
            rep.append(seg_base)
    tree.write(os.path.join(d, "manifest.mpd"), encoding="utf-8", xml_declaration=True)
    return {}


def _r_hls_joined(d: str, src: dict) -> dict:
    """Seconds 0-5 of "a" as fMP4 (a/) and as MPEG-TS (c/), "b" (seconds 6-11, media time from 1000 s)
    as fMP4 (b/); map-change.m3u8 joins a/ and b/ (a new EXT-X-MAP after a discontinuity),
    mixed.m3u8 joins c/ and b/ (TS, then fMP4)."""
    half = PARAMS["duration_s"] // 2
    fmp4 = ["-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4"]
    for sub in ("a", "b", "c"):
        os.makedirs(os.path.join(d, sub))
    _run(_FF + ["-t", str(half), "-i", src["a"]] + _MAP + _hls_args() + fmp4
         + ["-hls_segment_filename", "a/seg%03d.m4s", "a/index.m3u8"], cwd=d)
    _run(_FF + ["-i", src["b"]] + _MAP + ["-output_ts_offset", "1000"] + _hls_args() + fmp4
         + ["-hls_segment_filename", "b/seg%03d.m4s", "b/index.m3u8"], cwd=d)
    _run(_FF + ["-t", str(half), "-i", src["a"]] + _MAP + _hls_args()
         + ["-hls_segment_filename", "c/seg%03d.ts", "c/index.m3u8"], cwd=d)

    for name, first, second in (("map-change.m3u8", "a", "b"), ("mixed.m3u8", "c", "b")):
        _join_playlists(d, name, first, second)
    return {}


def _join_playlists(d: str, name: str, first: str, second: str, second_map: str | None = None) -> None:
    """The playlists of d/first and d/second as one (an EXT-X-DISCONTINUITY between, then an
    EXT-X-MAP of `second_map` when given), into d/name."""

    def body(sub: str) -> list[str]:
        out = []
        for ln in Path(d, sub, "index.m3u8").read_text().splitlines():
            if ln.startswith("#EXT-X-MAP:"):
                out.append(f'#EXT-X-MAP:URI="{sub}/init.mp4"')
            elif ln.startswith("#EXTINF") or (ln and not ln.startswith("#")):
                out.append(ln if ln.startswith("#") else f"{sub}/{os.path.basename(ln)}")
        return out

    head = ["#EXTM3U", "#EXT-X-VERSION:7", f"#EXT-X-TARGETDURATION:{PARAMS['seg_s']}", "#EXT-X-MEDIA-SEQUENCE:0",
            "#EXT-X-DISCONTINUITY-SEQUENCE:0", "#EXT-X-PLAYLIST-TYPE:VOD"]
    new_map = [f'#EXT-X-MAP:URI="{second_map}"'] if second_map else []
    lines = head + body(first) + ["#EXT-X-DISCONTINUITY"] + new_map + body(second) + ["#EXT-X-ENDLIST"]
    Path(d, name).write_text("\n".join(lines) + "\n")


def _ts_tables(segment: str) -> bytes:
    """The leading PSI packets (PAT, PMT, SDT) of an MPEG-TS file written by ffmpeg: what an HLS
    EXT-X-MAP of MPEG-TS segments holds."""
    data = Path(segment).read_bytes()
    end = 0
    while end + 188 <= len(data) and ((data[end + 1] & 0x1F) << 8 | data[end + 2]) in (0x0000, 0x0011, 0x1000):
        end += 188
    return data[:end]


def _r_hls_mixed_fmp4_first(d: str, src: dict) -> dict:
    """Seconds 0-5 of "a" as fMP4 (a/), then "b" (seconds 6-11, media time from 1000 s) as MPEG-TS
    (d/), joined in mixed.m3u8 with an EXT-X-MAP of the MPEG-TS tables (d/init.ts: an EXT-X-MAP
    applies up to the next one), and in stale-map.m3u8 without (the fMP4 one left in effect, as a
    playlist writer unaware of the switch leaves it)."""
    half = PARAMS["duration_s"] // 2
    for sub in ("a", "d"):
        os.makedirs(os.path.join(d, sub))
    _run(_FF + ["-t", str(half), "-i", src["a"]] + _MAP + _hls_args()
         + ["-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
            "-hls_segment_filename", "a/seg%03d.m4s", "a/index.m3u8"], cwd=d)
    _run(_FF + ["-i", src["b"]] + _MAP + ["-output_ts_offset", "1000"] + _hls_args()
         + ["-hls_segment_filename", "d/seg%03d.ts", "d/index.m3u8"], cwd=d)
    Path(d, "d/init.ts").write_bytes(_ts_tables(os.path.join(d, "d/seg000.ts")))
    _join_playlists(d, "mixed.m3u8", "a", "d", second_map="d/init.ts")
    _join_playlists(d, "stale-map.m3u8", "a", "d")
    return {}


def _aes_key(d: str, name: str) -> str:
    """A fixed AES-128 key written to d/name; returns the key info file ffmpeg reads (the URI the
    playlist gives, the file to read the key from) for it."""
    Path(d, name).write_bytes(hashlib.sha256(f"resourced corpus key {name}".encode()).digest()[:16])
    info = Path(d, f".{name}.keyinfo")
    info.write_text(f"{name}\n{os.path.join(d, name)}\n")
    return str(info)


def _r_hls_aes(d: str, src: dict) -> dict:
    """ffmpeg's hls muxer encrypting MPEG-TS with AES-128 (-hls_key_info_file): index.m3u8 (one
    EXT-X-KEY whose IV, 0, is every segment's), and single/index.m3u8 (-hls_flags single_file: byte
    ranges of one file, each encrypted on its own, the key one directory up).

    Edited: seq/ is the same with -hls_flags periodic_rekey (an EXT-X-KEY before each segment, the
    IV its media sequence number); iv-none.m3u8 takes its first 6 s with the IV attributes left out
    (the media sequence number rule gives them back), then, after EXT-X-KEY METHOD=NONE, the
    segments of clear/ (written unencrypted); ranges/index.m3u8 has seq/'s segments joined into one
    file as byte ranges, without IV either.  The segments and byte ranges are those of
    ffmpeg-hls-ts and ffmpeg-hls-single, decrypted."""
    info = _aes_key(d, "aes.key")
    args = _FF + ["-i", src["a"]] + _MAP + _hls_args()
    for sub in ("seq", "clear", "single", "ranges"):
        os.makedirs(os.path.join(d, sub))
    _run(args + ["-hls_key_info_file", info, "-hls_segment_filename", "seg%03d.ts", "index.m3u8"], cwd=d)
    _run(args + ["-hls_key_info_file", info, "-hls_flags", "periodic_rekey", "-hls_segment_filename",
                 "seq/seg%03d.ts", "seq/index.m3u8"], cwd=d)
    _run(args + ["-hls_segment_filename", "clear/seg%03d.ts", "clear/index.m3u8"], cwd=d)
    Path(d, ".single.keyinfo").write_text(Path(info).read_text().replace("aes.key\n", "../aes.key\n", 1))
    _run(args + ["-hls_key_info_file", os.path.join(d, ".single.keyinfo"), "-hls_flags", "single_file",
                 "single/index.m3u8"], cwd=d)

    head = ["#EXTM3U", "#EXT-X-VERSION:4", f"#EXT-X-TARGETDURATION:{PARAMS['seg_s']}", "#EXT-X-MEDIA-SEQUENCE:0",
            "#EXT-X-PLAYLIST-TYPE:VOD"]
    segments = _hls_segments(os.path.join(d, "seq/index.m3u8"))
    clear_from = PARAMS["duration_s"] // 2 // PARAMS["seg_s"]  # the first segment in the clear
    lines = head + ['#EXT-X-KEY:METHOD=AES-128,URI="aes.key"']
    for n, (extinf, name) in enumerate(segments):
        if n == clear_from:
            lines.append("#EXT-X-KEY:METHOD=NONE")
        lines += [extinf, f"{'seq' if n < clear_from else 'clear'}/{name}"]
    Path(d, "iv-none.m3u8").write_text("\n".join(lines + ["#EXT-X-ENDLIST"]) + "\n")

    lines = head + ['#EXT-X-KEY:METHOD=AES-128,URI="../aes.key"']
    offset = 0
    with open(os.path.join(d, "ranges/all.ts"), "wb") as joined:
        for extinf, name in segments:
            data = Path(d, "seq", name).read_bytes()
            joined.write(data)
            lines += [extinf, f"#EXT-X-BYTERANGE:{len(data)}@{offset}", "all.ts"]
            offset += len(data)
    Path(d, "ranges/index.m3u8").write_text("\n".join(lines + ["#EXT-X-ENDLIST"]) + "\n")
    for leftover in [*Path(d).glob(".*.keyinfo"), *Path(d).rglob("*.tmp")]:  # (ffmpeg leaves single/index.ts.tmp)
        leftover.unlink()
    return {}


def _hls_segments(playlist: str) -> list[tuple[str, str]]:
    """(EXTINF line, URI) of each segment of a playlist ffmpeg wrote."""
    lines = Path(playlist).read_text().splitlines()
    return [(lines[i - 1], ln) for i, ln in enumerate(lines) if ln and not ln.startswith("#")]


def _r_hls_aes_rekey(d: str, src: dict) -> dict:
    """ffmpeg's hls muxer with -hls_flags periodic_rekey, which reads the key info file again for each
    segment: packaging at twice real time, the key info file is switched to the next key whenever a
    segment file appears, every second segment (the playlist says which key each segment got)."""
    keys = [_aes_key(d, f"key{i}.key") for i in range(3)]
    info = os.path.join(d, ".keyinfo")
    shutil.copy(keys[0], info)
    cmd = _FF + ["-readrate", "2", "-i", src["a"]] + _MAP + _hls_args() + [
        "-hls_key_info_file", info, "-hls_flags", "periodic_rekey", "-hls_segment_filename", "seg%03d.ts",
        "index.m3u8"]
    proc = subprocess.Popen(cmd, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen = 0
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        segments = len(list(Path(d).glob("seg*.ts")))
        if segments > seen:
            seen = segments
            shutil.copy(keys[seen // 2 % len(keys)], info + ".new")
            os.replace(info + ".new", info)  # (ffmpeg reads the old file or the new one, never half of one)
        time.sleep(0.01)
    if proc.poll() is None:
        proc.kill()
    _out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg periodic_rekey failed ({proc.returncode}): {err.decode(errors='replace')[-2000:]}")
    for leftover in Path(d).glob(".*keyinfo*"):
        leftover.unlink()
    return {}


_RECIPES = {
    "ffmpeg-dash-time": _r_dash_time,
    "ffmpeg-dash-number": _r_dash_number,
    "ffmpeg-dash-list": _r_dash_list,
    "ffmpeg-dash-single": _r_dash_single,
    "ffmpeg-dash-live": _r_dash_live,
    "ffmpeg-dash-epoch": _r_dash_epoch,
    "ffmpeg-hls-ts": _r_hls_ts,
    "ffmpeg-hls-fmp4": _r_hls_fmp4,
    "ffmpeg-hls-single": _r_hls_single,
    "ffmpeg-hls-single-fmp4": _r_hls_single_fmp4,
    "gst-dashsink": _r_gst_dashsink,
    "gst-hlssink2": _r_gst_hlssink2,
    "edited-multiperiod": _r_multiperiod,
    "edited-ondemand": _r_ondemand,
    "edited-hls-joined": _r_hls_joined,
    "edited-hls-mixed-fmp4-first": _r_hls_mixed_fmp4_first,
    "ffmpeg-hls-aes": _r_hls_aes,
    "ffmpeg-hls-aes-rekey": _r_hls_aes_rekey,
}


def frame_ms(second: int, frame: int) -> float:
    """Time of the stamped frame (second, frame) after the recording's first video frame."""
    return second * 1000.0 + frame * FRAME_MS


if __name__ == "__main__":  # python -m tests.corpus: build everything, print where
    for n in ENTRIES:
        why = missing_tool(n)
        if why:
            print(f"{n}: skipped ({why})")
            continue
        t0 = time.monotonic()
        b = build(n)
        print(f"{n}: {os.path.join(b.root, b.manifest_key)} ({time.monotonic() - t0:.1f} s)")
