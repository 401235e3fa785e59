"""DASH (MPD) and HLS (m3u8) manifest parsing into a uniform segment timeline.

All times are milliseconds of *recording time*: 0 is the start of the presentation
(DASH: Period@start + (t - presentationTimeOffset) / timescale; HLS: cumulative
EXTINF sum starting at 0).  ``Recording.origin_ms`` gives the wall-clock epoch ms
of recording time 0 when the manifest says so.
"""
from __future__ import annotations

import datetime as _dt
import math
import posixpath
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from typing import Callable, Iterable
from urllib.parse import unquote, urlsplit

from .errors import ManifestError

__all__ = [
    "Segment",
    "Track",
    "Recording",
    "load_recording",
    "parse_mpd",
    "parse_m3u8",
    "resolve_key",
]


@dataclass(frozen=True)
class Segment:
    key: str  # resolved storage key of the segment
    start_ms: float  # start in recording time
    end_ms: float
    number: int  # DASH $Number$ / HLS media sequence number


@dataclass(frozen=True)
class Track:
    kind: str  # "video", "audio" or "muxed"
    init_key: str | None  # DASH initialization segment (or HLS EXT-X-MAP); None for TS
    segments: tuple[Segment, ...]
    codecs: str = ""
    bandwidth: int = 0
    representation_id: str = ""


@dataclass(frozen=True)
class Recording:
    kind: str  # "dash" or "hls"
    origin_ms: int | None  # wall-clock epoch ms of recording time 0
    tracks: tuple[Track, ...]  # video (or muxed) first, then at most one audio
    duration_ms: float  # end of the last segment of the first track
    dynamic: bool = False


# --------------------------------------------------------------------------- helpers
def resolve_key(base: str, ref: str) -> str:
    """Resolve a manifest reference into a storage key.

    ``base`` is a directory (``"a/b"`` or ``"a/b/"``); absolute URLs keep only their
    path (without the leading '/'); relative references are joined and normalised.
    """
    ref = ref.strip()
    parts = urlsplit(ref)
    if parts.scheme or parts.netloc:
        path = unquote(parts.path).lstrip("/")
        return posixpath.normpath(path) if path else ""
    path = unquote(parts.path)
    if path.startswith("/"):
        return posixpath.normpath(path.lstrip("/"))
    joined = posixpath.join(base, path) if base else path
    out = posixpath.normpath(joined)
    if out == ".":
        return ""
    if out.startswith("../") or out == "..":
        raise ManifestError(f"reference {ref!r} escapes the storage root from {base!r}")
    return out


def _join_base(base: str, ref: str) -> str:
    """BaseURL chaining; the result ends with '/' when it names a directory."""
    ref = ref.strip()
    if not ref:
        return base
    parts = urlsplit(ref)
    path = unquote(parts.path)
    if parts.scheme or parts.netloc or path.startswith("/"):
        new = posixpath.normpath(path.lstrip("/")) if path.lstrip("/") else ""
    else:
        d = base if (not base or base.endswith("/")) else posixpath.dirname(base) + "/"
        new = posixpath.normpath(posixpath.join(d.lstrip("/"), path))
    if new in (".", ""):
        return ""
    if new.startswith(".."):
        raise ManifestError(f"BaseURL {ref!r} escapes the storage root")
    if path.endswith("/"):
        new += "/"
    return new


def _resolve_against(base: str, ref: str) -> str:
    d = base if (base.endswith("/") or not base) else posixpath.dirname(base)
    return resolve_key(d.rstrip("/"), ref)


