"""Telling a damaged segment from a sound one (internal, used by ``_source``).

A segment is *damaged* when what was downloaded cannot be what the recording holds: a file cut
short, bytes overwritten, a segment of another recording or encoding put in its place.  The
sources drop such a segment as if it were missing, so that the rest of a clip is exported.
What is checked, cheapest first:

* **structure**, before anything is demuxed (``structure_problem``): an MPEG-TS segment is whole
  188-byte packets, and its program map declares the video codec of the run's first segment
  (``ts_video_types``); an ISO BMFF (fMP4) segment is a sequence of top-level boxes that ends exactly
  at the end of the file (a truncated ``mdat`` would make the MP4 demuxer read the next segment's
  bytes as samples, and lose its way after it);
* **MPEG-TS sync bytes**, as the demuxer reads the bytes (``ts_sync_ok``; no second pass);
* **NAL units** of the video packets (``VideoCheck.nal_problem``): the first packet of a segment
  and its first keyframe must be pictures of the track's codec, of the NAL unit types it defines
  (a segment of another codec fails here), and every length-prefixed (MP4) packet must be whole
  NAL units, as their lengths say (``framing_ok``: overwritten bytes that hit a length fail here;
  bytes overwritten inside a NAL unit's payload keep the framing intact and are only seen where
  that picture is decoded);
* **the first keyframe decodes** (``VideoCheck.decode_problem``), alone, to a picture of the
  track's size and pixel format, and, when it is an IDR (HEVC: any random access picture),
  without an error with FFmpeg's error detection set to fail (a segment of the same codec at
  another picture size fails here; SEI units are left out of that decode, so that a malformed
  caption or timecode message does not count as damage).  That costs a
  keyframe's decoding per segment: it is done where the clip is decoded anyway (encode,
  thumbnail), and, in a stream copy (which puts every segment into one track, described by the
  first one's parameters), for a segment whose keyframe carries parameter sets that the run has
  not met (``VideoCheck.new_parameter_sets``: a segment of another encoding says so in band; a
  copy also leaves out one whose new sequence parameter set says another profile or level,
  ``VideoCheck.profile_problem``), and for an fMP4 segment whose keyframe carries none
  (``VideoCheck.relies_on_extradata``: decoded with the initialization's, the keyframe of another
  encoding at another size does not decode, or decodes to another size) when it is the run's first
  or its size is far from the last keyframes' (``_source.TrackSource._unlike_keyframes``: decoding
  every one would cost a copy more than the copy).  A keyframe without
  parameter sets is decoded with the initialization's (MP4) or the last sound ones (MPEG-TS), in
  band: a decoder keeps those of the last keyframe it was given.  Bytes overwritten inside a
  picture's data are taken as they are by a stream copy (the decoders conceal them).

Where the content of a segment is only partly there (a TS segment truncated on a packet
boundary), the sources also compare the time its video covers with the time until the next
segment (``_source``), and read its first and last packets (``ts_edges``): a last PES packet
shorter than the length it declares (``ts_open_pes_problem``; such a segment is left out before
demuxing, as one that is not whole packets), or continuity counters that jump from it to the next
segment where the recording's muxer runs them on (``ts_counter_problem``), say that its end is
lost, however little of its time that is.
"""
from __future__ import annotations

from typing import BinaryIO, Callable, Iterable, Sequence

import av

from ._nal import Nal, is_length_prefixed, nal_length_size

__all__ = ["TS_HEAD", "TS_PACKET", "TsEdges", "VideoCheck", "is_mpegts_head", "piece_format", "structure_problem",
           "ts_counter_problem", "ts_edges", "ts_open_pes_problem", "ts_sync_ok", "ts_video_types"]

TS_PACKET = 188
_SYNC = 0x47

