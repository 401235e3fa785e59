"""DASH (MPD) and HLS (m3u8) manifest parsing into a uniform segment timeline.

All times are milliseconds of *recording time*: 0 is the start of the presentation
(DASH: Period@start + (t - presentationTimeOffset) / timescale; HLS: cumulative
EXTINF sum starting at 0).  ``Recording.origin_ms`` gives the wall-clock epoch ms
of recording time 0 when the manifest says so; without one, recording time 0 is the
start of the first media segment, whatever the media timestamps are.

What a recording is made of is named by parts (``Part``): a storage key, or a byte range of
one (DASH SegmentBase / SegmentURL@mediaRange / Initialization@range, HLS
EXT-X-BYTERANGE / EXT-X-MAP BYTERANGE).  ``Part.name`` is the name of the local file
such a part is downloaded into (the key itself for a whole object), which is also the
key of the ``files`` mappings the cut / encode / thumbnail functions take.  An HLS part
encrypted with AES-128 (EXT-X-KEY) says so (``Part.encryption``): the key object is another
object of the same storage, downloaded with the part and read by the engine.
"""
from __future__ import annotations

import datetime as _dt
import math
import posixpath
import re
import struct
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from typing import Callable, Iterable
from urllib.parse import unquote, urlsplit

from .errors import ManifestError

__all__ = [
    "Encryption",
    "Part",
    "Segment",
    "Track",
    "Recording",
    "FetchRange",
    "load_recording",
    "parse_mpd",
    "parse_m3u8",
    "part_name",
    "resolve_key",
]

# fetch_range(key, first, last) -> the bytes first..last (inclusive, as in an HTTP Range header) of
# the object at `key`; fewer when the object ends before `last`.
FetchRange = Callable[[str, int, int], bytes]


def part_name(key: str, byte_range: tuple[int, int] | None) -> str:
    """Local name of a part: the key of a whole object, ``key@first-last`` for a byte range."""
    if byte_range is None:
        return key
    return f"{key}@{byte_range[0]}-{byte_range[1]}"


@dataclass(frozen=True)
class Encryption:
    """AES-128-CBC with PKCS7 padding of a whole part (HLS #EXT-X-KEY METHOD=AES-128): the 16-byte
    key is the object at storage key `key`, the initialization vector `iv` (16 bytes)."""

    key: str
    iv: bytes

    @property
    def key_part(self) -> Part:
        """The key object, downloaded like an initialization segment."""
        return Part(self.key)


@dataclass(frozen=True)
class Part:
    """Something to download: the object at `key`, or the bytes byte_range[0]..byte_range[1]
    (inclusive) of it; `encryption` when those bytes are encrypted (HLS AES-128)."""

    key: str
    byte_range: tuple[int, int] | None = None
    encryption: Encryption | None = None

    @property
    def name(self) -> str:
        return part_name(self.key, self.byte_range)

    @property
    def size(self) -> int | None:
        """Bytes of the range (None for a whole object: the manifest does not say)."""
        return None if self.byte_range is None else self.byte_range[1] - self.byte_range[0] + 1


@dataclass(frozen=True)
class Segment:
    key: str  # resolved storage key of the segment
    start_ms: float  # start in recording time
    end_ms: float
    number: int  # DASH $Number$ / HLS media sequence number
    byte_range: tuple[int, int] | None = None  # inclusive bytes of `key` holding the segment; None: all of it
    init: Part | None = None  # this segment's own initialization (set when a track's segments do not share one)
    # the segment's start in the media's own timestamps (DASH: its time / timescale, in ms), when the
    # manifest says (None for HLS): recording time = start_ms + (media timestamp - media_start_ms)
    media_start_ms: float | None = None
    encryption: Encryption | None = None  # HLS AES-128: the key and IV the segment's bytes are encrypted with

    @property
    def name(self) -> str:
        """Local file name of the segment (see Part.name)."""
        return part_name(self.key, self.byte_range)

    @property
    def part(self) -> Part:
        return Part(self.key, self.byte_range, self.encryption)


@dataclass(frozen=True)
class Track:
    kind: str  # "video", "audio" or "muxed"
    init_key: str | None  # DASH initialization segment (or HLS EXT-X-MAP) shared by all segments; None for TS
    segments: tuple[Segment, ...]
    codecs: str = ""
    bandwidth: int = 0
    representation_id: str = ""
    init_range: tuple[int, int] | None = None  # inclusive bytes of init_key; None: all of it
    init_encryption: Encryption | None = None  # HLS: an EXT-X-MAP under an AES-128 EXT-X-KEY

    @property
    def init(self) -> Part | None:
        return None if self.init_key is None else Part(self.init_key, self.init_range, self.init_encryption)

    @property
    def init_name(self) -> str | None:
        return None if self.init_key is None else part_name(self.init_key, self.init_range)

    def init_of(self, segment: Segment) -> Part | None:
        """The initialization `segment` needs: its own (multi-period DASH, an HLS EXT-X-MAP that
        changes) or the track's; None for self-initializing segments (MPEG-TS)."""
        return segment.init if segment.init is not None else self.init


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