_DUR_RE = re.compile(
    r"^(?P<sign>-)?P(?:(?P<y>\d+(?:\.\d+)?)Y)?(?:(?P<mo>\d+(?:\.\d+)?)M)?(?:(?P<w>\d+(?:\.\d+)?)W)?"
    r"(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<mi>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration_ms(value: str | None) -> float | None:
    """ISO 8601 duration (xs:duration) -> milliseconds."""
    if value is None:
        return None
    m = _DUR_RE.match(value.strip())
    if not m or value.strip() in ("P", "PT"):
        raise ManifestError(f"invalid ISO 8601 duration {value!r}")
    g = {k: float(v) if v else 0.0 for k, v in m.groupdict().items() if k != "sign"}
    seconds = (
        g["y"] * 365 * 86400 + g["mo"] * 30 * 86400 + g["w"] * 7 * 86400 + g["d"] * 86400
        + g["h"] * 3600 + g["mi"] * 60 + g["s"]
    )
    return (-seconds if m.group("sign") else seconds) * 1000.0


def parse_datetime_ms(value: str) -> int:
    """ISO 8601 date-time -> epoch milliseconds (naive values are UTC)."""
    v = value.strip()
    v = re.sub(r"[zZ]$", "+00:00", v)
    v = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", v)  # +0000 -> +00:00
    v = re.sub(r"([+-]\d{2})$", r"\1:00", v) if re.search(r"T.*[+-]\d{2}$", v) else v
    m = re.match(r"^(.*?[T ]\d{2}:\d{2}:\d{2})(\.\d+)?(.*)$", v)
    if m and m.group(2):  # fromisoformat wants at most 6 fraction digits
        v = m.group(1) + m.group(2)[:7].ljust(2, "0") + m.group(3)
    try:
        dt = _dt.datetime.fromisoformat(v)
    except ValueError as e:
        raise ManifestError(f"invalid ISO 8601 date-time {value!r}") from e
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_dt.timezone.utc)
    return int(round(dt.timestamp() * 1000))


def _to_text(text: bytes | str) -> str:
    if isinstance(text, (bytes, bytearray, memoryview)):
        raw = bytes(text)
        for enc in ("utf-8-sig", "utf-16"):
            try:
                return raw.decode(enc)
            except UnicodeDecodeError:
                continue
        raise ManifestError("manifest is not valid UTF-8 text")
    return text


# --------------------------------------------------------------------------- DASH
def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _children(el: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in el if _local(c.tag) == name]


def _child(el: ET.Element | None, name: str) -> ET.Element | None:
    if el is None:
        return None
    for c in el:
        if _local(c.tag) == name:
            return c
    return None


_TEMPLATE_RE = re.compile(r"\$(RepresentationID|Number|Bandwidth|Time|SubNumber|)(%0?(\d*)([diuxXo]))?\$")


def expand_template(template: str, *, rep_id: str = "", number: int = 0, bandwidth: int = 0, time: int = 0) -> str:
    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name == "":
            return "$"
        if name == "RepresentationID":
            return rep_id
        value = {"Number": number, "Bandwidth": bandwidth, "Time": time, "SubNumber": 0}[name]
        if m.group(2):
            width = m.group(3) or "1"
            conv = m.group(4)
            if conv in "iu":
                conv = "d"
            return ("%0" + width + conv) % int(value)
        return str(int(value))

    return _TEMPLATE_RE.sub(sub, template)


class _Seg:
    __slots__ = ("attrs", "timeline", "urls", "init")

    def __init__(self) -> None:
        self.attrs: dict[str, str] = {}
        self.timeline: ET.Element | None = None
        self.urls: list[str] | None = None
        self.init: str | None = None


def _merge_seginfo(levels: Iterable[ET.Element | None]) -> tuple[str | None, _Seg]:
    """Merge SegmentTemplate / SegmentList / SegmentBase info inherited Period -> AS -> Rep."""
    kind = None
    info = _Seg()
    for el in levels:
        if el is None:
            continue
        for name in ("SegmentTemplate", "SegmentList", "SegmentBase"):
            s = _child(el, name)
            if s is None:
                continue
            if name != "SegmentBase":
                kind = name
            elif kind is None:
                kind = name
            info.attrs.update(s.attrib)
            tl = _child(s, "SegmentTimeline")
            if tl is not None:
                info.timeline = tl
            ini = _child(s, "Initialization")
            if ini is not None and ini.get("sourceURL"):
                info.init = ini.get("sourceURL")
            if name == "SegmentList":
                urls = [u.get("media", "") for u in _children(s, "SegmentURL")]
                if urls:
                    info.urls = urls
    return kind, info