# H.264 NAL unit types a stream may carry (7.4.1; 2-4: data partitioning, which FFmpeg does not
# decode, and the reserved / unspecified types are not), and those that are pictures
_H264_TYPES = frozenset({1, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 19, 20, 21})
_H264_VCL = frozenset({1, 5, 20})
_H264_SEI = frozenset({6})
_H264_IDR = frozenset({5})
# HEVC (7.4.2.2): VCL 0-9 and 16-21 (the others reserved), non-VCL 32-40 (41-63 reserved / unspecified)
_HEVC_VCL = frozenset(range(0, 10)) | frozenset(range(16, 22))
_HEVC_TYPES = _HEVC_VCL | frozenset(range(32, 41))
_HEVC_SEI = frozenset({39, 40})
_HEVC_IRAP = frozenset(range(16, 22))  # BLA, IDR, CRA


def is_mpegts_head(head: bytes) -> bool:
    """Whether the first bytes of a part are MPEG-TS (sync bytes 188 bytes apart)."""
    return head[:1] == b"\x47" and (len(head) <= TS_PACKET or head[TS_PACKET] == _SYNC)


def ts_sync_ok(data, offset: int) -> bool:
    """Whether the bytes `data` (a bytes-like object), which start at byte `offset` of an MPEG-TS
    part, have a sync byte wherever a packet starts."""
    first = -offset % TS_PACKET
    if first >= len(data):
        return True
    syncs = bytes(memoryview(data)[first::TS_PACKET])
    return not syncs.strip(b"\x47")


# MPEG-TS stream_type values of video (ISO 13818-1 table 2-34 and its amendments)
_TS_VIDEO_TYPES = frozenset({0x01, 0x02, 0x10, 0x1B, 0x1F, 0x20, 0x24, 0x25, 0x33, 0x42, 0xD1, 0xEA})
TS_HEAD = TS_PACKET * 16  # bytes of a TS segment read to find its program map


def ts_video_types(head: bytes) -> frozenset[int] | None:
    """The stream types of the video streams the first program map of an MPEG-TS part declares
    (in its first bytes, `head`); None when none is found there.

    A segment of another codec has another program map: FFmpeg's demuxer would read its video
    with the codec (and the parser) of the recording's, merging its first picture into the last
    one of the segment before."""
    packets = [head[i:i + TS_PACKET] for i in range(0, len(head) - TS_PACKET + 1, TS_PACKET)]

    def section(pid: int) -> bytes | None:
        for p in packets:
            if p[0] != _SYNC or ((p[1] & 0x1F) << 8 | p[2]) != pid or not p[1] & 0x40:
                continue
            at = 4
            if p[3] & 0x20:  # adaptation field
                at += 1 + p[4]
            if at >= TS_PACKET:
                continue
            at += 1 + p[at]  # pointer field
            return p[at:]
        return None

    pat = section(0)
    if pat is None or len(pat) < 12 or pat[0] != 0x00:
        return None
    end = min(len(pat), 3 + ((pat[1] & 0x0F) << 8 | pat[2])) - 4
    pmt_pid = None
    for i in range(8, end - 3, 4):
        if pat[i] << 8 | pat[i + 1]:  # (program 0: the network PID)
            pmt_pid = (pat[i + 2] & 0x1F) << 8 | pat[i + 3]
            break
    pmt = section(pmt_pid) if pmt_pid is not None else None
    if pmt is None or len(pmt) < 16 or pmt[0] != 0x02:
        return None
    end = min(len(pmt), 3 + ((pmt[1] & 0x0F) << 8 | pmt[2])) - 4
    i = 12 + ((pmt[10] & 0x0F) << 8 | pmt[11])
    types = set()
    while i + 5 <= end:
        if pmt[i] in _TS_VIDEO_TYPES:
            types.add(pmt[i])
        i += 5 + ((pmt[i + 3] & 0x0F) << 8 | pmt[i + 4])
    return frozenset(types)


TS_HEAD_EDGE = 256  # packets read at the start of an MPEG-TS segment (ts_edges): 48 kB
TS_TAIL_EDGE = 512  # and at its end: 96 kB (a PES packet that declares its length holds 64 kB at most)


