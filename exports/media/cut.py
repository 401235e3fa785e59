"""Cut a clip out of downloaded DASH / HLS segments (export_type 0), without transcoding it.

Two modes:

* ``"accurate"`` (default, H.264 / HEVC): the clip starts on the frame presented at the
  requested start and ends on the last frame presented before the requested end.  Only what
  a stream copy cannot give is re-encoded, in the source's codec and format (``_Recoder``):
  the *head* (the frames from the start up to the next keyframe, plus that keyframe's
  leading pictures in an open GOP; decoded and encoded in a thread while the copy goes on)
  and the *tail* (the frames presented before the end but decoded after a frame presented at
  or after it: B-frames whose reference lies past the end; none without B-frames).
  Everything between is copied packet for packet.
* ``"keyframe"``: pure stream copy from the video keyframe at or before the start (the
  clip may begin up to a GOP early; ``lead_ms`` says by how much); only an H.264 keyframe
  after a hole in the timeline is spliced, as below (``_KeyframeSplice``).

Parameter sets: the re-encoded parts carry their own (same profile, level, picture format).
The output is a sequence of Annex B access units with the parameter sets in band before
every keyframe (``_AnnexB``), so a decoder switches from the head's parameter sets to the
source's and then to the tail's at IDR pictures; MPEG-TS carries that as is, and MP4 uses
the ``avc3`` / ``hev1`` sample entries, which allow in-band parameter sets (the sample entry
holds the source's).  A clip that needs no re-encoding at all (it starts on a keyframe and the
source does not reorder frames) is written to MP4 as a plain copy (``avc1`` / ``hvc1``).

Splices: the first copied keyframe after re-encoded frames (or after a hole in the timeline)
starts a new coded video sequence for the decoder: its leading pictures (open GOP) are
dropped, an HEVC CRA there becomes a BLA, an H.264 non-IDR I picture becomes an IDR with the
following copied slices renumbered (``_H264Splice``).

Audio is copied: the frames whose middle lies between the first video frame and the end of
the last one; in MP4 the AAC frame before the first is muxed as pre-roll before time 0, which
the muxer signals with an edit list (as for an encoder's priming).

Other video codecs are cut in keyframe mode whatever the mode asked.
"""
from __future__ import annotations

import concurrent.futures
import heapq
import os
import re
from typing import Callable, Mapping

import av

from ._common import ClipInfo, Progress, atomic_output, codec_name, container_format
from ._nal import MP4_TO_ANNEXB, START, Nal, is_length_prefixed, nal_length_size
from ._source import Pkt, describe_skipped, open_sources, skipped_of
from .errors import MediaError
from .select import Selection

__all__ = ["MODES", "ClipInfo", "cut_clip"]

MODES = ("accurate", "keyframe")

_EPS_MS = 0.5  # timestamp comparisons tolerate float rounding (frames are >= 1 ms apart)
_GAP_MS = 500.0  # a GOP ending this long before the requested start does not contain it
_HOLD_MAX = 2000  # packets the copy queues at most while the head is re-encoded (then it waits)

# codec -> (encoder of the re-encoded parts, bitstream filter to Annex B, MP4 sample entry with
# in-band parameter sets, MP4 sample entry of a plain copy)
_CODECS = {
    "h264": ("libx264", MP4_TO_ANNEXB["h264"], "avc3", None),
    "hevc": ("libx265", MP4_TO_ANNEXB["hevc"], "hev1", "hvc1"),
}
# the re-encoded head / tail: quality close to the source's, fast (they are at most a GOP each)
_RECODE_PRESET = "superfast"
_RECODE_CRF = {"h264": 18, "hevc": 20}


def cut_clip(
    *,
    selection: Selection,
    files: Mapping[str, str],
    out_path: str,
    container: str = "ts",
    mode: str = "accurate",
    on_progress: Callable[[float], None] | None = None,
) -> ClipInfo:
    """Cut [selection.start_ms, selection.end_ms) into `out_path` (MPEG-TS or MP4) by stream copy.

    mode="accurate": the first frame is the one presented at selection.start_ms (or the first
    after it), the last one the last presented before selection.end_ms; the partial GOPs at
    both ends are re-encoded (H.264 with libx264, HEVC with libx265, the source's picture
    format, colour properties, profile and level), the rest is copied.  Audio (copied) runs
    from the audio frame nearest the first video frame to the one nearest the end of the last.
    mode="keyframe": stream copy from the keyframe at or before the start (without its leading
    pictures) up to the shortest run of packets, in decode order, holding every frame presented
    before the end and every frame presented before the last one it holds (see _copy: with
    B-frames the clip may end a few frames after the end, never with a frame missing); audio up
    to the end of the last video frame.

    Returned ClipInfo: start_ms = recording time of the clip's first frame (keyframe mode: of the
    keyframe); lead_ms = how far before the requested start that is (0 for accurate clips);
    duration_ms = first frame to the end of the last one.  Output timestamps start at 0 (video
    and audio shifted by the same amount).  Keys missing from `files` are skipped; a hole in the
    timeline is left as a jump; a start inside a hole begins after it.  A damaged segment (cut
    short, overwritten, of another codec or picture size: see _validate) is skipped as a missing
    one is, and listed in ClipInfo.skipped (ClipInfo.skipped_ms: what it adds to LackLength); a
    clip with nothing readable raises MediaError.

    on_progress(fraction): called at most every 0.25 s with the part of [start, end) done
    (0..1, non-decreasing), and with 1.0 once the output is in place.  An exception it raises
    aborts the cut (nothing is left behind).
    """
    if mode not in MODES:
        raise MediaError(f"unknown cut mode {mode!r} (use 'accurate' or 'keyframe')")
    fmt, opts = container_format(container)
    start_ms, end_ms = float(selection.start_ms), float(selection.end_ms)
    progress = _SpanProgress(on_progress, start_ms, end_ms) if on_progress is not None else None
    inband = False
    while True:
        try:
            info = _cut(selection, files, out_path, fmt, opts, mode, progress, inband)
            break
        except _NeedInband:
            inband = True  # a plain MP4 copy turned out to need a re-encoded tail: again, in band
    if progress is not None:
        progress.done()
    return info


def _cut(selection, files, out_path, fmt, opts, mode, progress, inband) -> ClipInfo:
    start_ms, end_ms = float(selection.start_ms), float(selection.end_ms)
    sources = open_sources(selection, files)
    try:
        vstream = next((s.vstream for s in sources if s.vstream is not None), None)
        astream = next((s.astream for s in sources if s.astream is not None), None)
        accurate = mode == "accurate" and (vstream is None or codec_name(vstream) in _CODECS)
        try:
            with atomic_output(out_path, "stream copy") as tmp:
                if accurate:
                    cut = _AccurateCut(sources, vstream, astream, start_ms, end_ms, fmt, opts, progress, inband)
                    w = cut.run(tmp)
                    first = w.first_ms()
                else:
                    w, first = _keyframe_cut(sources, vstream, astream, tmp, fmt, opts, start_ms, end_ms, progress)
        except MediaError as e:
            skipped, _ = skipped_of(selection, files, sources)
            if not skipped or isinstance(e, _NeedInband):
                raise
            raise MediaError(f"{e} (damaged segments skipped: {describe_skipped(skipped)})") from e
        skipped, skipped_ms = skipped_of(selection, files, sources)
        return ClipInfo(
            path=out_path,
            duration_ms=round(w.duration_ms(), 3),
            video_codec=codec_name(vstream),
            audio_codec=codec_name(astream) if w.count["audio"] else None,
            width=vstream.codec_context.width if vstream is not None else None,
            height=vstream.codec_context.height if vstream is not None else None,
            size_bytes=os.path.getsize(out_path),
            lead_ms=round(start_ms - first, 3) if start_ms - first > _EPS_MS else 0.0,
            start_ms=round(first, 3),
            skipped=skipped,
            skipped_ms=skipped_ms,
        )
    finally:
        for s in sources:
            s.close()


class _SpanProgress(Progress):
    """Progress through [start_ms, end_ms) of recording time."""

    def __init__(self, callback: Callable[[float], None], start_ms: float, end_ms: float):
        super().__init__(callback, end_ms - start_ms)
        self.start = start_ms

    def at(self, rt_ms: float) -> None:
        self.update(rt_ms - self.start)