def _classify(aset: ET.Element, rep: ET.Element) -> str | None:
    ctype = (aset.get("contentType") or "").lower()
    mime = (rep.get("mimeType") or aset.get("mimeType") or "").lower()
    codecs = (rep.get("codecs") or aset.get("codecs") or "").lower()
    comp_types = {(c.get("contentType") or "").lower() for c in _children(aset, "ContentComponent")}
    vid_codecs = ("avc", "hvc", "hev", "vp0", "vp8", "vp9", "av01", "dvh", "dva", "mp4v")
    aud_codecs = ("mp4a", "opus", "ac-3", "ec-3", "flac", "mp3", "vorbis", "alac", "dts")
    has_v = any(c.strip().startswith(vid_codecs) for c in codecs.split(",") if c)
    has_a = any(c.strip().startswith(aud_codecs) for c in codecs.split(",") if c)
    if has_v and has_a or {"video", "audio"} <= comp_types:
        return "muxed"
    if ctype in ("text", "image", "application") or mime.startswith(("text/", "image/", "application/")):
        return None
    if ctype == "video" or mime.startswith("video/") or has_v or (rep.get("width") and not has_a):
        return "video"
    if ctype == "audio" or mime.startswith("audio/") or has_a:
        return "audio"
    return None


_MAX_SEGMENTS = 2_000_000