class TsEdges:
    """What the packets at both ends of an MPEG-TS segment say of its PIDs (see ts_edges)."""

    __slots__ = ("declared", "first", "last", "open_pes")

    def __init__(self):
        # PID -> (continuity counter, starts a PES packet, discontinuity indicator) of its first packet
        # with a payload
        self.first: dict[int, tuple[int, bool, bool]] = {}
        self.last: dict[int, int] = {}  # PID -> continuity counter of its last packet with a payload
        # PIDs whose last PES packet (audio or video) declares its length, and those of them whose last
        # PES packet has fewer bytes than it declares: PID -> (bytes there, bytes declared)
        self.declared: set[int] = set()
        self.open_pes: dict[int, tuple[int, int]] = {}


def _read_at(f: BinaryIO, pos: int, n: int) -> bytes:
    f.seek(pos)
    chunks = []
    while n > 0:
        b = f.read(n)
        if not b:
            break
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


def ts_edges(open_piece: Callable[[], BinaryIO], size: int) -> TsEdges:
    """The first and last packets of an MPEG-TS segment of `size` bytes (TS_HEAD_EDGE and
    TS_TAIL_EDGE of them), read for what they say of its end: whether its last PES packets are
    whole (a PES packet that declares its length: audio, and video where the muxer writes it), and
    the continuity counters that the next segment's first packets continue when the recording's
    muxer runs them on from segment to segment.  A segment truncated on a packet boundary keeps a
    sound structure; those tell.  Packets without a payload (the counter does not count them), null
    packets and packets without their sync byte are left out."""
    n = size // TS_PACKET
    with open_piece() as f:
        head = _read_at(f, 0, min(n, TS_HEAD_EDGE) * TS_PACKET)
        tail = _read_at(f, (n - min(n, TS_TAIL_EDGE)) * TS_PACKET, min(n, TS_TAIL_EDGE) * TS_PACKET)
    e = TsEdges()
    first = e.first
    for i in range(0, len(head) - TS_PACKET + 1, TS_PACKET):
        b1, b3 = head[i + 1], head[i + 3]
        pid = (b1 & 0x1F) << 8 | head[i + 2]
        if pid in first or head[i] != _SYNC or pid == 0x1FFF or not b3 & 0x10:
            continue
        disc = bool(b3 & 0x20 and head[i + 4] and head[i + 5] & 0x80)
        first[pid] = (b3 & 0x0F, bool(b1 & 0x40), disc)
    # the tail from its end: each PID's last counter, and the payload bytes from its last PES packet's start
    last = e.last
    after: dict[int, int] = {}  # PID -> payload bytes after the packet read, until its last PES packet's start
    found: set[int] = set()  # PIDs whose last PES packet's (or section's) start was read
    for i in range(len(tail) - TS_PACKET, -1, -TS_PACKET):
        b1, b3 = tail[i + 1], tail[i + 3]
        pid = (b1 & 0x1F) << 8 | tail[i + 2]
        if pid in found or tail[i] != _SYNC or pid == 0x1FFF or not b3 & 0x10:
            continue
        at = 4
        if b3 & 0x20:  # adaptation field
            at = 5 + tail[i + 4]
            if at >= TS_PACKET:
                continue
        if pid not in last:
            last[pid] = b3 & 0x0F
        have = after.get(pid, 0) + TS_PACKET - at
        if not b1 & 0x40:
            after[pid] = have
            continue
        found.add(pid)
        p = i + at
        if at + 6 <= TS_PACKET and tail[p:p + 3] == b"\x00\x00\x01" and 0xC0 <= tail[p + 3] <= 0xEF:
            length = tail[p + 4] << 8 | tail[p + 5]
            if length:
                e.declared.add(pid)
                if have < 6 + length:
                    e.open_pes[pid] = (have, 6 + length)
    return e