# --------------------------------------------------------------------------- keyframe mode
class _Writer:
    """Muxes recording-time packets into an output container, shifted by `base_ms`; `splice` (H.264:
    a _KeyframeSplice) passes on each video packet, in decode order."""

    def __init__(self, out: av.container.OutputContainer, ovs, oas, splice: _KeyframeSplice | None = None):
        self.out = out
        self.ost = {"video": ovs, "audio": oas}
        self.splice = splice
        self.base_ms = 0.0
        # MP4: the first frame presented at 0 (the decode times before it negative: an edit list), as in
        # accurate mode; MPEG-TS: decode times from 0
        self.present_at_zero = out.format.name in ("mp4", "mov") or "mp4" in out.format.name.split(",")
        self.last_dts: dict[str, int] = {}
        self.first_pts: dict[str, float] = {}
        self.end_pts: dict[str, float] = {}
        self.count: dict[str, int] = {"video": 0, "audio": 0}
        self._last_rt: dict[str, float] = {}
        self._frame_ms: dict[str, float] = {}

    def write(self, p: Pkt) -> None:
        ost = self.ost[p.kind]
        if ost is None:
            return
        pkt = p.packet if self.splice is None or p.kind != "video" else self.splice(p)
        # (a float: float / Fraction gives the same float, through the slow Fraction protocol)
        tb = p.tb or float(pkt.time_base)
        dts = int(round((p.rt_dts - self.base_ms) / 1000.0 / tb))
        pts = int(round((p.rt_pts - self.base_ms) / 1000.0 / tb))
        last = self.last_dts.get(p.kind)
        if last is not None and dts <= last:
            if p.kind == "audio":
                return  # overlapping audio (e.g. encoder priming after a discontinuity): drop it
            dts = last + 1
        if pts < dts:
            pts = dts
        self.last_dts[p.kind] = dts
        pkt.dts = dts
        pkt.pts = pts
        pkt.stream = ost
        self.out.mux(pkt)
        # bookkeeping for the duration
        rel = p.rt_pts - self.base_ms
        prev = self._last_rt.get(p.kind)
        if prev is not None and p.rt_pts > prev:
            self._frame_ms[p.kind] = min(self._frame_ms.get(p.kind, 1e9), p.rt_pts - prev)
        self._last_rt[p.kind] = p.rt_pts
        self.first_pts[p.kind] = min(self.first_pts.get(p.kind, rel), rel)
        dur = p.dur_ms or self._frame_ms.get(p.kind, 0.0)
        self.end_pts[p.kind] = max(self.end_pts.get(p.kind, rel + dur), rel + dur)
        self.count[p.kind] += 1

    def duration_ms(self) -> float:
        kind = "video" if self.count["video"] else "audio"
        if not self.count[kind]:
            return 0.0
        return self.end_pts[kind] - self.first_pts[kind]


def _keyframe_cut(sources, vstream, astream, tmp, fmt, opts, start_ms, end_ms, progress) -> tuple[_Writer, float]:
    out = av.open(tmp, "w", format=fmt, options=opts)
    try:
        # opaque: reuse the decoder's codec (no encoder needed to stream-copy, e.g. mp3float)
        ovs = out.add_stream_from_template(vstream, opaque=True) if vstream is not None else None
        oas = out.add_stream_from_template(astream, opaque=True) if astream is not None else None
        if ovs is not None and fmt in ("mp4", "mov") and codec_name(vstream) == "hevc":
            ovs.codec_context.codec_tag = "hvc1"  # playable by Apple players
        splice = _KeyframeSplice(vstream) if vstream is not None and codec_name(vstream) == "h264" else None
        w = _Writer(out, ovs, oas, splice)
        first = _copy(sources, w, start_ms, end_ms, has_video=vstream is not None, progress=progress)
    finally:
        out.close()
    return w, first


def _gop_end(gop: list[Pkt]) -> float:
    last = max(gop, key=lambda q: q.rt_pts)
    dur = last.dur_ms
    if not dur and len(gop) > 1:
        dur = abs(gop[-1].rt_pts - gop[-2].rt_pts)
    return last.rt_pts + dur


def _copy(sources, w, start_ms: float, end_ms: float, *, has_video: bool, progress: _SpanProgress | None = None) -> float:
    """Route the sources' packets, merged in recording time, from the keyframe at or before
    start_ms (or after a hole the start lies in) up to end_ms into `w`; return the recording
    time where the output begins (the keyframe's pts; the first audio packet's without video).

    Head: the keyframe's leading pictures (open GOP: presented before it, referencing the GOP
    before) are dropped; the output begins with the keyframe.  ``w.base_ms`` (what recording
    time becomes 0) is the first kept decode time, or, when ``w.present_at_zero`` is set (MP4),
    the keyframe's presentation time (the reorder delay before it becomes negative decode times,
    which the MP4 muxer signals with an edit list).

    Tail (decided on presentation times): video packets are copied in decode order up to the
    shortest prefix that holds every frame presented before end_ms and, with it, every frame
    presented before the last one it holds (a frame presented at or after the end that a kept
    frame references stays, with all the frames presented before it, so the clip may run a few
    frames past the end but never skips one).  Audio: the packets from the keyframe's time
    that start before the end of the last video frame kept (before end_ms without video).

    `w` is a _Writer, or anything with its interface (``write(Pkt)``, ``base_ms``, ``count``):
    encode_selection passes a sink that decodes the packets instead of muxing.
    """
    merged = heapq.merge(*(s.packets() for s in sources), key=lambda p: p.rt_dts)
    committed = False
    start_pts = 0.0  # recording time where the output begins (keyframe pts)
    gop: list[Pkt] = []
    abuf: list[Pkt] = []
    done = {"video": not has_video, "audio": not any(s.astream is not None for s in sources)}
    zero_pts = bool(getattr(w, "present_at_zero", False))
    vstream = next((s.vstream for s in sources if s.vstream is not None), None)
    rate = (vstream.average_rate or vstream.guessed_rate) if vstream is not None else None
    frame_ms = 1000.0 / float(rate) if rate else 40.0
    # tail state: video packets presented at / after the end waiting to be known needed, the
    # latest presentation time copied (and its frame's end), audio waiting for the video's end
    vpending: list[Pkt] = []
    apending: list[Pkt] = []
    v_last = float("-inf")
    v_end: list[float] = []  # [end of the last video frame copied] once the video is done
    a_limit = [end_ms]

    def commit() -> None:
        nonlocal committed, start_pts
        committed = True
        if has_video:
            key = gop[0]
            start_pts = key.rt_pts
            gop[:] = [key] + [q for q in gop[1:] if q.rt_pts >= key.rt_pts - _EPS_MS]  # leading pictures
            w.base_ms = start_pts if zero_pts else min(p.rt_dts for p in gop)
        for p in sorted(gop + abuf, key=lambda q: q.rt_dts):
            emit(p)
        gop.clear()
        abuf.clear()

    def write_video(p: Pkt) -> None:
        nonlocal v_last
        if progress is not None:
            progress.at(p.rt_pts)
        w.write(p)
        if p.rt_pts > v_last:
            v_last = p.rt_pts
            v_end[:] = [p.rt_pts + (p.dur_ms or frame_ms)]

    def finish_video() -> None:
        done["video"] = True
        vpending.clear()
        if v_end:
            a_limit[0] = v_end[0]
        for a in apending:
            if a.rt_pts < a_limit[0] - _EPS_MS:
                w.write(a)
        apending.clear()

    def emit(p: Pkt) -> None:
        if p.kind == "video":
            if done["video"]:
                return
            if p.rt_dts >= end_ms - _EPS_MS and p.rt_dts >= v_last - _EPS_MS:
                # everything from here on is presented after the end and after every frame kept
                finish_video()
                return
            if p.rt_pts < end_ms - _EPS_MS or p.rt_pts < v_last - _EPS_MS:
                for q in vpending:  # needed: referenced by p, or presented before it
                    write_video(q)
                vpending.clear()
                write_video(p)
            else:
                vpending.append(p)
        else:
            if done["audio"]:
                return
            if p.rt_pts < w.base_ms - _EPS_MS or (has_video and p.rt_pts < start_pts - 0.5):
                return
            if p.rt_pts >= a_limit[0] - _EPS_MS:
                if has_video and not done["video"]:
                    apending.append(p)  # (the video may end after end_ms)
                else:
                    done["audio"] = True
                return
            w.write(p)

    for p in merged:
        if committed:
            emit(p)
            if done["video"] and done["audio"]:
                break
            continue
        if p.kind == "video":
            if p.key:
                if gop and p.rt_pts > start_ms + _EPS_MS:
                    if start_ms - _gop_end(gop) <= _GAP_MS:
                        commit()
                        emit(p)
                        continue
                    # the start lies in a hole of the timeline: begin after it, not before
                    abuf.clear()
                gop[:] = [p]
                abuf[:] = [a for a in abuf if a.rt_pts >= p.rt_pts]
            elif gop:
                gop.append(p)
        elif has_video:
            abuf.append(p)
            if gop:
                abuf[:] = [a for a in abuf if a.rt_pts >= gop[0].rt_pts] if len(abuf) > 512 else abuf
        else:
            # audio only: start at the packet covering start_ms
            if p.rt_pts + max(p.dur_ms, 1.0) > start_ms:
                w.base_ms = p.rt_dts
                start_pts = p.rt_pts
                committed = True
                emit(p)
    if not committed and gop:
        commit()
    if has_video and not done["video"]:
        finish_video()
    if not committed or not (w.count["video"] or w.count["audio"]):
        raise MediaError(
            f"no media data between {start_ms:.0f} ms and {end_ms:.0f} ms in the available segments"
        )
    if has_video and not w.count["video"]:
        raise MediaError(f"no video frame between {start_ms:.0f} ms and {end_ms:.0f} ms")
    return start_pts