def _byte_range(value: str | None, what: str) -> tuple[int, int] | None:
    """A DASH byte range "first-last" (inclusive) -> (first, last)."""
    if value is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", value)
    if not m:
        raise ManifestError(f"invalid {what} {value!r} (expected 'first-last')")
    first, last = int(m.group(1)), int(m.group(2))
    if last < first:
        raise ManifestError(f"invalid {what} {value!r} (last byte before first byte)")
    return first, last


class _Seg:
    __slots__ = ("attrs", "timeline", "urls", "init", "init_range")

    def __init__(self) -> None:
        self.attrs: dict[str, str] = {}
        self.timeline: ET.Element | None = None
        self.urls: list[tuple[str, tuple[int, int] | None]] | None = None  # SegmentURL (@media, @mediaRange)
        self.init: str | None = None  # Initialization@sourceURL
        self.init_range: tuple[int, int] | None = None  # Initialization@range


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
            if ini is not None:
                if ini.get("sourceURL"):
                    info.init = ini.get("sourceURL")
                if ini.get("range") is not None:
                    info.init_range = _byte_range(ini.get("range"), "Initialization@range")
            if name == "SegmentList":
                urls = [(u.get("media") or "", _byte_range(u.get("mediaRange"), "SegmentURL@mediaRange"))
                        for u in _children(s, "SegmentURL")]
                if urls:
                    info.urls = urls
    return kind, info


# --------------------------------------------------------------------------- representation kinds
_VIDEO_CODECS = ("avc", "hvc", "hev", "vp0", "vp8", "vp9", "av01", "dvh", "dva", "mp4v", "vvc", "vvi")
_AUDIO_CODECS = ("mp4a", "opus", "ac-3", "ec-3", "ac-4", "flac", "mp3", ".mp3", "vorbis", "alac", "dts", "mha", "mhm")
_TEXT_CODECS = ("stpp", "wvtt", "tx3g", "c608", "c708", "ttml", "webvtt", "evte", "dvb", "jpeg", "png", "mjpg")
_IGNORED_SCHEMES = ("thumbnail_tile", "trickmode")  # DASH-IF thumbnail tiles, trick-play representations


def _codec_kinds(codecs: str) -> set[str]:
    out = set()
    for c in codecs.lower().split(","):
        c = c.strip()
        if not c:
            continue
        if c.startswith(_VIDEO_CODECS):
            out.add("video")
        elif c.startswith(_AUDIO_CODECS):
            out.add("audio")
        elif c.startswith(_TEXT_CODECS):
            out.add("text")
    return out


def _classify(aset: ET.Element, rep: ET.Element) -> str | None:
    """"video", "audio", "muxed", None (not audio-visual: text, image, metadata, trick play) or "?"
    (only the media itself or the mimeType can tell), from @contentType then @codecs."""
    for el in (aset, rep):
        for prop in _children(el, "EssentialProperty") + _children(el, "SupplementalProperty"):
            if any(s in (prop.get("schemeIdUri") or "").lower() for s in _IGNORED_SCHEMES):
                return None
    ctype = (rep.get("contentType") or aset.get("contentType") or "").lower().strip()
    comp_types = {(c.get("contentType") or "").lower() for c in _children(aset, "ContentComponent")}
    kinds = _codec_kinds(rep.get("codecs") or aset.get("codecs") or "")
    if {"video", "audio"} <= kinds or {"video", "audio"} <= comp_types:
        return "muxed"
    if ctype in ("video", "audio"):
        return ctype
    if ctype:  # text, image, application, ...
        return None
    if "video" in kinds or "audio" in kinds:
        return "video" if "video" in kinds else "audio"
    if "text" in kinds:
        return None
    if comp_types & {"video", "audio"}:
        return "video" if "video" in comp_types else "audio"
    return "?"


def _kind_from_attributes(aset: ET.Element, rep: ET.Element) -> str | None:
    """The last resort: @mimeType, then picture size / audio attributes."""
    mime = (rep.get("mimeType") or aset.get("mimeType") or "").lower()
    has_picture = bool(rep.get("width") or aset.get("width") or rep.get("height") or aset.get("maxWidth"))
    has_sound = bool(rep.get("audioSamplingRate") or aset.get("audioSamplingRate")
                     or _children(rep, "AudioChannelConfiguration") or _children(aset, "AudioChannelConfiguration"))
    if mime.startswith(("text/", "image/", "application/")):
        return None
    if mime.startswith("audio/"):
        return "audio"
    if mime.startswith("video/"):
        return "audio" if has_sound and not has_picture else "video"
    if has_picture:
        return "video"
    if has_sound:
        return "audio"
    return None