def ts_open_pes_problem(edges: TsEdges, nxt: TsEdges | None, witness: TsEdges | None,
                        pids: Iterable[int]) -> str | None:
    """Why an MPEG-TS segment (its `edges`) is cut short, from the last PES packet of one of the
    streams `pids` that has fewer bytes than its header declares (None: none has).  Such a PES packet
    is the end of a truncated file, unless the next segment (`nxt`, the segment that follows without
    a gap, when there is one) goes on with it (a packager that splits PES packets between segments).
    A segment next to it (`witness`) must end on whole PES packets of that stream: a muxer that writes
    wrong lengths is not taken for damage."""
    for pid in pids:
        if pid not in edges.open_pes:
            continue
        have, need = edges.open_pes[pid]
        if nxt is not None and pid in nxt.first and pid in edges.last:
            cc, start, disc = nxt.first[pid]
            if not start and (disc or (cc - edges.last[pid]) % 16 == 1):
                continue  # (the PES packet goes on in the next segment)
        if witness is None or pid not in witness.declared or pid in witness.open_pes:
            continue
        return f"it is cut short (its last PES packet of PID 0x{pid:x} has {have} of its {need} bytes)"
    return None


def ts_counter_jumps(edges: TsEdges, nxt: TsEdges, pids: Iterable[int]) -> list[int]:
    """The PIDs among `pids` whose continuity counters do not run on from the end of a segment
    (`edges`) to the start of the next one (`nxt`)."""
    out = []
    for pid in pids:
        if pid in edges.last and pid in nxt.first:
            cc, _, disc = nxt.first[pid]
            if not disc and (cc - edges.last[pid]) % 16 != 1:
                out.append(pid)
    return out


def _counters_run_on(edges: TsEdges, nxt: TsEdges, pids: Iterable[int]) -> bool:
    """Whether the continuity counters of the streams `pids` run on from one segment to the next
    (for one of them at least, and for all of those both segments have)."""
    compared = [pid for pid in pids if pid in edges.last and pid in nxt.first]
    return bool(compared) and not ts_counter_jumps(edges, nxt, compared)


def ts_counter_problem(prev: TsEdges, edges: TsEdges, nxt: TsEdges, then: TsEdges,
                       pids: Sequence[int]) -> str | None:
    """Why an MPEG-TS segment (its `edges`) lost packets at its end, from continuity counters (None:
    they do not say): those of a stream of `pids` jump from it to the next segment (`nxt`, which
    continues its timeline, and starts that stream on a PES packet: the packets lost are this one's),
    while the recording's muxer runs them on from segment to segment, as from the segment before it
    (`prev`) to it, and from the next segment to the one after that (`then`).  A muxer that starts them
    again in each segment says nothing, and neither does a segment of another recording (its counters
    jump at both its ends), nor one next to it, nor a next segment whose counters all start at 0 (a
    muxer started again).  Packets lost sixteen at a time, for every stream, are not seen."""
    jumps = ts_counter_jumps(edges, nxt, pids)
    if not jumps or any(not nxt.first[pid][1] for pid in jumps):
        return None
    if all(nxt.first[pid][0] == 0 for pid in pids if pid in nxt.first):
        return None  # (a muxer started again, its timestamps going on: its counters start at 0)
    if not _counters_run_on(prev, edges, pids) or not _counters_run_on(nxt, then, pids):
        return None
    pid = jumps[0]
    return (f"it is cut short (MPEG-TS packets of PID 0x{pid:x} are missing at its end: continuity counter "
            f"{edges.last[pid]}, then {nxt.first[pid][0]} in the next segment)")


def _printable(kind: bytes) -> bool:
    return all(0x20 <= c < 0x7F for c in kind)