_H264_NAL = Nal("h264")


class _AnnexB:
    """Source video packets -> Annex B access units with the parameter sets in band before
    every keyframe (as MPEG-TS needs, and MP4 with avc3 / hev1 sample entries).

    Length-prefixed packets (MP4 sources) go through h264_mp4toannexb / hevc_mp4toannexb, one
    filter per source stream (a recording whose initialization changes has several).  The
    parameter sets last seen (in band, or the stream's extradata) are inserted before a
    keyframe that has none.  ``splice`` marks the first copied keyframe after re-encoded
    frames or after a hole: an HEVC CRA there becomes a BLA (its leading pictures, which
    reference pictures not in the output, are dropped by the caller).
    """

    def __init__(self, codec: str, vstream):
        self.codec = codec
        self.nal = Nal(codec)
        self.bsf_name = _CODECS[codec][1]
        self.filters: dict[int, av.BitStreamFilterContext | None] = {}
        self.sets: dict[int, list[bytes]] = {}
        self.h264 = _H264Splice() if codec == "h264" else None
        self._update(self.nal.from_extradata(vstream.codec_context.extradata))
        self.initial = self.annexb_sets()

    def _update(self, units: list[bytes]) -> None:
        found: dict[int, list[bytes]] = {}
        for u in units:
            found.setdefault(self.nal.kind(u[0]), []).append(u)
        self.sets.update(found)
        if self.h264 is not None:
            self.h264.parameter_sets(units)

    def annexb_sets(self) -> bytes:
        return b"".join(START + u for t in self.nal.ps_types for u in self.sets.get(t, ()))

    def _filter(self, pkt: av.Packet):
        stream = pkt.stream
        key = id(stream)
        if key not in self.filters:
            extra = stream.codec_context.extradata if stream is not None else None
            if is_length_prefixed(extra):
                self.filters[key] = av.BitStreamFilterContext(self.bsf_name, in_stream=stream)
                self._update(self.nal.from_extradata(extra))
            else:
                self.filters[key] = None
        return self.filters[key]

    def convert(self, p: Pkt) -> av.Packet | None:
        """The Annex B packet for `p` (`p.packet` is consumed when it had to be filtered)."""
        pkt = p.packet
        bsf = self._filter(pkt)
        if bsf is not None:
            try:
                outs = bsf.filter(pkt)
            except av.error.FFmpegError as e:
                raise MediaError(f"cannot convert a video packet to Annex B: {e}") from e
            if not outs:
                return None
            q = outs[0] if len(outs) == 1 else av.Packet(b"".join(bytes(o) for o in outs))
        else:
            q = pkt
        if not p.key:
            return q
        data = bytes(q)
        units = self.nal.units(data)
        found = [data[s:e] for t, s, e in units if t in self.nal.ps_types]
        if found:
            self._update(found)
        new = self.nal.with_parameter_sets(data, units, self.annexb_sets())
        if new is data:
            return q
        out = av.Packet(new)
        out.is_keyframe = p.key
        return out

    def splice(self, pkt: av.Packet) -> av.Packet:
        """The first copied keyframe after re-encoded frames or a hole (its leading pictures are
        dropped): decoders must start a new coded video sequence there.  An HEVC CRA becomes a
        BLA_W_LP (POC reset, no leading picture expected from before); an H.264 non-IDR I
        picture becomes an IDR (``_H264Splice``; the following packets go through ``fix``)."""
        if self.h264 is not None:
            data = bytes(pkt)
            new = self.h264.to_idr(data)
            if new is data:
                return pkt
            out = av.Packet(new)
            out.is_keyframe = True
            return out
        data = bytes(pkt)
        units = self.nal.units(data)
        if not any(t == 21 for t, _, _ in units):
            return pkt
        buf = bytearray(data)
        for t, s, _ in units:
            if t == 21:  # CRA_NUT -> BLA_W_LP (same header otherwise)
                buf[s] = (16 << 1) | (buf[s] & 0x81)
        out = av.Packet(bytes(buf))
        out.is_keyframe = True
        return out

    def fix(self, pkt: av.Packet) -> av.Packet:
        """A copied packet after a splice: H.264 frame_num renumbered (see ``_H264Splice``)."""
        if self.h264 is None or self.h264.base is None:
            return pkt
        data = bytes(pkt)
        new = self.h264.renumber(data)
        if new is data:
            return pkt
        out = av.Packet(new)
        out.is_keyframe = pkt.is_keyframe
        return out


# --------------------------------------------------------------------------- H.264 splices
class _Unsupported(Exception):
    """A bitstream feature the H.264 splicer does not rewrite (the packet is left as it is)."""


_EMULATION = re.compile(rb"\x00\x00(?=[\x00-\x03])")


def _unescape(nal: bytes) -> bytes:
    """NAL unit -> RBSP (emulation-prevention bytes removed)."""
    return nal.replace(b"\x00\x00\x03", b"\x00\x00") if b"\x00\x00\x03" in nal else nal


def _escape(rbsp: bytes) -> bytes:
    out = _EMULATION.sub(b"\x00\x00\x03", rbsp)
    return out + b"\x03" if out.endswith(b"\x00") else out


class _BitReader:
    def __init__(self, data: bytes, start_bit: int = 0):
        self.n = len(data) * 8
        self.v = int.from_bytes(data, "big")
        self.pos = start_bit

    def u(self, k: int) -> int:
        if k == 0:
            return 0
        if self.pos + k > self.n:
            raise _Unsupported("truncated")
        self.pos += k
        return (self.v >> (self.n - self.pos)) & ((1 << k) - 1)

    def ue(self) -> int:
        remaining = self.n - self.pos
        rest = self.v & ((1 << remaining) - 1)
        zeros = remaining - rest.bit_length()  # leading zero bits
        if not rest or zeros > 31:
            raise _Unsupported("bad exp-golomb code")
        self.pos += zeros
        return self.u(zeros + 1) - 1

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