def _iter_boxes(data: bytes, start: int = 0, end: int | None = None):
    """(type, offset, size, header_size) of the ISO BMFF boxes laid end to end in data[start:end];
    a box cut off by the end of `data` is still yielded (size says how far it goes)."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, typ = struct.unpack_from(">I4s", data, pos)
        hdr = 8
        if size == 1:
            if pos + 16 > end:
                return
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            hdr = 16
        elif size == 0:
            size = end - pos
        if size < hdr:
            return
        yield typ.decode("latin-1"), pos, size, hdr
        pos += size


def _mp4_kinds(data: bytes) -> set[str]:
    """Track kinds ("video" / "audio") of the moov in an initialization segment."""
    out: set[str] = set()

    def walk(start: int, end: int, depth: int) -> None:
        for typ, pos, size, hdr in _iter_boxes(data, start, min(end, len(data))):
            if typ in ("moov", "trak", "mdia") and depth < 4:
                walk(pos + hdr, pos + size, depth + 1)
            elif typ == "hdlr" and pos + hdr + 12 <= len(data):
                handler = data[pos + hdr + 8:pos + hdr + 12]
                if handler == b"vide":
                    out.add("video")
                elif handler == b"soun":
                    out.add("audio")

    walk(0, len(data), 0)
    return out


_TS_VIDEO_TYPES = {0x01, 0x02, 0x10, 0x1B, 0x24, 0x42, 0xD1, 0xEA}
_TS_AUDIO_TYPES = {0x03, 0x04, 0x0F, 0x11, 0x1C, 0x81, 0x82, 0x84, 0x87}


def _ts_kinds(data: bytes) -> set[str]:
    """Elementary stream kinds listed by the first PMT of an MPEG-TS chunk."""
    packets = [data[i:i + 188] for i in range(0, len(data) - 187, 188) if data[i] == 0x47]

    def section(pid: int) -> bytes | None:
        for p in packets:
            if ((p[1] & 0x1F) << 8 | p[2]) != pid or not p[1] & 0x40:
                continue
            pos = 4
            if p[3] & 0x20:  # adaptation field
                pos += 1 + p[4]
            if pos >= 188:
                continue
            pos += 1 + p[pos]  # pointer field
            return p[pos:]
        return None

    pat = section(0)
    if not pat or len(pat) < 12:
        return set()
    pmt_pid = None
    for i in range(8, min(len(pat), 3 + ((pat[1] & 0x0F) << 8 | pat[2])) - 4, 4):
        program = pat[i] << 8 | pat[i + 1]
        if program:
            pmt_pid = (pat[i + 2] & 0x1F) << 8 | pat[i + 3]
            break
    pmt = section(pmt_pid) if pmt_pid is not None else None
    if not pmt or len(pmt) < 12:
        return set()
    end = min(len(pmt), 3 + ((pmt[1] & 0x0F) << 8 | pmt[2])) - 4
    pos = 12 + ((pmt[10] & 0x0F) << 8 | pmt[11])
    out: set[str] = set()
    while pos + 5 <= end:
        stype = pmt[pos]
        if stype in _TS_VIDEO_TYPES:
            out.add("video")
        elif stype in _TS_AUDIO_TYPES:
            out.add("audio")
        pos += 5 + ((pmt[pos + 3] & 0x0F) << 8 | pmt[pos + 4])
    return out


_PROBE_BYTES = 64 * 1024


def _probe_kind(fetch_range: FetchRange, init: Part | None, first: Segment | None) -> str | None:
    """What the media of a representation is, read from its initialization segment (hdlr boxes)
    or, without one, from the PMT of its first (MPEG-TS) segment; None when they do not tell.
    Errors of `fetch_range` propagate."""
    if init is not None:
        a, b = init.byte_range if init.byte_range is not None else (0, _PROBE_BYTES - 1)
        data = fetch_range(init.key, a, min(b, a + _PROBE_BYTES - 1))
    elif first is not None:
        a = first.byte_range[0] if first.byte_range is not None else 0
        data = fetch_range(first.key, a, a + 188 * 64 - 1)
    else:
        return None
    try:
        kinds = _mp4_kinds(data) or (_ts_kinds(data) if init is None else set())
    except (struct.error, IndexError):  # not what it claims to be: the attributes decide
        return None
    if {"video", "audio"} <= kinds:
        return "muxed"
    return next(iter(kinds), None)


# --------------------------------------------------------------------------- segment index (sidx)
_MAX_SEGMENTS = 2_000_000
_MAX_INDEX_BYTES = 4 * 1024 * 1024


def _parse_sidx(data: bytes, pos: int, size: int, hdr: int, file_offset: int) -> tuple[int, list[tuple]]:
    """(timescale, [(reference_type, first, last, t, d)]) of the sidx box at data[pos:pos+size],
    whose first byte is at `file_offset` in the file."""
    body = pos + hdr
    if body + 4 > len(data):
        raise ManifestError("truncated sidx box")
    version = data[body]
    p = body + 4
    try:
        _ref_id, timescale = struct.unpack_from(">II", data, p)
        p += 8
        if version == 0:
            ept, first_offset = struct.unpack_from(">II", data, p)
            p += 8
        else:
            ept, first_offset = struct.unpack_from(">QQ", data, p)
            p += 16
        _reserved, count = struct.unpack_from(">HH", data, p)
        p += 4
        if p + 12 * count > pos + size or p + 12 * count > len(data):
            raise ManifestError("truncated sidx box")
        if timescale <= 0:
            raise ManifestError("sidx with a zero timescale")
        offset = file_offset + size + first_offset
        t = ept
        refs = []
        for _ in range(count):
            a, dur, _sap = struct.unpack_from(">III", data, p)
            p += 12
            rsize = a & 0x7FFFFFFF
            if rsize <= 0:
                raise ManifestError("sidx reference of size 0")
            refs.append((a >> 31, offset, offset + rsize - 1, t, dur))
            offset += rsize
            t += dur
    except struct.error as e:
        raise ManifestError(f"truncated sidx box: {e}") from e
    return timescale, refs


def read_segment_index(fetch_range: FetchRange, key: str, first: int, last: int,
                       *, _depth: int = 0) -> tuple[int, list[tuple[int, int, int, int]]] | None:
    """The media subsegments indexed by the sidx box(es) in bytes first..last of `key`:
    (timescale, [(first_byte, last_byte, t, d)]); hierarchical and daisy-chained sidx boxes
    (reference_type 1) are followed, fetching only the referenced index boxes.  None when
    there is no sidx box there."""
    if _depth > 8:
        raise ManifestError("sidx boxes nested too deep")
    if last - first + 1 > _MAX_INDEX_BYTES:
        raise ManifestError(f"segment index of {last - first + 1} bytes is too large")
    data = fetch_range(key, first, last)
    timescale = None
    out: list[tuple[int, int, int, int]] = []
    for typ, pos, size, hdr in _iter_boxes(data):
        if typ != "sidx":
            continue
        if pos + size > len(data):  # the index range cut the box: fetch all of it
            data = data[:pos] + fetch_range(key, first + pos, first + pos + size - 1)
        ts, refs = _parse_sidx(data, pos, size, hdr, first + pos)
        timescale = timescale or ts

        def rescale(value: int, ts: int = ts, to: int = timescale) -> int:  # into the first box's timescale
            return value if ts == to else value * to // ts

        for rtype, a, b, t, d in refs:
            if rtype == 0:
                out.append((a, b, rescale(t), rescale(d)))
                continue
            # an index reference: its sidx box is at `a`; read its header, then the box
            head = fetch_range(key, a, a + 15)
            box = next(_iter_boxes(head), None)
            if box is None or box[0] != "sidx":
                raise ManifestError(f"{key}: sidx reference at byte {a} is not a sidx box")
            sub = read_segment_index(fetch_range, key, a, a + box[2] - 1, _depth=_depth + 1)
            if sub is not None:
                sts, srefs = sub
                out.extend((x, y, st * timescale // sts, sd * timescale // sts) for x, y, st, sd in srefs)
        if len(out) > _MAX_SEGMENTS:
            raise ManifestError("unreasonable number of subsegments in the segment index")
    if timescale is None:
        return None
    return timescale, out


def _find_index(fetch_range: FetchRange, key: str) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """(index range, initialization range) of a single-file representation whose manifest gives
    no @indexRange: the first sidx box among the top-level boxes at the start of the file."""
    data = fetch_range(key, 0, _PROBE_BYTES - 1)
    for typ, pos, size, _hdr in _iter_boxes(data):
        if typ == "sidx":
            return (pos, pos + size - 1), ((0, pos - 1) if pos else None)
        if typ in ("moof", "mdat"):
            break
    return None, None



def _base_file(base: str, what: str) -> str:
    key = "" if (not base or base.endswith("/")) else posixpath.normpath(base)
    if not key:
        raise ManifestError(f"{what} without a BaseURL naming a file")
    return key


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
    fetch_range: FetchRange | None = None,
) -> tuple[Part | None, list[Segment]]:
    a = info.attrs
    try:
        timescale = int(a.get("timescale", "1") or 1)
        pto = int(a.get("presentationTimeOffset", "0") or 0)
        start_number = int(a.get("startNumber", "1") or 1)
        end_number = int(a["endNumber"]) if a.get("endNumber") else None
    except ValueError as e:
        raise ManifestError(f"invalid segment information {a}") from e
    if timescale <= 0:
        raise ManifestError("invalid timescale")

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
    listed = kind == "SegmentList" and info.urls is not None
    if info.timeline is not None and kind != "SegmentBase":
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
    elif listed:
        d = int(a.get("duration", "0") or 0)
        if not d:
            if period_end_ms is None or len(info.urls) != 1:
                raise ManifestError("SegmentList without @duration or SegmentTimeline")
            d = max(1, int((period_end_ms - period_start_ms) * timescale / 1000.0))
        times = [(pto + i * d, d) for i in range(len(info.urls))]
    else:
        return _single_file(info=info, base=base, period_start_ms=period_start_ms, period_end_ms=period_end_ms,
                            start_number=start_number, fetch_range=fetch_range)

    if listed:
        times = times[: len(info.urls)]
    segments = []
    for idx, (t, d) in enumerate(times):
        number = start_number + first_index + idx
        if end_number is not None and number > end_number:
            break
        byte_range = None
        if listed:
            ref, byte_range = info.urls[idx]
            key = _resolve_against(base, ref) if ref else _base_file(base, "SegmentURL without @media")
        else:
            media = a.get("media")
            if not media:
                raise ManifestError("SegmentTemplate without @media")
            ref = expand_template(media, rep_id=rep_id, number=number, bandwidth=bandwidth, time=t)
            key = _resolve_against(base, ref)
        start = to_ms(t)
        end = to_ms(t + d)
        if info.timeline is None and period_end_ms is not None:
            end = min(end, period_end_ms)
            if end <= start:
                break
        segments.append(Segment(key=key, start_ms=start, end_ms=end, number=number, byte_range=byte_range,
                                media_start_ms=t * 1000.0 / timescale))

    init_key = None
    init_ref = a.get("initialization") if kind == "SegmentTemplate" else None
    if init_ref is None:
        init_ref = info.init
    if init_ref:
        init_key = _resolve_against(
            base, expand_template(init_ref, rep_id=rep_id, bandwidth=bandwidth, number=start_number, time=0)
        )
    elif info.init_range is not None:  # Initialization@range without @sourceURL: a range of the BaseURL file
        init_key = _base_file(base, "Initialization@range")
    init = Part(init_key, info.init_range) if init_key else None
    return init, segments


def _single_file(*, info: _Seg, base: str, period_start_ms: float, period_end_ms: float | None,
                 start_number: int, fetch_range: FetchRange | None) -> tuple[Part | None, list[Segment]]:
    """A representation in one file (SegmentBase, or a bare BaseURL).

    With a segment index (SegmentBase@indexRange, else a sidx box found at the start of the
    file) and a way to read it (`fetch_range`), every indexed subsegment becomes a Segment
    naming its byte range, and the initialization the bytes Initialization@range (or those
    before the index); otherwise the whole file is one segment spanning the period.
    """
    a = info.attrs
    key = _base_file(base, "representation without segment information")
    index_range = _byte_range(a.get("indexRange"), "SegmentBase@indexRange")
    init_range = info.init_range
    index = None
    if fetch_range is not None:
        if index_range is None:
            index_range, found_init = _find_index(fetch_range, key)
            init_range = init_range or found_init
        if index_range is not None:
            index = read_segment_index(fetch_range, key, *index_range)
    if index is None or not index[1]:
        if period_end_ms is None:
            raise ManifestError("single-file representation without a known duration")
        return None, [Segment(key=key, start_ms=period_start_ms, end_ms=period_end_ms, number=start_number)]
    sidx_timescale, refs = index
    try:
        timescale = int(a.get("timescale", "1") or 1)
        pto = int(a.get("presentationTimeOffset", "0") or 0)
    except ValueError as e:
        raise ManifestError(f"invalid SegmentBase {a}") from e
    pto_ms = pto * 1000.0 / max(1, timescale)
    segments = []
    for i, (first, last, t, d) in enumerate(refs):
        start = period_start_ms + t * 1000.0 / sidx_timescale - pto_ms
        end = start + d * 1000.0 / sidx_timescale
        if period_end_ms is not None:
            if start >= period_end_ms:
                break
            end = min(end, period_end_ms)
        segments.append(Segment(key=key, start_ms=start, end_ms=end, number=start_number + i, byte_range=(first, last),
                                media_start_ms=t * 1000.0 / sidx_timescale))
    if init_range is None:
        init_range = (0, index_range[0] - 1) if index_range[0] > 0 else None
    init_key = _resolve_against(base, info.init) if info.init else key
    init = Part(init_key, init_range) if (init_range is not None or info.init) else None
    return init, segments


def parse_mpd(text: bytes | str, *, base_dir: str, now_ms: float | None = None,
              fetch_range: FetchRange | None = None) -> Recording:
    """Parse a DASH MPD.

    Per Period, the video representation with the highest bandwidth (over all video adaptation
    sets; a representation muxing video and audio counts as video) and the audio representation
    with the highest bandwidth are kept; what a representation holds is told by @contentType,
    then @codecs, then the media itself (read with `fetch_range`), then @mimeType; text, image
    (thumbnail tiles), metadata and trick-play adaptation sets are ignored.  Periods are joined
    into one timeline per kind; segments of periods with different initialization segments name
    their own (Segment.init).

    ``now_ms`` (epoch ms, default: the current time) bounds open-ended timelines of dynamic
    MPDs (S@r=-1 as last entry, SegmentTemplate@duration without a period duration).
    ``fetch_range`` reads segment indexes (SegmentBase@indexRange) and probes representations
    the manifest does not describe; without it a SegmentBase representation is one segment.
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

        computed: dict[int, tuple[Part | None, list[Segment]]] = {}

        def segments_of(order: int, aset: ET.Element, rep: ET.Element, bw: int, *, p=p, pbase=pbase,
                        pstart=pstart, pend=pend, computed=computed):
            if order not in computed:
                abase = pbase
                for b in _children(aset, "BaseURL")[:1]:
                    abase = _join_base(abase, b.text or "")
                rbase = abase
                for b in _children(rep, "BaseURL")[:1]:
                    rbase = _join_base(rbase, b.text or "")
                seg_kind, info = _merge_seginfo((p, aset, rep))
                computed[order] = _rep_segments(
                    kind=seg_kind, info=info, base=rbase, rep_id=rep.get("id", ""), bandwidth=bw,
                    period_start_ms=pstart, period_end_ms=pend, dynamic=dynamic, now_rel_ms=now_rel_ms,
                    tsbd_ms=tsbd_ms, fetch_range=fetch_range,
                )
            return computed[order]

        cands = []  # (kind, bandwidth, order, aset, rep)
        order = 0
        for aset in _children(p, "AdaptationSet"):
            for rep in _children(aset, "Representation"):
                order += 1
                k = _classify(aset, rep)
                if k is None:
                    continue
                try:
                    bw = int(rep.get("bandwidth") or 0)
                except ValueError:
                    bw = 0
                if k == "?":
                    k = None
                    if fetch_range is not None:
                        init, segs = segments_of(order, aset, rep, bw)
                        k = _probe_kind(fetch_range, init, segs[0] if segs else None)
                    if k is None:
                        k = _kind_from_attributes(aset, rep)
                    if k is None:
                        continue
                cands.append((k, bw, order, aset, rep))
        chosen = []
        video = [c for c in cands if c[0] in ("video", "muxed")]
        audio = [c for c in cands if c[0] == "audio"]
        for group, group_cands in (("video", video), ("audio", audio)):
            if group_cands:  # the highest bandwidth; the first of equal ones
                chosen.append((group, max(group_cands, key=lambda c: (c[1], -c[2]))))
        for group, (kind, bw, order, aset, rep) in chosen:
            init, segs = segments_of(order, aset, rep, bw)
            codecs = rep.get("codecs") or aset.get("codecs") or ""
            per_kind.setdefault(group, []).append((kind, init, segs, codecs, bw, rep.get("id", "")))

    tracks = []
    for group in ("video", "audio"):
        parts = per_kind.get(group)
        if not parts:
            continue
        first = parts[0]
        inits = {pt[1] for pt in parts}
        segs: list[Segment] = []
        if len(inits) == 1:
            init = first[1]
            for pt in parts:
                segs.extend(pt[2])
        else:  # periods with their own initialization segments (or none)
            init = None
            for pt in parts:
                segs.extend(replace(s, init=pt[1]) if pt[1] is not None else s for s in pt[2])
        tracks.append(Track(kind=first[0], init_key=init.key if init else None, segments=tuple(segs),
                            codecs=first[3], bandwidth=first[4], representation_id=first[5],
                            init_range=init.byte_range if init else None))
    if not tracks:
        raise ManifestError("MPD has no video or audio representation")
    if origin_ms is None and tracks[0].segments:
        tracks = _starting_at_zero(tracks)
    duration = tracks[0].segments[-1].end_ms if tracks[0].segments else 0.0
    return Recording(kind="dash", origin_ms=origin_ms, tracks=tuple(tracks), duration_ms=duration, dynamic=dynamic)