def structure_problem(open_piece: Callable[[], BinaryIO], size: int, fmt: str) -> str | None:
    """Why a segment of `size` bytes in format `fmt` ("ts", "mp4" or anything else: not checked)
    cannot be whole (None: it can be)."""
    if size == 0:
        return "it is empty"
    if fmt == "ts":
        with open_piece() as f:
            head = f.read(TS_PACKET + 1)
        if not is_mpegts_head(head):
            return "it does not start with an MPEG-TS packet"
        if size % TS_PACKET:
            return f"it is cut short ({size} bytes is not a whole number of MPEG-TS packets)"
        return None
    if fmt != "mp4":
        return None
    pos = 0
    boxes = 0
    with open_piece() as f:
        while pos < size:
            if size - pos < 8:
                return f"{size - pos} bytes follow its last box"
            f.seek(pos)
            header = f.read(16)
            box = int.from_bytes(header[:4], "big")
            kind = header[4:8]
            if not _printable(kind):
                return f"its bytes at {pos} are not an MP4 box"
            if box == 1:
                if len(header) < 16:
                    return "it is cut short"
                box = int.from_bytes(header[8:16], "big")
            elif box == 0:
                box = size - pos  # (the box runs to the end of the file)
            if box < 8:
                return f"its {kind.decode('latin-1')!r} box at {pos} has a size of {box} bytes"
            if pos + box > size:
                return (f"it is cut short or overwritten (its {kind.decode('latin-1')!r} box at {pos} needs {box} "
                        f"bytes, {size - pos} are there)")
            pos += box
            boxes += 1
            if boxes > 100_000:
                return None  # (not worth checking further)
    return None


def piece_format(head: bytes) -> str:
    """"ts", "mp4" (ISO BMFF: an fMP4 initialization or media segment) or "other", from a part's
    first bytes (189 of them)."""
    if is_mpegts_head(head):
        return "ts"
    if len(head) >= 8 and head[4:8].isalnum() and (int.from_bytes(head[:4], "big") in (0, 1)
                                                   or int.from_bytes(head[:4], "big") >= 8):
        return "mp4"
    return "other"


def _rbsp_head(unit: bytes, n: int) -> bytes:
    """The first `n` bytes of a NAL unit (its header included) without emulation prevention bytes."""
    out = bytearray()
    zeros = 0
    for b in unit:
        if zeros >= 2 and b == 3:
            zeros = 0
            continue
        out.append(b)
        if len(out) >= n:
            break
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


_H264_PROFILES = {66: "Baseline", 77: "Main", 88: "Extended", 100: "High", 110: "High 10", 122: "High 4:2:2",
                  244: "High 4:4:4"}


def _profile_level(sps: bytes, hevc: bool) -> tuple[int, int] | None:
    """(profile, level) of a sequence parameter set NAL unit: H.264 profile_idc and level_idc; HEVC
    the byte of general_profile_space, general_tier_flag and general_profile_idc, and
    general_level_idc.  None when it is too short."""
    if hevc:
        r = _rbsp_head(sps, 15)
        return (r[3], r[14]) if len(r) == 15 else None
    r = _rbsp_head(sps, 4)
    return (r[1], r[3]) if len(r) == 4 else None


def _profile_text(profile: tuple[int, int], hevc: bool) -> str:
    p, level = profile
    if hevc:
        return f"profile {p & 0x1F}{' high tier' if p & 0x20 else ''}, level {level / 30:g}"
    return f"{_H264_PROFILES.get(p, f'profile {p}')}, level {level / 10:g}"


