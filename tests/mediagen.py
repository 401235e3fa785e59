"""Generator of small, recognisable test recordings (DASH / HLS / plain files).

Every video frame carries a machine-readable stamp: the frame is split into a
6 x 3 grid of black/white blocks encoding 18 bits -- the second index (12 bits,
0..4095) and the frame index inside that second (6 bits, 0..63).  The blocks
are huge so the stamp survives compression, scaling and JPEG.  ``read_stamp`` /
``read_second`` decode it back from a PyAV ``VideoFrame`` or a Pillow image.

Audio is a 468.75 Hz stereo sine (AAC by default, 48 kHz).

Plain functions only (no pytest), so the Django-side tests can reuse them::

    from tests.mediagen import make_dash, make_hls, make_hls_master, make_file
"""
from __future__ import annotations

import datetime as _dt
import math
import os
import re
import struct
import xml.etree.ElementTree as ET
from fractions import Fraction
from typing import Iterable, Sequence

import av

__all__ = [
    "make_dash",
    "make_hls",
    "make_hls_master",
    "make_hls_discontinuity",
    "make_file",
    "read_stamp",
    "read_second",
    "first_second",
    "first_stamp",
    "seconds_in",
    "stamps_in",
    "has_audio",
    "GRID_COLS",
    "GRID_ROWS",
]

GRID_COLS = 6
GRID_ROWS = 3
SECOND_BITS = 12
FRAME_BITS = 6
BLACK = 16
WHITE = 235

DEFAULT_ORIGIN = _dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=_dt.timezone.utc)

MPD_NS = "urn:mpeg:dash:schema:mpd:2011"
ET.register_namespace("", MPD_NS)
ET.register_namespace("xsi", "http://www.w3.org/2001/XMLSchema-instance")
ET.register_namespace("xlink", "http://www.w3.org/1999/xlink")


# --------------------------------------------------------------------------- stamp
def _bits(second: int, frame: int) -> list[int]:
    value = ((second & ((1 << SECOND_BITS) - 1)) << FRAME_BITS) | (frame & ((1 << FRAME_BITS) - 1))
    nbits = SECOND_BITS + FRAME_BITS
    return [(value >> (nbits - 1 - i)) & 1 for i in range(nbits)]


def _luma_plane(width: int, height: int, line_size: int, second: int, frame: int) -> bytes:
    bits = _bits(second, frame)
    col_edges = [round(c * width / GRID_COLS) for c in range(GRID_COLS + 1)]
    row_edges = [round(r * height / GRID_ROWS) for r in range(GRID_ROWS + 1)]
    out = []
    pad = b"\x00" * (line_size - width)
    for r in range(GRID_ROWS):
        row = b"".join(
            bytes([WHITE if bits[r * GRID_COLS + c] else BLACK]) * (col_edges[c + 1] - col_edges[c])
            for c in range(GRID_COLS)
        ) + pad
        out.append(row * (row_edges[r + 1] - row_edges[r]))
    return b"".join(out)


def _make_video_frame(width: int, height: int, second: int, frame: int) -> av.VideoFrame:
    vf = av.VideoFrame(width, height, "yuv420p")
    y = vf.planes[0]
    y.update(_luma_plane(width, height, y.line_size, second, frame))
    for p in (vf.planes[1], vf.planes[2]):
        p.update(b"\x80" * p.buffer_size)
    return vf