def _rep_segments(
    *,
    kind: str | None,
    info: _Seg,
    base: str,
    rep_id: str,
    bandwidth: int,
    period_start_ms: float,
    period_end_ms: float | None,
    dynamic: bool,
    now_rel_ms: float | None,
    tsbd_ms: float | None = None,
) -> tuple[str | None, list[Segment]]:
    a = info.attrs
    timescale = int(a.get("timescale", "1") or 1)
    if timescale <= 0:
        raise ManifestError("invalid timescale")
    pto = int(a.get("presentationTimeOffset", "0") or 0)
    start_number = int(a.get("startNumber", "1") or 1)
    end_number = int(a["endNumber"]) if a.get("endNumber") else None

    def to_ms(t: int) -> float:
        return period_start_ms + (t - pto) * 1000.0 / timescale

    # media-time limit of this period (for r=-1 / @duration counting)
    # (a "now" bound of a dynamic MPD only counts segments that are complete)
    limit_is_now = False
    if period_end_ms is not None:
        limit_t = pto + (period_end_ms - period_start_ms) * timescale / 1000.0
    elif dynamic and now_rel_ms is not None:
        limit_t = pto + (now_rel_ms - period_start_ms) * timescale / 1000.0
        limit_is_now = True
    else:
        limit_t = None

    times: list[tuple[int, int]] = []  # (t, d) in media time
    first_index = 0  # index (from startNumber) of times[0]
    if info.timeline is not None:
        entries = _children(info.timeline, "S")
        t = None
        for i, s in enumerate(entries):
            try:
                if s.get("t") is not None:
                    t = int(s.get("t"))
                elif t is None:
                    t = pto
                d = int(s.get("d"))
                r = int(s.get("r", "0"))
            except (TypeError, ValueError) as e:
                raise ManifestError(f"invalid SegmentTimeline S element {s.attrib}") from e
            if d <= 0:
                raise ManifestError("SegmentTimeline S@d must be positive")
            if r < 0:
                nxt = entries[i + 1].get("t") if i + 1 < len(entries) else None
                end_t = int(nxt) if nxt is not None else limit_t
                if end_t is None:
                    r = 0
                elif nxt is None and limit_is_now:
                    r = int(math.floor((end_t - t) / d + 1e-9)) - 1
                else:
                    r = max(0, int(math.ceil((end_t - t) / d - 1e-9)) - 1)
            if len(times) + r + 1 > _MAX_SEGMENTS:
                raise ManifestError("unreasonable number of segments in SegmentTimeline")
            for _ in range(r + 1):
                times.append((t, d))
                t += d
    elif a.get("duration") and (kind == "SegmentTemplate" or (kind == "SegmentList" and info.urls is None)):
        d = int(a["duration"])
        if d <= 0:
            raise ManifestError("SegmentTemplate@duration must be positive")
        if end_number is not None:
            count = end_number - start_number + 1
        elif period_end_ms is not None:
            count = int(math.ceil((period_end_ms - period_start_ms) * timescale / 1000.0 / d - 1e-9))
        elif dynamic and now_rel_ms is not None:
            count = int(math.floor((now_rel_ms - period_start_ms) * timescale / 1000.0 / d))
            if tsbd_ms is not None:  # only the time-shift window is listed
                first_index = max(0, int(math.floor((now_rel_ms - tsbd_ms - period_start_ms) * timescale / 1000.0 / d)))
        else:
            raise ManifestError("cannot tell how many segments a SegmentTemplate@duration period has")
        if count - first_index > _MAX_SEGMENTS:
            raise ManifestError(f"unreasonable number of segments ({count - first_index})")
        times = [(pto + i * d, d) for i in range(first_index, max(0, count))]
    elif kind == "SegmentList" and info.urls is not None:
        d = int(a.get("duration", "0") or 0)
        if not d:
            if period_end_ms is None or len(info.urls) != 1:
                raise ManifestError("SegmentList without @duration or SegmentTimeline")
            d = int((period_end_ms - period_start_ms) * timescale / 1000.0)
        times = [(pto + i * d, d) for i in range(len(info.urls))]
    else:
        # single-file representation (SegmentBase or bare BaseURL)
        if period_end_ms is None:
            raise ManifestError("single-file representation without a known duration")
        key = "" if (not base or base.endswith("/")) else posixpath.normpath(base)
        if not key:
            raise ManifestError("representation has no segment information")
        return None, [Segment(key=key, start_ms=period_start_ms, end_ms=period_end_ms, number=start_number)]

    if kind == "SegmentList" and info.urls is not None:
        times = times[: len(info.urls)]
    segments = []
    for idx, (t, d) in enumerate(times):
        number = start_number + first_index + idx
        if end_number is not None and number > end_number:
            break
        if kind == "SegmentList" and info.urls is not None:
            ref = info.urls[idx]
        else:
            media = a.get("media")
            if not media:
                raise ManifestError("SegmentTemplate without @media")
            ref = expand_template(media, rep_id=rep_id, number=number, bandwidth=bandwidth, time=t)
        start = to_ms(t)
        end = to_ms(t + d)
        if info.timeline is None and period_end_ms is not None:
            end = min(end, period_end_ms)
            if end <= start:
                break
        segments.append(Segment(key=_resolve_against(base, ref), start_ms=start, end_ms=end, number=number))

    init_key = None
    init_ref = a.get("initialization") if kind == "SegmentTemplate" else None
    if init_ref is None:
        init_ref = info.init
    if init_ref:
        init_key = _resolve_against(
            base, expand_template(init_ref, rep_id=rep_id, bandwidth=bandwidth, number=start_number, time=0)
        )
    return init_key, segments


