"""Packets of one run of segments in the form of the track's first run.

A track is read with one demuxer per run of segments sharing an initialization (``_source``), but
what is written or decoded from it is one stream, set up from the first run's streams (the
*primary* streams).  Runs can be packaged differently (HLS: MPEG-TS segments, then fMP4 ones
after an EXT-X-MAP; an encoder restarted with new parameter sets):

* H.264 / HEVC in MPEG-TS is Annex B (start codes) with the parameter sets in band; in MP4 each
  NAL unit follows its length, and the parameter sets are in the init segment (avcC / hvcC);
* AAC in MPEG-TS is ADTS (a header on each frame); in MP4 it is raw, its AudioSpecificConfig in
  the init segment.

The packets of a run whose framing or parameter sets differ from the primary's are converted to
the primary's framing (with the run's own parameter sets in band before each keyframe, or an ADTS
header made from the run's AudioSpecificConfig), time base and stream, so that what is set up
for the primary streams (output streams made from them, the muxers' own bitstream filters, the
decoders) takes every packet.  A run packaged like the first (the usual case) is read as it is.
"""
from __future__ import annotations

from fractions import Fraction

import av

from ._common import codec_name
from ._nal import MP4_TO_ANNEXB, Nal, is_length_prefixed, nal_length_size
from .errors import MediaError

__all__ = ["Reframe"]

_SAMPLE_RATE_INDEXES = 13  # ADTS tables 13 sampling rates (index 15 is an explicit rate it cannot carry)


class Reframe:
    """Converts the packets of one run's video and audio streams to the primary streams' form
    (see the module docstring); `where` names the run for messages."""

    def __init__(self, *, video, audio, primary_video, primary_audio, where: str):
        self.video = _video_converter(video, primary_video, where)
        self.audio = _audio_converter(audio, primary_audio, where)

    def __call__(self, pkt: av.Packet, kind: str) -> av.Packet | None:
        """The packet as the primary stream of its kind carries it (None: nothing to read in it)."""
        convert = self.video if kind == "video" else self.audio
        return pkt if convert is None else convert(pkt)


def _same_codec(src, dst, where: str) -> str | None:
    """The codec both streams carry; None when the run is read as it is (no stream to convert, or
    the primary stream itself)."""
    if src is None or dst is None or src is dst:
        return None
    codec = codec_name(dst)
    if codec_name(src) != codec:
        raise MediaError(f"the {dst.type} codec changes from {codec} to {codec_name(src)} at {where}: "
                         "a clip cannot join them")
    return codec


class _Timing:
    """What a converted packet keeps of the packet it is made from (taken first: a bitstream filter
    consumes its input)."""

    def __init__(self, pkt: av.Packet):
        self.pts, self.dts, self.duration = pkt.pts, pkt.dts, pkt.duration
        self.time_base = pkt.time_base
        self.key = pkt.is_keyframe

    def packet(self, data: bytes, stream) -> av.Packet:
        """A packet of `stream` holding `data`, at this timing in the stream's time base."""
        out = av.Packet(data)
        scale = Fraction(self.time_base) / Fraction(stream.time_base)
        out.time_base = stream.time_base
        out.pts = None if self.pts is None else round(self.pts * scale)
        out.dts = None if self.dts is None else round(self.dts * scale)
        out.duration = round((self.duration or 0) * scale)
        out.is_keyframe = self.key
        out.stream = stream
        return out


def _filtered(bsf: av.BitStreamFilterContext, pkt: av.Packet, what: str) -> bytes | None:
    try:
        outs = bsf.filter(pkt)
    except av.error.FFmpegError as e:
        raise MediaError(f"cannot convert {what}: {e}") from e
    return b"".join(bytes(o) for o in outs) if outs else None


# --------------------------------------------------------------------------- video
def _video_converter(src, dst, where: str):
    codec = _same_codec(src, dst, where)
    if codec not in MP4_TO_ANNEXB or src.codec_context.extradata == dst.codec_context.extradata:
        return None  # same framing and parameter sets (or a codec without either): as it is
    return _VideoReframe(codec, src, dst)