def read_stamp(frame) -> tuple[int, int]:
    """(second, frame_in_second) decoded from a PyAV VideoFrame or a Pillow image."""
    if isinstance(frame, av.VideoFrame):
        image = frame.to_image()
    else:
        image = frame
    gray = image.convert("L")
    w, h = gray.size
    bits = []
    for r in range(GRID_ROWS):
        for c in range(GRID_COLS):
            cx = int((c + 0.5) * w / GRID_COLS)
            cy = int((r + 0.5) * h / GRID_ROWS)
            dx = max(1, w // (GRID_COLS * 6))
            dy = max(1, h // (GRID_ROWS * 6))
            box = gray.crop((cx - dx, cy - dy, cx + dx, cy + dy))
            data = box.tobytes()
            bits.append(1 if sum(data) / len(data) > (BLACK + WHITE) / 2 else 0)
    value = 0
    for b in bits:
        value = (value << 1) | b
    return value >> FRAME_BITS, value & ((1 << FRAME_BITS) - 1)


def read_second(frame) -> int:
    """Second index encoded in a VideoFrame / Pillow image."""
    return read_stamp(frame)[0]


def _iter_frames(path: str):
    # a .ts of a frame or two is too short for FFmpeg's format probe (it guesses MPEG-PS): say it
    with av.open(path, format="mpegts" if str(path).endswith(".ts") else None) as c:
        if not c.streams.video:
            return
        for f in c.decode(c.streams.video[0]):
            yield f


def first_stamp(path: str) -> tuple[int, int]:
    for f in _iter_frames(path):
        return read_stamp(f)
    raise ValueError(f"no video frame in {path}")


def first_second(path: str) -> int:
    """Second index encoded in the first video frame of a media file."""
    return first_stamp(path)[0]


def stamps_in(path: str) -> list[tuple[int, int]]:
    """(second, frame) of every decoded video frame, in presentation order."""
    return [read_stamp(f) for f in _iter_frames(path)]


def seconds_in(path: str) -> list[int]:
    """Distinct second indexes present in the file, in order of appearance."""
    out: list[int] = []
    for s, _ in stamps_in(path):
        if not out or out[-1] != s:
            out.append(s)
    return out


def has_audio(path: str) -> bool:
    with av.open(path) as c:
        if not c.streams.audio:
            return False
        for _ in c.demux(c.streams.audio[0]):
            return True
    return False


# --------------------------------------------------------------------------- encoding
_SR = 48000
_BLOCK = 1024
_SINE_BLOCK: dict[str, bytes] = {}


def _sine_block() -> bytes:
    # 468.75 Hz = 10 periods per 1024 samples -> one block repeats seamlessly
    if "s16" not in _SINE_BLOCK:
        samples = []
        for k in range(_BLOCK):
            v = int(8000 * math.sin(2 * math.pi * 10 * k / _BLOCK))
            samples.append(struct.pack("<hh", v, v))
        _SINE_BLOCK["s16"] = b"".join(samples)
    return _SINE_BLOCK["s16"]


def _encode_into(
    out: av.container.OutputContainer,
    *,
    duration_s: float,
    width: int,
    height: int,
    fps: int,
    audio: bool,
    gop_s: float = 1.0,
    bframes: int = 0,
    vcodec: str = "libx264",
    acodec: str = "aac",
    start_second: int = 0,
    open_gop: bool | None = None,
    b_pyramid: bool | None = None,
    b_adapt: int | None = None,
    pix_fmt: str = "yuv420p",
    sar: Fraction | None = None,
    colors: dict[str, int] | None = None,
) -> None:
    gop = max(1, int(round(gop_s * fps)))
    vopts = {"g": str(gop), "keyint_min": str(gop), "bf": str(bframes)}
    if vcodec == "libx264":
        vopts.update({"preset": "ultrafast" if not bframes else "superfast", "sc_threshold": "0", "crf": "28"})
        extra = []
        if open_gop is not None:
            # repeat-headers: SPS / PPS before every keyframe, not only the IDR (segmenting muxers ask
            # for global headers, and their segments must be decodable on their own)
            extra.append(f"open-gop={int(open_gop)}:repeat-headers=1")
        if b_pyramid is not None:
            extra.append("b-pyramid=" + ("normal" if b_pyramid else "none"))
        if b_adapt is not None:
            extra.append(f"b-adapt={b_adapt}")
        if extra:
            vopts["x264-params"] = ":".join(extra)
    elif vcodec == "libx265":
        params = f"log-level=error:keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}"
        if open_gop is not None:
            params += f":open-gop={int(open_gop)}:repeat-headers=1"
        if b_pyramid is not None:
            params += f":b-pyramid={int(b_pyramid)}"
        if b_adapt is not None:
            params += f":b-adapt={b_adapt}"
        vopts.update({"preset": "ultrafast", "x265-params": params})
    vs = out.add_stream(vcodec, rate=fps, options=vopts)
    vs.width = width
    vs.height = height
    vs.pix_fmt = pix_fmt
    vs.codec_context.time_base = Fraction(1, fps)
    if sar is not None:
        vs.codec_context.sample_aspect_ratio = sar
    for name, value in (colors or {}).items():  # color_primaries / color_trc / colorspace / color_range
        setattr(vs.codec_context, name, value)
    ast = None
    if audio:
        ast = out.add_stream(acodec, rate=_SR, layout="stereo")
        ast.codec_context.time_base = Fraction(1, _SR)
    block = _sine_block()
    nframes = int(round(duration_s * fps))
    total_samples = int(round(duration_s * _SR))
    apos = 0
    for i in range(nframes):
        t = i / fps
        if ast is not None:
            while apos < total_samples and apos / _SR <= t + 0.05:
                af = av.AudioFrame(format="s16", layout="stereo", samples=_BLOCK)
                af.planes[0].update(block)
                af.sample_rate = _SR
                af.pts = apos
                af.time_base = Fraction(1, _SR)
                for p in ast.encode(af):
                    out.mux(p)
                apos += _BLOCK
        vf = _make_video_frame(width, height, start_second + i // fps, i % fps)
        if pix_fmt != "yuv420p":
            vf = vf.reformat(format=pix_fmt)
        vf.pts = i
        vf.time_base = Fraction(1, fps)
        for p in vs.encode(vf):
            out.mux(p)
    for p in vs.encode():
        out.mux(p)
    if ast is not None:
        while apos < total_samples:
            af = av.AudioFrame(format="s16", layout="stereo", samples=_BLOCK)
            af.planes[0].update(block)
            af.sample_rate = _SR
            af.pts = apos
            af.time_base = Fraction(1, _SR)
            for p in ast.encode(af):
                out.mux(p)
            apos += _BLOCK
        for p in ast.encode():
            out.mux(p)


def make_file(
    path: str,
    *,
    duration_s: float = 10,
    width: int = 320,
    height: int = 180,
    fps: int = 25,
    audio: bool = True,
    container: str | None = None,
    vcodec: str = "libx264",
    acodec: str = "aac",
    gop_s: float = 1.0,
    bframes: int = 0,
    start_second: int = 0,
    **video_opts,
) -> str:
    """Write a single media file (format from `container` or the extension: .ts/.mp4/.mkv).

    video_opts: open_gop, b_pyramid, b_adapt (encoder GOP structure; None: the encoder's
    default), pix_fmt, sar, colors (see ``_encode_into``)."""
    if container is None:
        ext = os.path.splitext(path)[1].lower()
        container = {".ts": "mpegts", ".mp4": "mp4", ".mkv": "matroska", ".m4s": "mp4"}.get(ext, "mpegts")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with av.open(path, "w", format=container) as out:
        _encode_into(out, duration_s=duration_s, width=width, height=height, fps=fps, audio=audio,
                     vcodec=vcodec, acodec=acodec, gop_s=gop_s, bframes=bframes, start_second=start_second,
                     **video_opts)
    return path


# --------------------------------------------------------------------------- DASH
def _iso(dt: _dt.datetime) -> str:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_dt.timezone.utc)
    dt = dt.astimezone(_dt.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{dt.microsecond // 1000:03d}Z"


def _q(tag: str) -> str:
    return f"{{{MPD_NS}}}{tag}"


def _expand_timeline(tl: ET.Element) -> list[tuple[int, int]]:
    out = []
    t = 0
    for s in tl.findall(_q("S")):
        if s.get("t") is not None:
            t = int(s.get("t"))
        d = int(s.get("d"))
        for _ in range(int(s.get("r", "0")) + 1):
            out.append((t, d))
            t += d
    return out


def _in_ranges(mid_s: float, ranges: Iterable[tuple[float, float]]) -> bool:
    return any(a <= mid_s < b for a, b in ranges)


def _expand_name(template: str, rep_id: str, number: int, time: int, bandwidth: str = "0") -> str:
    def sub(m: re.Match) -> str:
        name, fmt = m.group(1), m.group(2)
        if name == "":
            return "$"
        val = {"RepresentationID": rep_id, "Number": number, "Time": time, "Bandwidth": bandwidth}[name]
        if fmt and name != "RepresentationID":
            return ("%" + fmt[1:]) % int(val)
        return str(val)

    return re.sub(r"\$(RepresentationID|Number|Time|Bandwidth|)(%0\d+d)?\$", sub, template)


def make_dash(
    dir: str,
    *,
    duration_s: float = 20,
    seg_s: float = 2,
    template: str = "timeline",
    origin: _dt.datetime | None = DEFAULT_ORIGIN,
    gaps: Sequence[tuple[float, float]] = (),
    missing: Sequence[tuple[float, float]] = (),
    width: int = 320,
    height: int = 180,
    fps: int = 25,
    audio: bool = True,
    gop_s: float = 1.0,
    bframes: int = 0,
    vcodec: str = "libx264",
    start_second: int = 0,
    manifest_name: str = "manifest.mpd",
    **video_opts,
) -> str:
    """Write a DASH recording (fragmented MP4) into `dir`; return the manifest path.

    template: "timeline" (SegmentTimeline + $Number$ names), "time" (SegmentTimeline +
    $Time$ names) or "number" (SegmentTemplate@duration, no timeline).
    origin: written as MPD@availabilityStartTime (None: attribute absent).
    gaps: (from_s, to_s) ranges whose segments are removed from the timeline (the
    following S gets an explicit @t) and deleted -- timeline modes only.
    missing: (from_s, to_s) ranges whose segment files are deleted but stay listed.
    """
    if template not in ("timeline", "time", "number"):
        raise ValueError(template)
    if gaps and template == "number":
        raise ValueError("gaps need a SegmentTimeline (template='timeline' or 'time')")
    os.makedirs(dir, exist_ok=True)
    media = "chunk-$RepresentationID$-$Time$.$ext$" if template == "time" else "chunk-$RepresentationID$-$Number%05d$.$ext$"
    mpd_path = os.path.join(dir, manifest_name)
    opts = {
        "use_timeline": "0" if template == "number" else "1",
        "use_template": "1",
        "seg_duration": str(seg_s),
        "window_size": "0",
        "init_seg_name": "init-$RepresentationID$.$ext$",
        "media_seg_name": media,
        "adaptation_sets": "id=0,streams=v id=1,streams=a" if audio else "id=0,streams=v",
    }
    with av.open(mpd_path, "w", format="dash", options=opts) as out:
        _encode_into(out, duration_s=duration_s, width=width, height=height, fps=fps, audio=audio,
                     gop_s=gop_s, bframes=bframes, start_second=start_second, vcodec=vcodec, **video_opts)

    tree = ET.parse(mpd_path)
    root = tree.getroot()
    if origin is not None:
        root.set("availabilityStartTime", _iso(origin))
    for rep in root.iter(_q("Representation")):
        st = rep.find(_q("SegmentTemplate"))
        if st is None:
            continue
        rep_id = rep.get("id", "")
        ts = int(st.get("timescale", "1"))
        start_number = int(st.get("startNumber", "1"))
        media_t = st.get("media", "")
        tl = st.find(_q("SegmentTimeline"))
        if tl is not None:
            segs = _expand_timeline(tl)
            keep = []
            for idx, (t, d) in enumerate(segs):
                number = start_number + idx
                name = os.path.join(dir, _expand_name(media_t, rep_id, number, t))
                mid = (t + d / 2) / ts
                if gaps and _in_ranges(mid, gaps):
                    if os.path.exists(name):
                        os.remove(name)
                    continue
                keep.append((t, d, name))
            if gaps:
                # rewrite timeline with explicit @t after each jump; renumber $Number$ files
                for s in list(tl):
                    tl.remove(s)
                prev_end = None
                for idx, (t, d, name) in enumerate(keep):
                    attrs = {"d": str(d)}
                    if prev_end is None or t != prev_end:
                        attrs = {"t": str(t), "d": str(d)}
                    ET.SubElement(tl, _q("S"), attrs)
                    prev_end = t + d
                    new_name = os.path.join(dir, _expand_name(media_t, rep_id, start_number + idx, t))
                    if new_name != name:
                        os.replace(name, new_name)
                    keep[idx] = (t, d, new_name)
            for t, d, name in keep:
                if missing and _in_ranges((t + d / 2) / ts, missing) and os.path.exists(name):
                    os.remove(name)
        elif missing:
            d = int(st.get("duration"))
            n = start_number
            while True:
                name = os.path.join(dir, _expand_name(media_t, rep_id, n, (n - start_number) * d))
                if not os.path.exists(name):
                    break
                if _in_ranges(((n - start_number) * d + d / 2) / ts, missing):
                    os.remove(name)
                n += 1
    tree.write(mpd_path, encoding="utf-8", xml_declaration=True)
    return mpd_path


# --------------------------------------------------------------------------- HLS
def _parse_media_playlist_lines(text: str) -> tuple[list[str], list[tuple[list[str], float, str]], list[str]]:
    """Split a simple media playlist into header lines, [(tag_lines, extinf, uri)], trailer lines."""
    header: list[str] = []
    segs: list[tuple[list[str], float, str]] = []
    trailer: list[str] = []
    pending: list[str] = []
    dur = None
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#EXTINF:"):
            dur = float(line[8:].split(",")[0])
            pending.append(line)
        elif line.startswith("#EXT-X-ENDLIST"):
            trailer.append(line)
        elif line.startswith("#"):
            if dur is None and not segs and not line.startswith(("#EXT-X-PROGRAM-DATE-TIME", "#EXT-X-DISCONTINUITY")):
                header.append(line)
            elif not line.startswith("#EXT-X-PROGRAM-DATE-TIME"):
                pending.append(line)
        else:
            segs.append((pending, dur or 0.0, line))
            pending = []
            dur = None
    return header, segs, trailer


def make_hls(
    dir: str,
    *,
    duration_s: float = 20,
    seg_s: float = 2,
    program_date_time: _dt.datetime | None = DEFAULT_ORIGIN,
    missing: Sequence[tuple[float, float]] = (),
    width: int = 320,
    height: int = 180,
    fps: int = 25,
    audio: bool = True,
    acodec: str = "aac",
    gop_s: float = 1.0,
    bframes: int = 0,
    vcodec: str = "libx264",
    start_number: int = 0,
    start_second: int = 0,
    playlist_name: str = "index.m3u8",
    segment_prefix: str = "seg",
    endlist: bool = True,
    hls_flags: str | None = None,
    **video_opts,
) -> str:
    """Write an HLS recording (MPEG-TS segments) into `dir`; return the playlist path.

    program_date_time: #EXT-X-PROGRAM-DATE-TIME of segment 0 (one tag per segment,
    increasing by the EXTINF durations); None: no such tags.
    missing: (from_s, to_s) ranges whose segment files are deleted (still listed).
    hls_flags: the hls muxer's flags (e.g. "split_by_time": segments cut every seg_s, on
    keyframes or not).
    """
    os.makedirs(dir, exist_ok=True)
    path = os.path.join(dir, playlist_name)
    opts = {
        "hls_time": str(seg_s),
        "hls_list_size": "0",
        "hls_playlist_type": "vod",
        "start_number": str(start_number),
        "hls_segment_filename": os.path.join(dir, segment_prefix + "%05d.ts"),
    }
    if hls_flags:
        opts["hls_flags"] = hls_flags
    with av.open(path, "w", format="hls", options=opts) as out:
        _encode_into(out, duration_s=duration_s, width=width, height=height, fps=fps, audio=audio,
                     acodec=acodec, gop_s=gop_s, bframes=bframes, start_second=start_second, vcodec=vcodec,
                     **video_opts)
    with open(path) as f:
        header, segs, trailer = _parse_media_playlist_lines(f.read())
    lines = list(header)
    t = 0.0
    for tags, dur, uri in segs:
        if program_date_time is not None:
            pdt = program_date_time + _dt.timedelta(seconds=t)
            lines.append("#EXT-X-PROGRAM-DATE-TIME:" + _iso(pdt).replace("Z", "+00:00"))
        lines.extend(tags)
        lines.append(uri)
        if missing and _in_ranges(t + dur / 2, missing):
            fp = os.path.join(dir, uri)
            if os.path.exists(fp):
                os.remove(fp)
        t += dur
    if endlist:
        lines.extend(trailer or ["#EXT-X-ENDLIST"])
    else:
        lines = [ln for ln in lines if not ln.startswith("#EXT-X-PLAYLIST-TYPE")]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def make_hls_master(
    dir: str,
    *,
    variants: Sequence[tuple[int, int]] = ((320, 180), (640, 360)),
    duration_s: float = 10,
    seg_s: float = 2,
    program_date_time: _dt.datetime | None = DEFAULT_ORIGIN,
    fps: int = 25,
    audio: bool = True,
    master_name: str = "master.m3u8",
) -> str:
    """Write a master playlist with one variant per (width, height) in subdirs v0/, v1/...

    BANDWIDTH is measured from the segment sizes, so bigger variants get higher values.
    """
    os.makedirs(dir, exist_ok=True)
    lines = ["#EXTM3U", "#EXT-X-VERSION:3"]
    for i, (w, h) in enumerate(variants):
        sub = f"v{i}"
        pl = make_hls(os.path.join(dir, sub), duration_s=duration_s, seg_s=seg_s, width=w, height=h, fps=fps,
                      audio=audio, program_date_time=program_date_time)
        size = sum(os.path.getsize(os.path.join(dir, sub, n)) for n in os.listdir(os.path.join(dir, sub)) if n.endswith(".ts"))
        bw = int(size * 8 / duration_s)
        codecs = "avc1.42c00d,mp4a.40.2" if audio else "avc1.42c00d"
        lines.append(f'#EXT-X-STREAM-INF:BANDWIDTH={bw},RESOLUTION={w}x{h},CODECS="{codecs}"')
        lines.append(f"{sub}/{os.path.basename(pl)}")
    path = os.path.join(dir, master_name)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def make_hls_discontinuity(
    dir: str,
    *,
    parts: Sequence[float] = (10, 10),
    seg_s: float = 2,
    program_date_time: _dt.datetime | None = DEFAULT_ORIGIN,
    playlist_name: str = "index.m3u8",
    **kw,
) -> str:
    """HLS recording made of several independent encodes (timestamps restart in each part),
    joined with #EXT-X-DISCONTINUITY; the picture's seconds keep counting across parts."""
    os.makedirs(dir, exist_ok=True)
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{int(math.ceil(seg_s))}",
             "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-PLAYLIST-TYPE:VOD"]
    first_second = 0
    t = 0.0
    for i, dur in enumerate(parts):
        name = f"part{i}.m3u8"
        make_hls(dir, duration_s=dur, seg_s=seg_s, program_date_time=None, playlist_name=name,
                 segment_prefix=f"p{i}_", start_second=first_second, **kw)
        with open(os.path.join(dir, name)) as f:
            _, segs, _ = _parse_media_playlist_lines(f.read())
        os.remove(os.path.join(dir, name))
        if i:
            lines.append("#EXT-X-DISCONTINUITY")
        for tags, d, uri in segs:
            if program_date_time is not None:
                pdt = program_date_time + _dt.timedelta(seconds=t)
                lines.append("#EXT-X-PROGRAM-DATE-TIME:" + _iso(pdt).replace("Z", "+00:00"))
            lines.extend(tags)
            lines.append(uri)
            t += d
        first_second += int(round(dur))
    lines.append("#EXT-X-ENDLIST")
    path = os.path.join(dir, playlist_name)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path