def parse_mpd(text: bytes | str, *, base_dir: str, now_ms: float | None = None) -> Recording:
    """Parse a DASH MPD.

    The video representation with the highest bandwidth (over all video adaptation sets)
    and the first audio representation are kept.  ``now_ms`` (epoch ms, default: the
    current time) bounds open-ended timelines of dynamic MPDs (S@r=-1 as last entry,
    SegmentTemplate@duration without a period duration).
    """
    raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as e:
        raise ManifestError(f"MPD is not well-formed XML: {e}") from e
    if _local(root.tag) != "MPD":
        raise ManifestError(f"not an MPD (root element is {_local(root.tag)!r})")

    dynamic = (root.get("type") or "static").strip() == "dynamic"
    origin_ms = parse_datetime_ms(root.get("availabilityStartTime")) if root.get("availabilityStartTime") else None
    mpd_duration = parse_duration_ms(root.get("mediaPresentationDuration"))
    if now_ms is None:
        now_ms = time.time() * 1000.0
    now_rel_ms = (now_ms - origin_ms) if origin_ms is not None else None
    tsbd_ms = parse_duration_ms(root.get("timeShiftBufferDepth")) if dynamic else None

    base = base_dir.strip("/")
    base = base + "/" if base else ""
    for b in _children(root, "BaseURL")[:1]:
        base = _join_base(base, b.text or "")

    periods = _children(root, "Period")
    if not periods:
        raise ManifestError("MPD has no Period")

    # Period start / end
    starts: list[float | None] = []
    for i, p in enumerate(periods):
        st = parse_duration_ms(p.get("start"))
        if st is None:
            if i == 0:
                st = 0.0
            else:
                prev = starts[-1]
                pdur = parse_duration_ms(periods[i - 1].get("duration"))
                if prev is None or pdur is None:
                    raise ManifestError("cannot determine Period@start")
                st = prev + pdur
        starts.append(st)

    per_kind: dict[str, list] = {}
    for i, p in enumerate(periods):
        pstart = starts[i]
        pdur = parse_duration_ms(p.get("duration"))
        if pdur is not None:
            pend = pstart + pdur
        elif i + 1 < len(periods):
            pend = starts[i + 1]
        elif mpd_duration is not None:
            pend = mpd_duration
        else:
            pend = None
        pbase = base
        for b in _children(p, "BaseURL")[:1]:
            pbase = _join_base(pbase, b.text or "")

        video_cands = []  # (bandwidth, order, aset, rep, kind)
        audio_cands = []
        order = 0
        for aset in _children(p, "AdaptationSet"):
            for rep in _children(aset, "Representation"):
                k = _classify(aset, rep)
                order += 1
                try:
                    bw = int(rep.get("bandwidth") or 0)
                except ValueError:
                    bw = 0
                if k in ("video", "muxed"):
                    video_cands.append((bw, -order, aset, rep, k))
                elif k == "audio":
                    audio_cands.append((order, bw, aset, rep, k))
        chosen = []
        if video_cands:
            best = max(video_cands, key=lambda c: (c[0], c[1]))
            chosen.append((best[4], best[0], best[2], best[3]))
        if audio_cands:
            first = min(audio_cands, key=lambda c: c[0])
            chosen.append(("audio", first[1], first[2], first[3]))
        for kind, bw, aset, rep, in chosen:
            abase = pbase
            for b in _children(aset, "BaseURL")[:1]:
                abase = _join_base(abase, b.text or "")
            rbase = abase
            for b in _children(rep, "BaseURL")[:1]:
                rbase = _join_base(rbase, b.text or "")
            seg_kind, info = _merge_seginfo((p, aset, rep))
            rep_id = rep.get("id", "")
            init_key, segs = _rep_segments(
                kind=seg_kind, info=info, base=rbase, rep_id=rep_id, bandwidth=bw,
                period_start_ms=pstart, period_end_ms=pend, dynamic=dynamic, now_rel_ms=now_rel_ms, tsbd_ms=tsbd_ms,
            )
            codecs = rep.get("codecs") or aset.get("codecs") or ""
            group = "audio" if kind == "audio" else "video"
            per_kind.setdefault(group, []).append((kind, init_key, segs, codecs, bw, rep_id))

    tracks = []
    for group in ("video", "audio"):
        parts = per_kind.get(group)
        if not parts:
            continue
        init_keys = {pt[1] for pt in parts}
        if len(init_keys) > 1:
            raise ManifestError("multi-period MPD with different initialization segments is not supported")
        segs: list[Segment] = []
        for pt in parts:
            segs.extend(pt[2])
        first = parts[0]
        tracks.append(Track(kind=first[0], init_key=first[1], segments=tuple(segs), codecs=first[3],
                            bandwidth=first[4], representation_id=first[5]))
    if not tracks:
        raise ManifestError("MPD has no video or audio representation")
    duration = tracks[0].segments[-1].end_ms if tracks[0].segments else 0.0
    return Recording(kind="dash", origin_ms=origin_ms, tracks=tuple(tracks), duration_ms=duration, dynamic=dynamic)