class _BitWriter:
    def __init__(self):
        self.v = 0
        self.n = 0

    def put(self, value: int, k: int) -> None:
        self.v = (self.v << k) | (value & ((1 << k) - 1))
        self.n += k

    def ue(self, value: int) -> None:
        value += 1
        k = value.bit_length()
        self.put(0, k - 1)
        self.put(value, k)

    def to_bytes(self) -> bytes:
        assert self.n % 8 == 0
        return self.v.to_bytes(self.n // 8, "big")


_KEEP = object()  # _H264Splice: reference marking left as it is


class _H264Splice:
    """Makes a copied H.264 stream start cleanly on a non-IDR I picture (open GOP).

    At a splice (the first copied keyframe after re-encoded frames or after a hole) that
    picture becomes an IDR (nal_unit_type 5, frame_num 0, idr_pic_id, IDR reference marking)
    and the copied slices that follow get their frame_num renumbered from it (up to the next
    IDR of the source): a decoder sees an ordinary new coded video sequence, with reference
    frames, frame_num and picture order count starting afresh.  Memory-management operations
    of the first copied pictures that unmark pictures from before the splice (no longer in the
    decoder's buffer) are removed; for that the decoded-picture buffer is followed over the
    first reference pictures.  Frames dropped from the copy (leading pictures) leave frame_num
    gaps, which decoders fill.  Field-coded pictures and slice groups are not rewritten.
    """

    def __init__(self):
        self.sps: dict[int, dict] = {}
        self.pps: dict[int, dict] = {}
        self.base: int | None = None  # frame_num of the picture made IDR (renumbering active)
        self.refs: list[int] = []  # short-term reference frame_nums (renumbered), oldest first
        self.prev_ref = 0
        self.model_left = 0  # reference pictures still to follow in the buffer model

    # -- parameter sets ---------------------------------------------------------------
    def parameter_sets(self, units: list[bytes]) -> None:
        for u in units:
            try:
                if u[0] & 0x1F == 7:
                    self._parse_sps(_unescape(u))
                elif u[0] & 0x1F == 8:
                    self._parse_pps(_unescape(u))
            except (_Unsupported, IndexError):
                pass

    def _parse_sps(self, rbsp: bytes) -> None:
        r = _BitReader(rbsp, 8)
        profile = r.u(8)
        r.u(16)  # constraint flags, level
        sps_id = r.ue()
        chroma_format, separate_planes = 1, 0
        if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
            chroma_format = r.ue()
            if chroma_format == 3:
                separate_planes = r.u(1)
            r.ue()
            r.ue()  # bit depths
            r.u(1)
            if r.u(1):  # seq_scaling_matrix_present_flag
                for i in range(8 if chroma_format != 3 else 12):
                    if r.u(1):
                        last = nxt = 8
                        for _ in range(16 if i < 6 else 64):
                            if nxt:
                                nxt = (last + r.se() + 256) % 256
                            last = nxt or last
        log2_max_frame_num = r.ue() + 4
        poc_type = r.ue()
        log2_max_poc_lsb = 0
        always_zero = 0
        if poc_type == 0:
            log2_max_poc_lsb = r.ue() + 4
        elif poc_type == 1:
            always_zero = r.u(1)
            r.se()
            r.se()
            for _ in range(r.ue()):
                r.se()
        max_refs = r.ue()
        r.u(1)  # gaps_in_frame_num_value_allowed_flag
        r.ue()
        r.ue()  # picture size
        frame_mbs_only = r.u(1)
        self.sps[sps_id] = {
            "log2_max_frame_num": log2_max_frame_num, "poc_type": poc_type, "log2_max_poc_lsb": log2_max_poc_lsb,
            "always_zero": always_zero, "frame_mbs_only": frame_mbs_only, "separate_planes": separate_planes,
            "chroma": 0 if separate_planes else chroma_format, "max_refs": max(1, max_refs),
        }

    def _parse_pps(self, rbsp: bytes) -> None:
        r = _BitReader(rbsp, 8)
        pps_id = r.ue()
        sps_id = r.ue()
        cabac = r.u(1)
        bottom_field_poc = r.u(1)
        slice_groups = r.ue() + 1
        if slice_groups != 1:
            raise _Unsupported("slice groups")
        refs_l0 = r.ue() + 1
        refs_l1 = r.ue() + 1
        weighted_pred = r.u(1)
        weighted_bipred = r.u(2)
        r.se()
        r.se()
        r.se()
        deblocking_control = r.u(1)
        r.u(1)
        redundant_pic_cnt = r.u(1)
        self.pps[pps_id] = {
            "sps_id": sps_id, "cabac": cabac, "bottom_field_poc": bottom_field_poc, "refs_l0": refs_l0,
            "refs_l1": refs_l1, "weighted_pred": weighted_pred, "weighted_bipred": weighted_bipred,
            "deblocking_control": deblocking_control, "redundant_pic_cnt": redundant_pic_cnt,
        }

    # -- slice headers ------------------------------------------------------------------
    def _parse(self, rb: bytes) -> dict:
        """Positions (bits, in the RBSP `rb`) and values of a slice header's fields."""
        r = _BitReader(rb, 8)
        h = {"r": r, "type": rb[0] & 0x1F, "ref_idc": (rb[0] >> 5) & 3}
        r.ue()  # first_mb_in_slice
        st = h["slice_type"] = r.ue() % 5
        pps = self.pps.get(r.ue())
        if pps is None or pps["sps_id"] not in self.sps:
            raise _Unsupported("unknown parameter sets")
        sps = self.sps[pps["sps_id"]]
        h["sps"], h["pps"] = sps, pps
        if sps["separate_planes"]:
            r.u(2)
        h["fn_pos"] = r.pos
        h["frame_num"] = r.u(sps["log2_max_frame_num"])
        if not sps["frame_mbs_only"] and r.u(1):
            raise _Unsupported("field picture")
        h["idr_pos"] = r.pos
        if h["type"] == 5:
            r.ue()  # idr_pic_id
        h["poc_pos"] = r.pos
        if sps["poc_type"] == 0:
            r.u(sps["log2_max_poc_lsb"])
            if pps["bottom_field_poc"]:
                r.se()
        elif sps["poc_type"] == 1 and not sps["always_zero"]:
            r.se()
            if pps["bottom_field_poc"]:
                r.se()
        if pps["redundant_pic_cnt"]:
            r.ue()
        n0, n1 = pps["refs_l0"], pps["refs_l1"]
        if st == 1:
            r.u(1)  # direct_spatial_mv_pred_flag
        if st in (0, 1, 3) and r.u(1):  # num_ref_idx_active_override_flag
            n0 = r.ue() + 1
            if st == 1:
                n1 = r.ue() + 1
        for _ in range(2 if st == 1 else (0 if st in (2, 4) else 1)):  # ref_pic_list_modification
            if r.u(1):
                while r.ue() != 3:
                    r.ue()
        if (pps["weighted_pred"] and st in (0, 3)) or (pps["weighted_bipred"] == 1 and st == 1):
            r.ue()
            if sps["chroma"]:
                r.ue()
            for count in ([n0, n1] if st == 1 else [n0]):
                for _ in range(count):
                    if r.u(1):
                        r.se()
                        r.se()
                    if sps["chroma"] and r.u(1):
                        for _ in range(4):
                            r.se()
        h["marking"] = r.pos
        h["ops"] = None
        if h["ref_idc"]:
            if h["type"] == 5:
                r.u(2)
            elif r.u(1):  # adaptive_ref_pic_marking_mode_flag
                ops = []
                while True:
                    op = r.ue()
                    if op == 0:
                        break
                    args = [r.ue()] if op in (1, 2, 3, 4, 6) else []
                    if op == 3:
                        args.append(r.ue())
                    ops.append((op, args))
                h["ops"] = ops
        h["marking_end"] = r.pos
        if pps["cabac"] and st not in (2, 4):
            r.ue()  # cabac_init_idc
        r.se()  # slice_qp_delta
        if st in (3, 4):
            if st == 3:
                r.u(1)
            r.se()
        if pps["deblocking_control"] and r.ue() != 1:
            r.se()
            r.se()
        h["header_end"] = r.pos
        return h

    @staticmethod
    def _write(rb: bytes, h: dict, *, frame_num: int, idr: bool = False, ops=_KEEP) -> bytes:
        """The slice NAL unit (escaped) with the header rewritten."""
        r = h["r"]
        n = r.n
        k = h["sps"]["log2_max_frame_num"]
        w = _BitWriter()

        def copy(a: int, b: int) -> None:
            if b > a:
                w.put((r.v >> (n - b)) & ((1 << (b - a)) - 1), b - a)

        w.put((rb[0] & 0xE0) | (5 if idr else h["type"]), 8)
        copy(8, h["fn_pos"])
        w.put(frame_num, k)
        copy(h["fn_pos"] + k, h["idr_pos"])
        if idr and h["type"] != 5:
            w.ue(0)  # idr_pic_id
        copy(h["idr_pos"] if idr or h["type"] == 5 else h["poc_pos"], h["marking"])
        if idr and h["type"] != 5:
            w.put(0, 2)  # no_output_of_prior_pics_flag, long_term_reference_flag
        elif ops is _KEEP:
            copy(h["marking"], h["marking_end"])
        elif ops is None:
            w.put(0, 1)
        else:
            w.put(1, 1)
            for op, args in ops:
                w.ue(op)
                for a in args:
                    w.ue(a)
            w.ue(0)
        copy(h["marking_end"], h["header_end"])
        end = h["header_end"]
        if h["pps"]["cabac"]:
            w.put(0xFF, (8 - w.n % 8) % 8)  # cabac_alignment_one_bits; the slice data is byte aligned
            return _escape(w.to_bytes() + rb[(end + 7) // 8:])
        body = rb.rstrip(b"\x00")
        stop = len(body) * 8 - ((body[-1] & -body[-1]).bit_length() - 1) - 1  # rbsp_stop_one_bit
        copy(end, stop)
        w.put(1, 1)
        w.put(0, (8 - w.n % 8) % 8)
        return _escape(w.to_bytes())

    # -- access units -------------------------------------------------------------------
    @staticmethod
    def _map_vcl(data: bytes, fn, units=None) -> bytes:
        """`data` (Annex B) with fn(nal) applied to each coded slice NAL unit (types 1 and 5)."""
        parts = []
        prev = 0
        for t, s, e in units if units is not None else _H264_NAL.units(data):
            if t in (1, 5):
                parts.append(data[prev:s])
                parts.append(fn(data[s:e]))
                prev = e
        parts.append(data[prev:])
        return b"".join(parts)

    def to_idr(self, data: bytes) -> bytes:
        """Rewrite the non-IDR I picture in `data` as an IDR and start renumbering after it."""
        units = _H264_NAL.units(data)
        if not any(t == 1 for t, _, _ in units):
            if any(t == 5 for t, _, _ in units):
                self.base = None  # a real IDR: nothing to do
            return data
        found = []

        def convert(nal: bytes) -> bytes:
            rb = _unescape(nal)
            h = self._parse(rb)
            if h["slice_type"] not in (2, 4) or not h["ref_idc"]:
                raise _Unsupported("not an intra reference picture")
            found.append(h)
            return self._write(rb, h, frame_num=0, idr=True)

        try:
            out = self._map_vcl(data, convert, units)
        except (_Unsupported, IndexError):
            self.base = None
            return data
        if len({h["frame_num"] for h in found}) != 1:
            self.base = None
            return data
        self.base = found[0]["frame_num"]
        self.refs = [0]
        self.prev_ref = 0
        self.model_left = 4 * found[0]["sps"]["max_refs"] + 8
        return out

    def _follow(self, h: dict, fn: int):
        """Update the buffer model with reference picture `h` (frame_num `fn`, renumbered); return
        its marking operations without those naming pictures not in the buffer, or _KEEP."""
        sps = h["sps"]
        size = 1 << sps["log2_max_frame_num"]
        max_refs = sps["max_refs"]

        def slide(num: int) -> None:
            if num in self.refs:
                return
            if len(self.refs) >= max_refs:
                self.refs.pop(0)
            self.refs.append(num)

        missing = (fn - self.prev_ref - 1) % size
        if fn != self.prev_ref and missing:
            for i in range(min(missing, max_refs), 0, -1):  # frame_num gap: filled, as decoders do
                slide((fn - i) % size)
        self.prev_ref = fn
        if h["ops"] is None:
            slide(fn)
            return _KEEP
        kept = []
        for op, args in h["ops"]:
            if op == 1:
                target = (fn - args[0] - 1) % size
                if target not in self.refs:
                    continue  # a picture from before the splice
                self.refs.remove(target)
            elif op == 5:
                self.refs.clear()
                self.prev_ref = 0
            else:
                self.model_left = 0  # long-term references: not followed
            kept.append((op, args))
        if all(op != 6 for op, _ in kept):
            self.refs.append(fn)
        return _KEEP if len(kept) == len(h["ops"]) else kept

    def renumber(self, data: bytes) -> bytes:
        """The slices of a copied access unit after a splice, renumbered (see the class doc)."""
        if self.base is None:
            return data
        units = _H264_NAL.units(data)
        vcl = [(s, e) for t, s, e in units if t in (1, 5)]
        if not vcl:
            return data
        if any(t == 5 for t, _, _ in units):
            self.base = None  # an IDR of the source: numbering starts afresh there anyway
            return data
        base = self.base
        ops = _KEEP
        try:
            if self.model_left > 0:
                s, e = vcl[0]
                h = self._parse(_unescape(data[s:e]))
                if h["ref_idc"]:
                    self.model_left -= 1
                    ops = self._follow(h, (h["frame_num"] - base) % (1 << h["sps"]["log2_max_frame_num"]))
        except (_Unsupported, IndexError):
            self.model_left = 0

        def patch(nal: bytes) -> bytes:
            if ops is not _KEEP:
                rb = _unescape(nal)
                h = self._parse(rb)
                k = h["sps"]["log2_max_frame_num"]
                return self._write(rb, h, frame_num=(h["frame_num"] - base) % (1 << k), ops=ops)
            cut = min(len(nal), 24)  # the fields rewritten are in the first bytes; cut where the escaping
            while cut < len(nal) and (nal[cut - 1] == 0 or (nal[cut - 1] == 3 and nal[cut - 3:cut - 1] == b"\0\0")):
                cut += 1  # of what follows does not depend on what precedes
            rb = _unescape(nal[:cut])
            r = _BitReader(rb, 8)
            r.ue()
            r.ue()
            pps = self.pps.get(r.ue())
            if pps is None or pps["sps_id"] not in self.sps:
                raise _Unsupported("unknown parameter sets")
            sps = self.sps[pps["sps_id"]]
            if sps["separate_planes"]:
                r.u(2)
            k = sps["log2_max_frame_num"]
            pos = r.pos
            value = (r.u(k) - base) % (1 << k)
            n = r.n
            v = (r.v & ~(((1 << k) - 1) << (n - pos - k))) | (value << (n - pos - k))
            return _escape(v.to_bytes(len(rb), "big")) + nal[cut:]

        try:
            return self._map_vcl(data, patch, units)
        except (_Unsupported, IndexError):
            return data


class _KeyframeSplice:
    """Keyframe mode, H.264: the first keyframe after a hole in the timeline (a dts jump: segments
    missing or skipped as damaged; the sources resume on a keyframe without its leading pictures) is
    spliced as the accurate cut splices it (``_H264Splice``): an open-GOP keyframe (a non-IDR I
    picture) becomes an IDR and the following packets are renumbered up to the source's next IDR,
    so that decoders start a new sequence there rather than continue the pictures before the hole.
    Every other packet is copied as it is (the same av.Packet).  Packets may be Annex B (MPEG-TS) or
    length-prefixed (MP4: an avcC in the stream's extradata); a rewritten one keeps its framing."""

    def __init__(self, vstream):
        extra = vstream.codec_context.extradata
        self.size = nal_length_size("h264", extra) if is_length_prefixed(extra) else None
        self.h264 = _H264Splice()
        self.h264.parameter_sets(_H264_NAL.from_extradata(extra))
        rate = vstream.average_rate or vstream.guessed_rate
        frame_ms = 1000.0 / float(rate) if rate else 40.0
        self.gap_ms = max(3 * frame_ms, 100.0)  # a dts jump this large is a hole (as the accurate cut's)
        self.last_dts: float | None = None

    def __call__(self, p: Pkt) -> av.Packet:
        pkt = p.packet
        gap = self.last_dts is not None and p.rt_dts - self.last_dts > self.gap_ms
        self.last_dts = p.rt_dts if self.last_dts is None else max(self.last_dts, p.rt_dts)
        splice = gap and p.key
        if not splice and self.h264.base is None:
            return pkt  # (a plain copy)
        data = bytes(pkt)
        annexb = data if self.size is None else self._annexb(data)
        if p.key:
            self.h264.parameter_sets([annexb[s:e] for t, s, e in _H264_NAL.units(annexb) if t in (7, 8)])
        new = self.h264.to_idr(annexb) if splice else self.h264.renumber(annexb)
        if new is annexb:
            return pkt
        out = av.Packet(new if self.size is None else _H264_NAL.length_prefixed(new, self.size))
        out.time_base = pkt.time_base
        out.duration = pkt.duration
        out.is_keyframe = pkt.is_keyframe
        return out

    def _annexb(self, data: bytes) -> bytes:
        """Length-prefixed NAL units -> Annex B."""
        units = []
        i, n, size = 0, len(data), self.size
        while i + size <= n:
            length = int.from_bytes(data[i:i + size], "big")
            units.append(START + data[i + size:i + size + length])
            i += size + length
        return b"".join(units)


# --------------------------------------------------------------------------- re-encoding
_X264_PROFILES = {
    "Baseline": "baseline", "Constrained Baseline": "baseline", "Extended": "baseline", "Main": "main",
    "High": "high", "High 10": "high10", "High 10 Intra": "high10", "High 4:2:2": "high422",
    "High 4:2:2 Intra": "high422", "High 4:4:4": "high444", "High 4:4:4 Predictive": "high444",
    "High 4:4:4 Intra": "high444",
}
_X265_PROFILES = {"Main": "main", "Main 10": "main10", "Main Still Picture": "mainstillpicture"}
_COLOR_ATTRS = ("color_primaries", "color_trc", "colorspace", "color_range")


class _Recoder:
    """Decodes Annex B access units and re-encodes the frames wanted, in the source's codec:
    same picture size and pixel format (bit depth), sample aspect ratio, colour properties,
    frame rate, and the source's profile and level (so that a decoder set up for the copied
    stream decodes the re-encoded frames); no B-frames, one IDR first, parameter sets in band.
    """

    def __init__(self, codec: str, vstream):
        cc = vstream.codec_context
        self.codec = codec
        self.encoder = _CODECS[codec][0]
        self.tb = vstream.time_base
        self.rate = vstream.average_rate or vstream.guessed_rate
        self.sar = cc.sample_aspect_ratio
        self.colors = {a: getattr(cc, a, None) for a in _COLOR_ATTRS}
        self.profile = (_X265_PROFILES if codec == "hevc" else _X264_PROFILES).get(cc.profile or "")
        self.level = cc.level if cc.level and cc.level > 0 else None

    def ticks(self, ms: float) -> int:
        return round(ms / 1000.0 / self.tb)

    def recode(self, feed: list[tuple[av.Packet, float, float]], keep: Callable[[int], bool],
               frames_hint: int) -> list[av.Packet]:
        """Decode `feed` ((packet, rt_pts, rt_dts), a keyframe first) and encode the frames whose
        pts (ticks of the stream's time base, recording time) `keep` accepts."""
        dec = av.CodecContext.create(self.codec, "r")
        dec.thread_type = "AUTO"
        if len(feed) < 64:
            dec.thread_count = 1  # (a short run: threads cost more than they bring, the copy runs beside)
        enc = None
        packets: list[av.Packet] = []

        def take(frames) -> None:
            nonlocal enc
            for f in frames:
                if f.pts is None or not keep(f.pts):
                    continue
                if enc is None:
                    enc = self._encoder(f, frames_hint)
                f.pict_type = av.video.frame.PictureType.NONE
                f.time_base = self.tb
                packets.extend(enc.encode(f))

        skipping = False
        try:
            for pkt, rt_pts, rt_dts in feed:
                pkt.time_base = self.tb
                pkt.pts = self.ticks(rt_pts)
                pkt.dts = self.ticks(rt_dts)
                if keep(pkt.pts) == skipping:  # non-reference pictures not wanted: not even decoded
                    skipping = not skipping
                    dec.skip_frame = "NONREF" if skipping else "DEFAULT"
                take(dec.decode(pkt))
            take(dec.decode(None))
        except av.error.FFmpegError as e:
            raise MediaError(f"cannot decode the frames to re-encode at a cut: {e}") from e
        if enc is not None:
            try:
                packets.extend(enc.encode(None))
            except av.error.FFmpegError as e:
                raise MediaError(f"re-encoding the frames at a cut ({self.encoder}) failed: {e}") from e
        return packets

    def _encoder(self, frame: av.VideoFrame, frames_hint: int):
        enc = av.CodecContext.create(self.encoder, "w")
        enc.width = frame.width
        enc.height = frame.height
        enc.pix_fmt = frame.format.name
        enc.time_base = self.tb
        if self.rate:
            enc.framerate = self.rate
        if self.sar:
            enc.sample_aspect_ratio = self.sar
        for attr in _COLOR_ATTRS:
            value = getattr(frame, attr, None) or self.colors.get(attr)
            if value:
                setattr(enc, attr, value)
        keyint = str(max(frames_hint, 1) + 10)  # one IDR, first
        crf = str(_RECODE_CRF[self.codec])
        if self.encoder == "libx264":
            opts = {"preset": _RECODE_PRESET, "crf": crf, "bf": "0", "g": keyint, "sc_threshold": "0"}
            if self.profile:
                opts["profile"] = self.profile
            if self.level:
                opts["level"] = str(self.level)
        else:
            params = f"log-level=error:bframes=0:repeat-headers=1:keyint={keyint}:scenecut=0:open-gop=0"
            if self.level:
                params += f":level-idc={self.level / 30:g}"
            opts = {"preset": _RECODE_PRESET, "crf": crf, "x265-params": params}
            if self.profile:
                opts["profile"] = self.profile
        enc.options = opts
        try:
            enc.open()
        except av.error.FFmpegError as e:
            raise MediaError(f"cannot open {self.encoder} to re-encode the frames at a cut: {e}") from e
        return enc


# --------------------------------------------------------------------------- accurate mode
class _NeedInband(MediaError):
    """A plain MP4 copy turned out to need a re-encoded tail (the source reorders frames
    without saying so): cut again with parameter sets in band."""


class _Mux:
    """Muxes video / audio packets given in recording time, shifted by base_ms."""

    def __init__(self, out, ovs, oas, vtb, base_ms: float, frame_ms: float):
        self.out = out
        self.ovs = ovs
        self.oas = oas
        self.vtb = vtb
        self.base_ms = base_ms
        self.frame_ms = frame_ms
        self.count = {"video": 0, "audio": 0}
        self.last_dts: dict[str, int] = {}
        self._per_ms: dict = {}  # time base -> ticks per ms
        self.queue: list | None = None  # muxing held (see hold)
        self.extradata: Callable[[], bytes] | None = None  # parameter sets known by the first video packet
        self.v_first: float | None = None  # recording time of the first video frame
        self.v_end: float | None = None  # ... of the end of the last one
        self.a_first: float | None = None
        self.a_end: float | None = None

    def _stamp(self, kind: str, pkt: av.Packet, tb, rt_pts: float, rt_dts: float, dur_ms: float) -> bool:
        key = id(pkt.stream) if tb is None else kind
        per_ms = self._per_ms.get(key)
        if per_ms is None:  # (ticks per ms as a float: Fraction arithmetic is slow)
            per_ms = self._per_ms[key] = 1.0 / (1000.0 * float(pkt.time_base if tb is None else tb))
        dts = round((rt_dts - self.base_ms) * per_ms)
        pts = round((rt_pts - self.base_ms) * per_ms)
        last = self.last_dts.get(kind)
        if last is not None and dts <= last:
            if kind == "audio":
                return False  # overlapping audio (e.g. encoder priming after a discontinuity): drop it
            dts = last + 1
        pts = max(pts, dts)
        self.last_dts[kind] = dts
        if kind == "video":
            pkt.time_base = tb
        pkt.dts = dts
        pkt.pts = pts
        if dur_ms:
            pkt.duration = max(1, round(dur_ms * per_ms))
        return True

    def hold(self) -> None:
        """Queue what is muxed from now on (until release_hold / replay)."""
        self.queue: list | None = []

    def release_hold(self) -> list:
        held, self.queue = self.queue or [], None
        return held

    def replay(self, held: list) -> None:
        for method, args in held:
            method(*args)

    def video(self, pkt: av.Packet, rt_pts: float, rt_dts: float, dur_ms: float) -> None:
        if self.queue is not None:
            self.queue.append((self.video, (pkt, rt_pts, rt_dts, dur_ms)))
            return
        if not self.count["video"] and self.extradata is not None and not self.ovs.codec_context.extradata:
            self.ovs.codec_context.extradata = self.extradata() or None  # (before the header is written)
        dur_ms = dur_ms or self.frame_ms
        self._stamp("video", pkt, self.vtb, rt_pts, rt_dts, dur_ms)
        pkt.stream = self.ovs
        self.out.mux(pkt)
        self.count["video"] += 1
        self.v_first = rt_pts if self.v_first is None else min(self.v_first, rt_pts)
        self.v_end = rt_pts + dur_ms if self.v_end is None else max(self.v_end, rt_pts + dur_ms)

    def audio(self, p: Pkt, dur_ms: float, preroll: bool = False) -> None:
        if self.queue is not None:
            self.queue.append((self.audio, (p, dur_ms, preroll)))
            return
        pkt = p.packet
        if not self._stamp("audio", pkt, None, p.rt_pts, p.rt_dts, 0.0):  # (in its source stream's time base)
            return
        pkt.stream = self.oas
        self.out.mux(pkt)
        if preroll:
            return  # decoded, not presented (before the first video frame; an MP4 edit list skips it)
        self.count["audio"] += 1
        self.a_first = p.rt_pts if self.a_first is None else min(self.a_first, p.rt_pts)
        self.a_end = p.rt_pts + dur_ms if self.a_end is None else max(self.a_end, p.rt_pts + dur_ms)

    def first_ms(self) -> float:
        return self.v_first if self.v_first is not None else (self.a_first or 0.0)

    def duration_ms(self) -> float:
        if self.v_first is not None:
            return self.v_end - self.v_first
        if self.a_first is not None:
            return self.a_end - self.a_first
        return 0.0


class _AccurateCut:
    """One accurate cut: see the module docstring.

    The merged packets (recording time, decode order) go through three phases:
    1. find the GOP holding the start (its keyframe K0 at or before the start) and the next
       keyframe K1; with a start after K0, decode from K0 and re-encode [start, K1) (the head;
       K1's leading pictures, decoded after it, are part of it) and copy from K1 on;
    2. copy packets in decode order, keeping the current GOP's packets, until the first one
       presented at or after the end (J);
    3. read on until decode times reach the end: the packets after J presented before the end
       form the tail, re-encoded from the current GOP's keyframe.
    Leading pictures of the first copied keyframe and of a keyframe after a hole in the
    timeline are dropped (they reference pictures that are not there).  Audio packets are
    released once the video has reached them, and kept when their middle lies between the
    first video frame and the end of the last.
    """

    def __init__(self, sources, vstream, astream, start_ms, end_ms, fmt, mux_opts, progress, inband):
        self.sources = sources
        self.vstream = vstream
        self.astream = astream
        self.start = start_ms
        self.end = end_ms
        self.fmt = fmt
        self.mux_opts = mux_opts
        self.mp4 = fmt in ("mp4", "mov")
        self.progress = progress
        self.force_inband = inband
        self.codec = codec_name(vstream) if vstream is not None else None
        rate = (vstream.average_rate or vstream.guessed_rate) if vstream is not None else None
        self.frame_ms = 1000.0 / float(rate) if rate else 40.0
        self.gap_ms = max(3 * self.frame_ms, 100.0)  # a dts jump this large is a hole in the timeline
        self.conv = _AnnexB(self.codec, vstream) if vstream is not None else None
        self.recoder = _Recoder(self.codec, vstream) if vstream is not None else None
        self.out = None
        self.w: _Mux | None = None
        self.inband = True
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="cut-head")
        self.head_job: concurrent.futures.Future | None = None
        self.head_limit = float("inf")
        # video state
        self.body_first: Pkt | None = None
        self.splice_first = False  # body_first follows re-encoded frames
        self.cur_key: Pkt | None = None
        self.skip_leading = False
        self.gopbuf: list[tuple[av.Packet, float, float]] = []  # copied packets since cur_key (Annex B)
        self.last_src_dts: float | None = None
        self.j: Pkt | None = None  # first packet presented at or after the end
        self.j_gap = False
        self.after_j: list[Pkt] = []
        self.video_done = False
        self.v_progress = float("-inf")  # recording time the copied / re-encoded video reaches
        # audio state
        self.a_dur = 0.0
        self.aq: list[tuple[Pkt, float]] = []  # (packet, duration) waiting for the video
        self.audio_done = astream is None
        self.a_pre: tuple[Pkt, float] | None = None

    # -- output -------------------------------------------------------------------------
    def _open(self, tmp: str, inband: bool, base_ms: float) -> None:
        self.inband = inband
        out = av.open(tmp, "w", format=self.fmt, options=self.mux_opts)
        self.out = out
        ovs = oas = None
        if self.vstream is not None:
            ovs = out.add_stream_from_template(self.vstream, opaque=True)
            _, _, inband_tag, plain_tag = _CODECS[self.codec]
            if inband:
                if self.conv.initial:
                    ovs.codec_context.extradata = self.conv.initial
                if self.mp4:
                    ovs.codec_context.codec_tag = inband_tag
            elif self.mp4 and plain_tag:
                ovs.codec_context.codec_tag = plain_tag  # playable by Apple players
        if self.astream is not None:
            oas = out.add_stream_from_template(self.astream, opaque=True)
        self.w = _Mux(out, ovs, oas, self.vstream.time_base if self.vstream is not None else None, base_ms,
                      self.frame_ms)
        if inband:  # (a source without extradata: the parameter sets met in band by then)
            self.w.extradata = self.conv.annexb_sets

    def run(self, tmp: str) -> _Mux:
        merged = heapq.merge(*(s.packets() for s in self.sources), key=lambda p: p.rt_dts)
        try:
            if self.vstream is None:
                self._audio_only(merged, tmp)
            else:
                self._video_cut(iter(merged), tmp)
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
            if self.out is not None:
                self.out.close()
        return self.w

    def _audio_only(self, merged, tmp: str) -> None:
        for p in merged:
            if p.kind != "audio":
                continue
            dur = p.dur_ms or self.a_dur or 1.0
            self.a_dur = dur
            mid = p.rt_pts + dur / 2
            if mid < self.start - _EPS_MS:
                continue
            if mid >= self.end - _EPS_MS:
                break
            if self.out is None:
                self._open(tmp, False, p.rt_pts)
            if self.progress is not None:
                self.progress.at(p.rt_pts)
            self.w.audio(p, dur)
        if self.w is None or not self.w.count["audio"]:
            raise MediaError(
                f"no media data between {self.start:.0f} ms and {self.end:.0f} ms in the available segments")

    # -- phase 1 ------------------------------------------------------------------------
    def _find_start(self, it) -> tuple[list[Pkt], list[Pkt], Pkt | None]:
        """(GOP holding the start, audio since about its keyframe, next keyframe or None)."""
        gop: list[Pkt] = []
        abuf: list[Pkt] = []
        keep_audio_ms = 200.0
        for p in it:
            if p.kind == "video":
                if p.key:
                    if gop and p.rt_pts > self.start + _EPS_MS:
                        if self.start - _gop_end(gop) <= _GAP_MS:
                            return gop, abuf, p
                        # the start lies in a hole of the timeline: begin after it, not before
                    gop = [p]
                    abuf = [a for a in abuf if a.rt_pts >= p.rt_pts - keep_audio_ms]
                elif gop:
                    gop.append(p)
            else:
                abuf.append(p)
                if len(abuf) > 512 and gop:
                    abuf = [a for a in abuf if a.rt_pts >= gop[0].rt_pts - keep_audio_ms]
        return gop, abuf, None

    def _video_cut(self, it, tmp: str) -> None:
        start, end = self.start, self.end
        gop, abuf, k1 = self._find_start(it)
        if not gop:
            raise MediaError(f"no media data between {start:.0f} ms and {end:.0f} ms in the available segments")
        k0 = gop[0]
        # K0's leading pictures precede it (and the start): never needed
        gop = [k0] + [q for q in gop[1:] if q.rt_pts >= k0.rt_pts - _EPS_MS]
        backlog: list[Pkt] = list(abuf)
        head_rt: list[float] = []
        if k0.rt_pts < start - _EPS_MS:
            # the head: frames [start, K1) decoded from K0 (with K1's leading pictures, decoded after K1)
            lead1: list[Pkt] = []
            if k1 is not None:
                for p in it:
                    if p.kind != "video":
                        backlog.append(p)
                    elif not p.key and p.rt_pts < k1.rt_pts - _EPS_MS:
                        lead1.append(p)
                    else:
                        backlog.append(p)
                        break
                k1_gap = k1.rt_dts - gop[-1].rt_dts > self.gap_ms
                if k1_gap:
                    lead1 = []  # they reference pictures of the hole
            hi = end if k1 is None else min(end, k1.rt_pts)
            lo_t, hi_t = self.recoder.ticks(start - _EPS_MS), self.recoder.ticks(hi - _EPS_MS)
            head_rt = sorted(q.rt_pts for q in gop + lead1 if lo_t <= self.recoder.ticks(q.rt_pts) < hi_t)
            if head_rt:
                # decoded and re-encoded in a thread (the codecs release the GIL) while the copy goes on;
                # the packets it is given are its own (the converted K1 is copied as well)
                feed = [self._annexb_entry(q) for q in gop + ([k1] + lead1 if lead1 else [])]
                feed = [(av.Packet(bytes(pkt)), rt_pts, rt_dts) for pkt, rt_pts, rt_dts in feed if pkt is not None]
                self.head_job = self.pool.submit(self.recoder.recode, feed, lambda t: lo_t <= t < hi_t,
                                                 len(feed))
            if k1 is not None and k1.rt_pts < end - _EPS_MS:
                self.body_first = k1
                self.splice_first = bool(head_rt)
                backlog = [k1] + backlog
        else:
            self.body_first = k0
            self.splice_first = True  # (an open-GOP keyframe starts the output: made IDR / BLA)
            backlog = gop + ([k1] if k1 is not None else []) + backlog
        if not head_rt and self.body_first is None:
            raise MediaError(f"no video frame between {start:.0f} ms and {end:.0f} ms")

        # output: parameter sets in band, unless this MP4 is a plain copy (nothing re-encoded at the
        # head, and the source does not reorder frames, so nothing will be at the tail)
        reorders = bool(self.vstream.codec_context.has_b_frames)
        inband = self.force_inband or not self.mp4 or bool(head_rt) or reorders
        v_first = head_rt[0] if head_rt else self.body_first.rt_pts
        if self.mp4:
            base = v_first  # the first frame at 0: no edit list needed for the video
        elif head_rt:
            delay = max(0.0, k1.rt_pts - k1.rt_dts) if self.body_first is not None else 0.0
            base = v_first - delay  # (the head's first dts, see _join_head)
        else:
            base = min(q.rt_dts for q in backlog if q.kind == "video")
        self._open(tmp, inband, base)
        self.v_first = v_first
        if head_rt:
            self.w.hold()  # what is copied waits for the head
            self.v_progress = head_rt[-1] + self.frame_ms
            self.last_src_dts = k1.rt_dts if k1 is not None else None
            self.head_limit = k1.rt_dts if self.body_first is not None else float("inf")
        if self.body_first is None:
            self.video_done = True

        for p in sorted(backlog, key=lambda q: q.rt_dts):
            self._packet(p)
        for p in it:
            if self.video_done and self.audio_done:
                break
            self._packet(p)
            if self.head_job is not None and (self.head_job.done() or len(self.w.queue) > _HOLD_MAX):
                self._join_head()
        self._join_head()
        self._finish_video()
        self._release_audio(final=True)
        if not self.w.count["video"]:
            raise MediaError(f"no video frame between {start:.0f} ms and {end:.0f} ms")

    def _join_head(self) -> None:
        """Mux the re-encoded head (when its thread is done), then what the copy queued meanwhile."""
        if self.head_job is None:
            return
        job, self.head_job = self.head_job, None
        packets = job.result()
        # no B-frames in the head: dts = pts, except for the last frames, whose dts are squeezed
        # just below the first copied packet's (the copied part's reorder delay)
        tick = 1000.0 * float(self.vstream.time_base)
        tb = self.vstream.time_base
        ordered = sorted(((pk, pk.pts * tb * 1000.0) for pk in packets), key=lambda x: x[1])
        head = self.w.release_hold()
        for i, (pk, rt) in enumerate(ordered):
            self.w.video(pk, rt, min(rt, self.head_limit - (len(ordered) - i) * tick), self.frame_ms)
        self.w.replay(head)

    def _annexb_entry(self, p: Pkt) -> tuple[av.Packet | None, float, float]:
        """Convert a packet (decoded for the head and / or copied); the result is cached on it."""
        if not hasattr(p, "_annexb"):
            p._annexb = self.conv.convert(p)
        return p._annexb, p.rt_pts, p.rt_dts

    def _packet(self, p: Pkt) -> None:
        if p.kind == "video":
            self._video(p)
        else:
            self._audio(p)

    # -- phases 2 and 3 -------------------------------------------------------------------
    def _video(self, p: Pkt) -> None:
        if self.video_done:
            return
        if self.progress is not None:
            self.progress.at(p.rt_pts)
        gap = self.last_src_dts is not None and p.rt_dts - self.last_src_dts > self.gap_ms
        self.last_src_dts = p.rt_dts if self.last_src_dts is None else max(self.last_src_dts, p.rt_dts)
        if self.j is not None:
            if p.rt_dts >= self.end - _EPS_MS:
                self._finish_video()
            else:
                self.after_j.append(p)
            return
        if p.key and (p is self.body_first or self.cur_key is not None):
            if p.rt_pts >= self.end - _EPS_MS:
                self.j = p  # (the GOP kept so far is what the tail decodes from)
                self.j_gap = gap
                return
            self.cur_key = p
            self.skip_leading = p is self.body_first or gap
            self.gopbuf = []
            splice = (p is self.body_first and self.splice_first) or (gap and p is not self.body_first)
        elif self.cur_key is None:
            return  # before the first copied keyframe (K1's leading pictures: in the head)
        elif p.rt_pts < self.cur_key.rt_pts - _EPS_MS and self.skip_leading:
            return  # a leading picture whose references are not in the output
        else:
            splice = False
        if p.rt_pts >= self.end - _EPS_MS:
            self.j = p
            self.j_gap = gap
            return
        if self.inband:
            pkt = self._annexb_entry(p)[0]
            if pkt is None:
                return
            pkt = self.conv.splice(pkt) if splice else self.conv.fix(pkt)
        else:
            pkt = p.packet
        self.w.video(pkt, p.rt_pts, p.rt_dts, p.dur_ms)
        self.v_progress = max(self.v_progress, p.rt_pts + (p.dur_ms or self.frame_ms))
        if self.inband:
            self.gopbuf.append((pkt, p.rt_pts, p.rt_dts))
        self._release_audio()

    def _finish_video(self) -> None:
        """End of the video: re-encode the tail (frames after J in decode order presented before the end)."""
        if self.video_done:
            return
        self.video_done = True
        j = self.j
        if j is None:
            return
        tail = [q for q in self.after_j if q.rt_pts < self.end - _EPS_MS]
        if j.key and self.j_gap:
            tail = [q for q in tail if q.rt_pts >= j.rt_pts - _EPS_MS]  # leading pictures after a hole
        if not tail:
            return
        if not self.inband:
            raise _NeedInband("the source reorders frames: the tail needs re-encoding")
        key_pts = self.gopbuf[0][1] if self.gopbuf else j.rt_pts
        feed = [e for e in self.gopbuf if e[1] >= key_pts - _EPS_MS]  # without the GOP's leading pictures
        last = self.after_j.index(tail[-1])
        for q in [j] + self.after_j[:last + 1]:
            pkt = self._annexb_entry(q)[0]
            if pkt is not None:
                feed.append((self.conv.fix(pkt), q.rt_pts, q.rt_dts))
        wanted = {self.recoder.ticks(q.rt_pts) for q in tail}
        packets = self.recoder.recode(feed, lambda t: t in wanted, len(feed))
        # decode times: those of J and the packets after it (each tail frame was decoded after
        # J, so its pts is >= the i-th of them: pts >= dts holds, and they follow the copied ones)
        pool = sorted([j.rt_dts] + [q.rt_dts for q in self.after_j])
        tb = self.vstream.time_base
        for i, pk in enumerate(sorted(packets, key=lambda x: x.pts)):
            rt = pk.pts * tb * 1000.0
            self.w.video(pk, rt, pool[i] if i < len(pool) else rt, self.frame_ms)
            self.v_progress = max(self.v_progress, rt + self.frame_ms)

    # -- audio --------------------------------------------------------------------------
    def _audio(self, p: Pkt) -> None:
        if self.audio_done or self.w.oas is None:
            return
        dur = p.dur_ms or self.a_dur or 1.0
        self.a_dur = dur
        mid = p.rt_pts + dur / 2
        if mid < self.v_first - _EPS_MS:
            self.a_pre = (p, dur)
            return
        if mid >= self.end + 2 * self.frame_ms:
            self.audio_done = True  # past any frame before the end
            return
        self.aq.append((p, dur))
        self._release_audio()

    def _release_audio(self, final: bool = False) -> None:
        """Mux the waiting audio packets whose middle the video has reached (final: the rest
        whose middle lies before the end of the last frame)."""
        if not self.aq:
            return
        limit = (self.w.v_end if self.w.v_end is not None else float("-inf")) if final else self.v_progress
        n = 0
        for p, dur in self.aq:
            if p.rt_pts + dur / 2 >= limit - _EPS_MS:
                break
            if self.a_pre is not None:
                # MP4: the packet before the first one kept goes first, as pre-roll: an AAC frame decodes
                # right only after the one before it; its time before the video start makes the muxer
                # write an edit list that skips it (as for an encoder's priming samples)
                pre, pre_dur = self.a_pre
                self.a_pre = None
                if self.mp4 and not self.w.count["audio"] and abs(pre.rt_pts + pre_dur - p.rt_pts) < 1.0:
                    self.w.audio(pre, pre_dur, preroll=True)
            self.w.audio(p, dur)
            n += 1
        del self.aq[:n]
        if final:
            self.aq.clear()