class VideoCheck:
    """The video checks of one run of segments (one demuxer, one set of codec parameters)."""

    def __init__(self, stream):
        cc = stream.codec_context
        self.codec = cc.name if cc.name in ("h264", "hevc") else None
        self.width, self.height = cc.width, cc.height
        self.pix_fmt = cc.pix_fmt
        self.extradata = cc.extradata
        self.length_size = (nal_length_size(self.codec, self.extradata)
                            if self.codec is not None and is_length_prefixed(self.extradata) else None)
        if self.codec == "hevc":
            self.types, self.vcl, self.sei, self.idr = _HEVC_TYPES, _HEVC_VCL, _HEVC_SEI, _HEVC_IRAP
        else:
            self.types, self.vcl, self.sei, self.idr = _H264_TYPES, _H264_VCL, _H264_SEI, _H264_IDR
        self.nal = Nal(self.codec) if self.codec is not None else None
        self._decoders: dict[bool, av.CodecContext] = {}  # strict (error detection set to fail) or not
        # Annex B parameter sets met in band, in a keyframe that decodes to the track's pictures (MPEG-TS
        # keyframes without them get them), and the initialization's, length-prefixed (MP4 keyframes without
        # them get them)
        sets = [bytes(u) for u in self.nal.from_extradata(self.extradata) if u] if self.nal else []
        self._sets = self.nal.annexb_sets(sets) if self.nal and self.length_size is None else b""
        self._init_sets = b"".join(
            len(u).to_bytes(self.length_size, "big") + u for t in self.nal.ps_types for u in sets
            if self.nal.kind(u[0]) == t) if self.length_size is not None else b""
        # the parameter-set NAL units of segments found sound (and of the initialization)
        self.known_sets: set[bytes] = set(sets)
        # the profile and level of the track's (first) sequence parameter set, of its initialization or of
        # the keyframe FFmpeg took its parameters from: None when there is none to read
        sps = [u for u in sets if self.nal.kind(u[0]) == self.nal.sps]
        self.profile = _profile_level(sps[0], self.codec == "hevc") if sps else None

    @property
    def active(self) -> bool:
        return self.codec is not None

    def new_parameter_sets(self, data) -> frozenset[bytes]:
        """The parameter sets a keyframe carries in band that are not among `known_sets` (a segment
        with new ones is decoded: its pictures may not be the recording's size)."""
        units = self._units(data)
        if not units:
            return frozenset()
        return frozenset(bytes(data[s:e]) for t, s, e in units if t in self.nal.ps_types) - self.known_sets

    def relies_on_extradata(self, data) -> bool:
        """Whether a keyframe of length-prefixed (MP4) packets carries no sequence parameter set: it is
        decoded with those of the initialization, which say nothing of its own picture size (a segment
        of another encoding at another size is only seen where it is decoded)."""
        if not self.active or self.length_size is None:
            return False
        units = self._units(data)
        return bool(units) and not any(t == self.nal.sps for t, _, _ in units)

    def profile_problem(self, sets: frozenset[bytes]) -> str | None:
        """Why parameter sets a segment brings in band (new ones, see new_parameter_sets) are not of
        the track's encoding: a sequence parameter set of another profile or level than the track's
        (None: they are, or there is nothing to compare).  Its picture size and format are those of
        its decoded keyframe (decode_problem)."""
        if self.profile is None:
            return None
        hevc = self.codec == "hevc"
        for u in sets:
            if self.nal.kind(u[0]) != self.nal.sps:
                continue
            found = _profile_level(u, hevc)
            if found is not None and found != self.profile:
                return (f"its video is of another {self.codec.upper()} profile or level ({_profile_text(found, hevc)}, "
                        f"the recording's {_profile_text(self.profile, hevc)})")
        return None

    # -- NAL units ----------------------------------------------------------------------------
    def _units(self, data) -> list[tuple[int, int, int]] | None:
        """(type, start, end) of the NAL units of a packet; None when length-prefixed NAL units do
        not fill the packet exactly."""
        if self.length_size is None:
            return self.nal.units(bytes(data))
        n = self.length_size
        size = len(data)
        out = []
        i = 0
        hevc = self.codec == "hevc"
        while i < size:
            if i + n > size:
                return None
            length = int.from_bytes(data[i:i + n], "big")
            s = i + n
            i = s + length
            if length == 0 or i > size:
                return None
            header = data[s]
            out.append(((header >> 1) & 0x3F if hevc else header & 0x1F, s, i))
        return out

    def framing_ok(self, data) -> bool:
        """Whether a length-prefixed packet is whole NAL units, as their lengths and headers say
        (always True for Annex B packets: their framing is the MPEG-TS one, checked by the sync
        bytes).  The NAL unit types are not checked here: a stream may carry types this module
        does not expect, and only its segments' first packets are held to them (nal_problem)."""
        n = self.length_size
        if n is None:
            return True
        size = len(data)
        i = 0
        while i < size:
            s = i + n
            if s >= size:
                return False
            length = int.from_bytes(data[i:s], "big")
            if not length or data[s] & 0x80:  # (forbidden_zero_bit)
                return False
            i = s + length
        return i == size

    def nal_problem(self, data, key: bool) -> str | None:
        """Why a packet (the first of a segment, or its first keyframe) is not a picture of this
        track's codec (None: it is)."""
        if not self.active:
            return None
        units = self._units(data)
        if units is None:
            return "its first video packet is not whole NAL units"
        if not units:
            return "its first video packet holds no NAL unit"
        hevc = self.codec == "hevc"
        for t, s, e in units:
            if data[s] & 0x80 or t not in self.types or (hevc and (e - s < 2 or not data[s + 1] & 0x07)):
                return f"its video is not {self.codec.upper()} (NAL unit type {t})"
        if not any(t in self.vcl for t, _, _ in units):
            return f"its video is not {self.codec.upper()} (a packet without a picture)"
        return None

    # -- decoding ------------------------------------------------------------------------------
    def keyframe_problem(self, data: bytes, sets: frozenset[bytes] = frozenset()) -> str | None:
        """decode_problem of the first keyframe of a segment, then profile_problem of the new
        parameter sets `sets` it brings (a stream copy's: a decoder takes another profile)."""
        return self.decode_problem(data) or (self.profile_problem(sets) if sets else None)

    def decode_problem(self, data: bytes) -> str | None:
        """Why the first keyframe of a segment (its bytes as demuxed) does not decode, alone, to a
        picture of this track's size and format (None: it does)."""
        if not self.active:
            return None
        units = self._units(data)
        if units is None:
            return "its first keyframe is not whole NAL units"
        own_sps = any(t == self.nal.sps for t, _, _ in units)
        kept = [(s, e) for t, s, e in units if t not in self.sei]
        # a keyframe without parameter sets of its own is given those it depends on in band: the decoder
        # keeps the last ones it was given, which may be those of a keyframe found of another encoding
        if self.length_size is None:
            body = b"".join(b"\x00\x00\x00\x01" + data[s:e] for s, e in kept)
            if not own_sps:
                body = self._sets + body
        else:
            n = self.length_size
            body = b"".join(data[s - n:e] for s, e in kept)
            if not own_sps:
                body = self._init_sets + body
        # an IDR (HEVC: any random access picture) decodes alone without an error; an H.264 open-GOP
        # keyframe (a non-IDR I picture) may carry reference marking that names pictures before it,
        # which a decoder starting there reports: it is only held to its picture size
        strict = any(t in self.idr for t, _, _ in units)
        dec = self._decoders.get(strict)
        if dec is None:
            dec = self._decoders[strict] = av.CodecContext.create(self.codec, "r")
            if self.extradata:
                dec.extradata = self.extradata
            dec.thread_count = 1
            if strict:
                dec.options = {"err_detect": "explode"}
        try:
            frames = dec.decode(av.Packet(body))
            frames += dec.decode(None)
        except av.error.FFmpegError as e:
            return f"its first keyframe does not decode ({e.strerror or e})"
        finally:
            dec.flush_buffers()
        for f in frames:
            if (self.width and (f.width, f.height) != (self.width, self.height)) or (
                    self.pix_fmt and f.format.name != self.pix_fmt):
                return (f"its pictures are {f.width}x{f.height} {f.format.name}, the recording's "
                        f"{self.width}x{self.height} {self.pix_fmt}")
        if self.length_size is None and own_sps:
            self._sets = self.nal.annexb_sets([data[s:e] for t, s, e in units if t in self.nal.ps_types])
        return None

    def close(self) -> None:
        self._decoders.clear()