# --------------------------------------------------------------------------- HLS
_ATTR_RE = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


def _attrs(s: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in _ATTR_RE.findall(s)}


def _hls_lines(text: bytes | str) -> list[str]:
    t = _to_text(text)
    lines = [ln.strip() for ln in t.splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines or not lines[0].startswith("#EXTM3U"):
        raise ManifestError("not an HLS playlist (missing #EXTM3U)")
    return lines


def _is_master(lines: list[str]) -> bool:
    return any(ln.startswith("#EXT-X-STREAM-INF") for ln in lines)


def parse_m3u8(text: bytes | str, *, base_dir: str) -> Recording:
    """Parse an HLS media playlist (a master playlist raises ManifestError)."""
    lines = _hls_lines(text)
    if _is_master(lines):
        raise ManifestError("this is an HLS master playlist, not a media playlist")
    base = base_dir.strip("/")
    media_seq = 0
    t = 0.0
    dur: float | None = None
    gap = False
    origin: int | None = None
    init_key: str | None = None
    endlist = False
    playlist_type = ""
    segments: list[Segment] = []
    idx = 0
    for ln in lines[1:]:
        if ln.startswith("#"):
            tag, _, value = ln.partition(":")
            if tag == "#EXT-X-MEDIA-SEQUENCE":
                try:
                    media_seq = int(value)
                except ValueError as e:
                    raise ManifestError(f"invalid {ln!r}") from e
            elif tag == "#EXTINF":
                try:
                    dur = float(value.split(",")[0])
                except ValueError as e:
                    raise ManifestError(f"invalid {ln!r}") from e
                if dur < 0:
                    raise ManifestError(f"negative duration in {ln!r}")
            elif tag == "#EXT-X-PROGRAM-DATE-TIME":
                if origin is None:
                    origin = int(round(parse_datetime_ms(value) - t))
            elif tag == "#EXT-X-MAP":
                a = _attrs(value)
                if "BYTERANGE" in a:
                    raise ManifestError("EXT-X-MAP with BYTERANGE is not supported")
                key = resolve_key(base, a.get("URI", ""))
                if init_key is not None and key != init_key:
                    raise ManifestError("HLS playlists with several EXT-X-MAP are not supported")
                init_key = key
            elif tag == "#EXT-X-KEY":
                method = _attrs(value).get("METHOD", "NONE")
                if method != "NONE":
                    raise ManifestError(f"encrypted HLS (METHOD={method}) is not supported")
            elif tag == "#EXT-X-BYTERANGE":
                raise ManifestError("HLS byte-range segments are not supported")
            elif tag == "#EXT-X-GAP":
                gap = True
            elif tag == "#EXT-X-ENDLIST":
                endlist = True
            elif tag == "#EXT-X-PLAYLIST-TYPE":
                playlist_type = value.strip().upper()
            continue
        if dur is None:
            raise ManifestError(f"segment {ln!r} has no #EXTINF")
        if not gap:
            segments.append(Segment(key=resolve_key(base, ln), start_ms=t * 1.0, end_ms=t + dur * 1000.0,
                                    number=media_seq + idx))
        t += dur * 1000.0
        idx += 1
        dur = None
        gap = False
    track = Track(kind="muxed", init_key=init_key, segments=tuple(segments))
    duration = segments[-1].end_ms if segments else 0.0
    dynamic = not endlist and playlist_type != "VOD"
    return Recording(kind="hls", origin_ms=origin, tracks=(track,), duration_ms=duration, dynamic=dynamic)


def _parse_master(lines: list[str], base: str) -> tuple[list[dict], dict[str, list[dict]]]:
    variants = []
    media: dict[str, list[dict]] = {}
    pending = None
    for ln in lines[1:]:
        if ln.startswith("#EXT-X-STREAM-INF:"):
            pending = _attrs(ln.split(":", 1)[1])
        elif ln.startswith("#EXT-X-MEDIA:"):
            a = _attrs(ln.split(":", 1)[1])
            if a.get("TYPE") == "AUDIO" and a.get("GROUP-ID"):
                media.setdefault(a["GROUP-ID"], []).append(a)
        elif ln.startswith("#"):
            continue
        elif pending is not None:
            pending["_URI"] = ln
            variants.append(pending)
            pending = None
    return variants, media


def load_recording(fetch: Callable[[str], bytes], key: str, *, now_ms: float | None = None) -> Recording:
    """Fetch and parse the manifest at storage `key` (.mpd or .m3u8, content sniffed).

    For an HLS master playlist the highest-BANDWIDTH variant is fetched (relative to the
    master's directory) and parsed; an AUDIO rendition with its own URI becomes the
    audio track.  Errors raised by `fetch` propagate unchanged.
    """
    data = fetch(key)
    text = _to_text(data)
    head = text.lstrip()[:1024]
    base_dir = posixpath.dirname(key)
    if head.startswith("#EXTM3U"):
        kind = "hls"
    elif head.startswith("<") and "<MPD" in text[:4096] or re.search(r"<(\w+:)?MPD[\s>]", text[:4096] or ""):
        kind = "dash"
    elif key.lower().endswith(".mpd"):
        kind = "dash"
    elif key.lower().endswith((".m3u8", ".m3u")):
        kind = "hls"
    else:
        raise ManifestError(f"{key}: neither a DASH MPD nor an HLS playlist")
    if kind == "dash":
        return parse_mpd(text, base_dir=base_dir, now_ms=now_ms)

    lines = _hls_lines(text)
    if not _is_master(lines):
        return parse_m3u8(text, base_dir=base_dir)
    variants, media = _parse_master(lines, base_dir)
    if not variants:
        raise ManifestError(f"{key}: master playlist without variants")

    def bw(v: dict) -> int:
        try:
            return int(v.get("BANDWIDTH") or v.get("AVERAGE-BANDWIDTH") or 0)
        except ValueError:
            return 0

    best = max(variants, key=bw)  # max() keeps the first of equal bandwidths
    vkey = resolve_key(base_dir, best["_URI"])
    rec = parse_m3u8(fetch(vkey), base_dir=posixpath.dirname(vkey))
    tracks = list(rec.tracks)
    audio_track = None
    group = best.get("AUDIO")
    if group and group in media:
        rends = [r for r in media[group] if r.get("URI")]
        if rends:
            rend = next((r for r in rends if r.get("DEFAULT") == "YES"), rends[0])
            akey = resolve_key(base_dir, rend["URI"])
            arec = parse_m3u8(fetch(akey), base_dir=posixpath.dirname(akey))
            audio_track = replace(arec.tracks[0], kind="audio")
    main = replace(tracks[0], kind="video" if audio_track else "muxed", codecs=best.get("CODECS", ""), bandwidth=bw(best))
    tracks = [main] + ([audio_track] if audio_track else [])
    return replace(rec, tracks=tuple(tracks))
