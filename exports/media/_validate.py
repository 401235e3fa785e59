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
  thumbnail), and, in a stream copy, for a segment whose keyframe carries parameter sets that
  the run has not met (``VideoCheck.new_parameter_sets``: an MPEG-TS segment of another
  encoding says so in band).  A stream copy therefore takes as it is an fMP4 segment of the same
  codec at another picture size that relies on the initialization's parameter sets, and bytes
  overwritten inside a picture's data (the decoders conceal them).

Where the content of a segment is only partly there (a TS segment truncated on a packet
boundary), the sources also compare the time its video covers with the time until the next
segment (``_source``).
"""
from __future__ import annotations

from typing import BinaryIO, Callable

import av

from ._nal import Nal, is_length_prefixed, nal_length_size

__all__ = ["TS_HEAD", "TS_PACKET", "VideoCheck", "is_mpegts_head", "piece_format", "structure_problem", "ts_sync_ok",
           "ts_video_types"]

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
        self._sets = b""  # Annex B parameter sets met in band (MPEG-TS keyframes without them get them)
        # the parameter-set NAL units of segments found sound (and of the initialization)
        self.known_sets: set[bytes] = set(self.nal.from_extradata(self.extradata)) if self.nal else set()

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
    def decode_problem(self, data: bytes) -> str | None:
        """Why the first keyframe of a segment (its bytes as demuxed) does not decode, alone, to a
        picture of this track's size and format (None: it does)."""
        if not self.active:
            return None
        units = self._units(data)
        if units is None:
            return "its first keyframe is not whole NAL units"
        if self.length_size is None:
            found = [data[s:e] for t, s, e in units if t in self.nal.ps_types]
            if found:
                self._sets = self.nal.annexb_sets(found)
        kept = [(s, e) for t, s, e in units if t not in self.sei]
        if self.length_size is None:
            body = b"".join(b"\x00\x00\x00\x01" + data[s:e] for s, e in kept)
            if not any(t == self.nal.sps for t, _, _ in units):
                body = self._sets + body
        else:
            n = self.length_size
            body = b"".join(data[s - n:e] for s, e in kept)
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
        return None

    def close(self) -> None:
        self._decoders.clear()