def _starting_at_zero(tracks: list[Track]) -> list[Track]:
    """Without a wall-clock origin, recording time 0 is the start of the first media segment of
    the first track (a timeline whose media time starts at 1.7e9 s starts at 0 all the same)."""
    shift = tracks[0].segments[0].start_ms
    if not shift:
        return tracks
    return [replace(t, segments=tuple(replace(s, start_ms=s.start_ms - shift, end_ms=s.end_ms - shift)
                                      for s in t.segments)) for t in tracks]


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


def _hls_byterange(value: str, what: str) -> tuple[int, int | None]:
    """HLS "n[@o]" -> (length, offset or None)."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:@\s*(\d+)\s*)?", value)
    if not m or int(m.group(1)) <= 0:
        raise ManifestError(f"invalid {what} {value!r} (expected 'length[@offset]')")
    return int(m.group(1)), (int(m.group(2)) if m.group(2) is not None else None)


_HLS_KEY_FORMAT = "identity"  # the only EXT-X-KEY KEYFORMAT read: the key is the object at the URI


def _hls_key(attrs: dict[str, str], base: str, line: str) -> tuple[str, bytes | None] | None:
    """An EXT-X-KEY tag -> (storage key of the AES-128 key, its IV or None when the tag gives
    none), or None for METHOD=NONE (the segments that follow are not encrypted)."""
    method = attrs.get("METHOD", "NONE").upper()
    if method == "NONE":
        return None
    if method != "AES-128":
        raise ManifestError(f"encrypted HLS (METHOD={method}) is not supported, only AES-128")
    key_format = attrs.get("KEYFORMAT", _HLS_KEY_FORMAT)
    if key_format != _HLS_KEY_FORMAT:
        raise ManifestError(f"{line!r}: KEYFORMAT {key_format} is not supported, only {_HLS_KEY_FORMAT} "
                            "(a key stored beside the recording)")
    if not attrs.get("URI"):
        raise ManifestError(f"{line!r} has no URI")
    iv = None
    if "IV" in attrs:
        m = re.fullmatch(r"0[xX]([0-9a-fA-F]{1,32})", attrs["IV"].strip())
        if not m:
            raise ManifestError(f"invalid IV in {line!r} (expected 0x and at most 32 hexadecimal digits)")
        iv = int(m.group(1), 16).to_bytes(16, "big")
    return resolve_key(base, attrs["URI"]), iv


def _segment_encryption(key: tuple[str, bytes | None] | None, sequence: int) -> Encryption | None:
    """The encryption of the segment with media sequence number `sequence` under the EXT-X-KEY in
    effect: without an IV attribute, the IV is that number as a 128-bit big-endian integer."""
    if key is None:
        return None
    uri, iv = key
    return Encryption(uri, iv if iv is not None else sequence.to_bytes(16, "big"))


def _map_encryption(key: tuple[str, bytes | None] | None, line: str) -> Encryption | None:
    """The encryption of an EXT-X-MAP under the EXT-X-KEY in effect (which must give the IV)."""
    if key is None:
        return None
    uri, iv = key
    if iv is None:
        raise ManifestError(f"{line!r} is encrypted with AES-128 but its EXT-X-KEY has no IV, "
                            "which an encrypted EXT-X-MAP needs")
    return Encryption(uri, iv)


def parse_m3u8(text: bytes | str, *, base_dir: str) -> Recording:
    """Parse an HLS media playlist (a master playlist raises ManifestError).

    Segments may be byte ranges of a resource (#EXT-X-BYTERANGE, with or without an offset)
    and have the initialization in effect (#EXT-X-MAP, possibly a BYTERANGE of a resource;
    it may change mid-playlist, and MPEG-TS segments before the first one have none).  An
    #EXT-X-GAP segment is left out (its time counts as lacking).  Segments and initializations
    under an #EXT-X-KEY METHOD=AES-128 carry their Encryption (the key's URI resolved like a
    segment's; the IV given, else the segment's media sequence number) until the next
    EXT-X-KEY (METHOD=NONE: no encryption).
    """
    lines = _hls_lines(text)
    if _is_master(lines):
        raise ManifestError("this is an HLS master playlist, not a media playlist")
    base = base_dir.strip("/")
    media_seq = 0
    t = 0.0
    dur: float | None = None
    gap = False
    origin: int | None = None
    init: Part | None = None
    aes_key: tuple[str, bytes | None] | None = None  # the EXT-X-KEY in effect (see _hls_key)
    byterange: tuple[int, int | None] | None = None
    next_offset: dict[str, int] = {}  # resource -> the byte after its last sub-range
    endlist = False
    playlist_type = ""
    entries: list[tuple[Segment, Part | None]] = []
    idx = 0
    for ln in lines[1:]:
        if ln.startswith("#"):
            tag, _, value = ln.partition(":")
            if tag in ("#EXT-X-MEDIA-SEQUENCE", "#EXT-X-DISCONTINUITY-SEQUENCE"):
                try:
                    number = int(value)
                except ValueError as e:
                    raise ManifestError(f"invalid {ln!r}") from e
                if tag == "#EXT-X-MEDIA-SEQUENCE":
                    media_seq = number
            elif tag == "#EXTINF":
                try:
                    dur = float(value.split(",")[0])
                except ValueError as e:
                    raise ManifestError(f"invalid {ln!r}") from e
                if dur < 0 or not math.isfinite(dur):
                    raise ManifestError(f"invalid duration in {ln!r}")
            elif tag == "#EXT-X-PROGRAM-DATE-TIME":
                if origin is None:
                    origin = int(round(parse_datetime_ms(value) - t))
            elif tag == "#EXT-X-MAP":
                a = _attrs(value)
                if not a.get("URI"):
                    raise ManifestError(f"{ln!r} has no URI")
                key = resolve_key(base, a["URI"])
                map_range = None
                if "BYTERANGE" in a:
                    n, o = _hls_byterange(a["BYTERANGE"], "EXT-X-MAP BYTERANGE")
                    o = o or 0
                    map_range = (o, o + n - 1)
                init = Part(key, map_range, _map_encryption(aes_key, ln))
            elif tag == "#EXT-X-KEY":
                aes_key = _hls_key(_attrs(value), base, ln)
            elif tag == "#EXT-X-BYTERANGE":
                byterange = _hls_byterange(value, "EXT-X-BYTERANGE")
            elif tag == "#EXT-X-GAP":
                gap = True
            elif tag == "#EXT-X-ENDLIST":
                endlist = True
            elif tag == "#EXT-X-PLAYLIST-TYPE":
                playlist_type = value.strip().upper()
            continue
        if dur is None:
            raise ManifestError(f"segment {ln!r} has no #EXTINF")
        key = resolve_key(base, ln)
        seg_range = None
        if byterange is not None:
            n, o = byterange
            if o is None:  # continues the previous sub-range of the same resource
                o = next_offset.get(key, 0)
            seg_range = (o, o + n - 1)
            next_offset[key] = o + n
        if not gap:
            entries.append((Segment(key=key, start_ms=t * 1.0, end_ms=t + dur * 1000.0, number=media_seq + idx,
                                    byte_range=seg_range,
                                    encryption=_segment_encryption(aes_key, media_seq + idx)), init))
        t += dur * 1000.0
        idx += 1
        dur = None
        gap = False
        byterange = None
    inits = {i for _, i in entries}
    if len(inits) <= 1:  # one initialization (or none) for all segments
        shared = next(iter(inits), None)
        segments = [s for s, _ in entries]
    else:
        shared = None
        segments = [replace(s, init=i) if i is not None else s for s, i in entries]
    track = Track(kind="muxed", init_key=shared.key if shared else None, segments=tuple(segments),
                  init_range=shared.byte_range if shared else None,
                  init_encryption=shared.encryption if shared else None)
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


def load_recording(fetch: Callable[[str], bytes], key: str, *, now_ms: float | None = None,
                   fetch_range: FetchRange | None = None) -> Recording:
    """Fetch and parse the manifest at storage `key` (.mpd or .m3u8, content sniffed).

    For an HLS master playlist the highest-BANDWIDTH variant is fetched (relative to the
    master's directory) and parsed; an AUDIO rendition with its own URI becomes the
    audio track.  ``fetch_range(key, first, last)`` reads the bytes first..last (inclusive)
    of a media file: DASH segment indexes (SegmentBase@indexRange, the sidx box) and
    representations whose kind only their media tells; by default it is read from
    ``fetch(key)`` (the whole object).  Errors raised by `fetch` / `fetch_range` propagate
    unchanged.
    """
    if fetch_range is None:
        def fetch_range(k: str, first: int, last: int) -> bytes:
            return bytes(fetch(k)[first:last + 1])
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
        return parse_mpd(text, base_dir=base_dir, now_ms=now_ms, fetch_range=fetch_range)

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