class _VideoReframe:
    """H.264 / HEVC packets of a run -> the primary's framing, the run's parameter sets in band
    before each keyframe that has none (the primary's init segment does not hold them)."""

    def __init__(self, codec: str, src, dst):
        self.nal = Nal(codec)
        self.dst = dst
        src_extra = src.codec_context.extradata
        self.bsf = av.BitStreamFilterContext(MP4_TO_ANNEXB[codec], in_stream=src) if is_length_prefixed(src_extra) else None
        self.sets = self.nal.annexb_sets(self.nal.from_extradata(src_extra))
        dst_extra = dst.codec_context.extradata
        self.length_size = nal_length_size(codec, dst_extra) if is_length_prefixed(dst_extra) else None

    def __call__(self, pkt: av.Packet) -> av.Packet | None:
        timing = _Timing(pkt)
        data = _filtered(self.bsf, pkt, "a video packet to Annex B") if self.bsf is not None else bytes(pkt)
        if data is None:
            return None
        if timing.key:
            data = self.nal.with_parameter_sets(data, self.nal.units(data), self.sets)
        if self.length_size is not None:
            data = self.nal.length_prefixed(data, self.length_size)
        return timing.packet(data, self.dst)


# --------------------------------------------------------------------------- audio
def _audio_converter(src, dst, where: str):
    codec = _same_codec(src, dst, where)
    if codec != "aac" or _raw_aac(src) == _raw_aac(dst):
        return None  # same framing (a change of AudioSpecificConfig is not converted)
    return _AudioReframe(src, dst)


def _raw_aac(stream) -> bool:
    """Raw AAC frames, described by an AudioSpecificConfig (MP4); else ADTS frames (MPEG-TS)."""
    return bool(stream.codec_context.extradata)


def _is_adts(data: bytes) -> bool:
    return len(data) >= 7 and data[0] == 0xFF and data[1] & 0xF6 == 0xF0  # syncword, layer 0


class _AudioReframe:
    """AAC packets of a run -> the primary's framing: ADTS headers stripped (aac_adtstoasc) or
    made from the run's AudioSpecificConfig."""

    def __init__(self, src, dst):
        self.dst = dst
        self.to_raw = _raw_aac(dst)
        self.bsf = av.BitStreamFilterContext("aac_adtstoasc", in_stream=src) if self.to_raw else None
        self.header = None if self.to_raw else _AdtsHeader(src.codec_context.extradata)

    def __call__(self, pkt: av.Packet) -> av.Packet | None:
        timing = _Timing(pkt)
        data = bytes(pkt)
        if self.to_raw and _is_adts(data):
            data = _filtered(self.bsf, pkt, "an ADTS packet to raw AAC")
        elif not self.to_raw and not _is_adts(data):
            data = self.header.before(data)
        return None if data is None else timing.packet(data, self.dst)


class _AdtsHeader:
    """The ADTS header of the frames an AudioSpecificConfig describes (ISO 14496-3 1.6.2.1)."""

    def __init__(self, asc: bytes):
        bits = int.from_bytes(asc[:8].ljust(8, b"\x00"), "big")
        pos = 0

        def take(n: int) -> int:
            nonlocal pos
            pos += n
            return (bits >> (64 - pos)) & ((1 << n) - 1)

        object_type = take(5)
        if object_type == 31:
            object_type = 32 + take(6)
        rate_index = take(4)
        if rate_index == 15:
            take(24)
        self.channels = take(4)
        if object_type in (5, 29):  # HE-AAC signalled explicitly: ADTS describes its AAC core
            if take(4) == 15:
                take(24)
            object_type = take(5)
        if not 1 <= object_type <= 4 or rate_index >= _SAMPLE_RATE_INDEXES:
            raise MediaError(f"AAC (object type {object_type}, sampling rate index {rate_index}) "
                             "cannot be carried in ADTS (MPEG-TS)")
        self.profile = object_type - 1
        self.rate_index = rate_index

    def before(self, frame: bytes) -> bytes:
        """`frame` (raw AAC) after its 7-byte header (no CRC)."""
        size = 7 + len(frame)
        return bytes((
            0xFF, 0xF1,  # syncword, MPEG-4, layer 0, no CRC
            (self.profile << 6) | (self.rate_index << 2) | (self.channels >> 2),
            ((self.channels & 3) << 6) | (size >> 11),
            (size >> 3) & 0xFF,
            ((size & 7) << 5) | 0x1F,  # buffer fullness 0x7FF: variable rate
            0xFC,  # one raw data block
        )) + frame
