"""Stream-copy a clip out of downloaded DASH / HLS segments (export_type 0)."""
from __future__ import annotations

import heapq
import os
from typing import Mapping

import av

from ._common import ClipInfo, atomic_output, codec_name, container_format
from ._source import Pkt, open_sources
from .errors import MediaError
from .select import Selection

__all__ = ["ClipInfo", "cut_clip"]


class _Writer:
    """Muxes recording-time packets into an output container, shifted by `base_ms`."""

    def __init__(self, out: av.container.OutputContainer, ovs, oas):
        self.out = out
        self.ost = {"video": ovs, "audio": oas}
        self.base_ms = 0.0
        self.last_dts: dict[str, int] = {}
        self.first_pts: dict[str, float] = {}
        self.end_pts: dict[str, float] = {}
        self.count: dict[str, int] = {"video": 0, "audio": 0}
        self._last_rt: dict[str, float] = {}
        self._frame_ms: dict[str, float] = {}
        self.video_bsf = None  # smart cut: length-prefixed (mp4) packets -> Annex B

    def write(self, p: Pkt) -> None:
        ost = self.ost[p.kind]
        if ost is None:
            return
        pkt = p.packet
        tb = pkt.time_base
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
        if p.kind == "video" and self.video_bsf is not None and not p.encoded:
            for q in self.video_bsf.filter(pkt):
                q.time_base = tb
                q.stream = ost
                self.out.mux(q)
        else:
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


def cut_clip(
    *,
    selection: Selection,
    files: Mapping[str, str],
    out_path: str,
    container: str = "ts",
    accurate: bool = False,
) -> ClipInfo:
    """Stream-copy [selection.start_ms, selection.end_ms) into `out_path`.

    The output starts at the video keyframe at or before the requested start (its
    distance to the start is returned as ``lead_ms``), ends before the first video
    packet whose decode time reaches the requested end, and its timestamps start
    at 0 (video and audio shifted by the same amount).  Keys missing from `files`
    are skipped; a hole in the timeline is left as a jump in the output.

    accurate=True ("smart cut", MPEG-TS output, H.264 / HEVC): the frames from the
    requested start up to the next keyframe are re-encoded (libx264 / libx265, with
    in-band parameter sets) and the rest is stream-copied, so the clip starts on the
    exact frame and lead_ms is 0.  For other containers / codecs the keyframe cut
    above is done.
    """
    fmt, opts = container_format(container)
    start_ms, end_ms = float(selection.start_ms), float(selection.end_ms)
    sources = open_sources(selection, files)
    try:
        vstream = next((s.vstream for s in sources if s.vstream is not None), None)
        astream = next((s.astream for s in sources if s.astream is not None), None)
        with atomic_output(out_path, "stream copy") as tmp:
            out = av.open(tmp, "w", format=fmt, options=opts)
            try:
                # opaque: reuse the decoder's codec (no encoder needed to stream-copy, e.g. mp3float)
                ovs = out.add_stream_from_template(vstream, opaque=True) if vstream is not None else None
                oas = out.add_stream_from_template(astream, opaque=True) if astream is not None else None
                if ovs is not None and fmt in ("mp4", "mov") and codec_name(vstream) == "hevc":
                    ovs.codec_context.codec_tag = "hvc1"  # playable by Apple players
                w = _Writer(out, ovs, oas)
                smart = None
                if accurate and fmt == "mpegts" and codec_name(vstream) in _HEAD_ENCODERS:
                    main = next(s for s in sources if s.vstream is vstream)
                    smart = _SmartHead(vstream, from_mp4=_is_mp4(main.container))
                lead = _copy(sources, w, start_ms, end_ms, has_video=vstream is not None, smart=smart)
            finally:
                out.close()
        size = os.path.getsize(out_path)
        return ClipInfo(
            path=out_path,
            duration_ms=w.duration_ms(),
            video_codec=codec_name(vstream),
            audio_codec=codec_name(astream) if w.count["audio"] else None,
            width=vstream.codec_context.width if vstream is not None else None,
            height=vstream.codec_context.height if vstream is not None else None,
            size_bytes=size,
            lead_ms=lead,
        )
    finally:
        for s in sources:
            s.close()


_HEAD_ENCODERS = {"h264": ("libx264", "h264_mp4toannexb"), "hevc": ("libx265", "hevc_mp4toannexb")}


def _is_mp4(container) -> bool:
    return any(n in ("mov", "mp4", "m4a", "3gp", "3g2", "mj2") for n in container.format.name.split(","))


class _SmartHead:
    """Re-encodes the partial GOP at the start of a clip (smart cut)."""

    def __init__(self, vstream, *, from_mp4: bool):
        self.vstream = vstream
        self.encoder, bsf_name = _HEAD_ENCODERS[codec_name(vstream)]
        # copied packets from MP4 sources are length-prefixed: MPEG-TS needs Annex B with
        # in-band parameter sets, like the re-encoded head has
        self.bsf = av.BitStreamFilterContext(bsf_name, in_stream=vstream) if from_mp4 else None

    def encode(self, gop: list[Pkt], next_key: Pkt | None, start_ms: float, end_ms: float) -> list[Pkt]:
        tb = gop[0].packet.time_base
        dec = self.vstream.codec_context
        frames = []
        try:
            for q in gop:
                pkt = q.packet
                pkt.pts = int(round(q.rt_pts / 1000.0 / tb))
                pkt.dts = int(round(q.rt_dts / 1000.0 / tb))
                frames.extend(dec.decode(pkt))
            frames.extend(dec.decode(None))
        except av.error.FFmpegError as e:
            raise MediaError(f"cannot decode the first frames of the clip: {e}") from e
        keep = [f for f in frames if f.pts is not None and start_ms - _EPS_MS <= f.pts * tb * 1000.0 < end_ms - _EPS_MS]
        if not keep:
            return []
        # the copied part keeps its reorder delay (dts < pts with B-frames): give the head the same
        delay_ms = max(0.0, next_key.rt_pts - next_key.rt_dts) if next_key is not None else 0.0
        enc = av.CodecContext.create(self.encoder, "w")
        enc.width = dec.width
        enc.height = dec.height
        enc.pix_fmt = "yuv420p"
        enc.time_base = tb
        if self.vstream.average_rate:
            enc.framerate = self.vstream.average_rate
        if dec.sample_aspect_ratio:
            enc.sample_aspect_ratio = dec.sample_aspect_ratio
        opts = {"preset": "veryfast", "crf": "18", "bf": "0"}
        if self.encoder == "libx265":
            opts["x265-params"] = "log-level=error:bframes=0:repeat-headers=1"
        enc.options = opts
        out: list[Pkt] = []
        try:
            packets = []
            for f in keep:
                f.pict_type = av.video.frame.PictureType.NONE
                f.time_base = tb
                packets.extend(enc.encode(f))
            packets.extend(enc.encode(None))
        except av.error.FFmpegError as e:
            raise MediaError(f"cannot re-encode the first frames of the clip ({self.encoder}): {e}") from e
        for pkt in packets:
            rt = pkt.pts * tb * 1000.0
            out.append(Pkt(kind="video", packet=pkt, rt_pts=rt, rt_dts=rt - delay_ms, dur_ms=0.0,
                           key=bool(pkt.is_keyframe), encoded=True))
        return out


_EPS_MS = 0.5  # timestamp comparisons tolerate float rounding (frames are >= 1 ms apart)
_GAP_MS = 500.0  # a GOP ending this long before the requested start does not contain it


def _gop_end(gop: list[Pkt]) -> float:
    last = max(gop, key=lambda q: q.rt_pts)
    dur = last.dur_ms
    if not dur and len(gop) > 1:
        dur = abs(gop[-1].rt_pts - gop[-2].rt_pts)
    return last.rt_pts + dur


def _copy(sources, w: _Writer, start_ms: float, end_ms: float, *, has_video: bool, smart=None) -> float:
    """Route the sources' packets, merged in recording time, from the keyframe at or before
    start_ms (or after a hole the start lies in) up to end_ms into `w`; return lead_ms.

    `w` is a _Writer, or anything with its interface (``write(Pkt)``, ``base_ms``, ``count``,
    ``video_bsf``): encode_selection passes a sink that decodes the packets instead of muxing.
    """
    merged = heapq.merge(*(s.packets() for s in sources), key=lambda p: p.rt_dts)
    committed = False
    start_pts = 0.0  # recording time where the output begins (keyframe pts)
    gop: list[Pkt] = []
    abuf: list[Pkt] = []
    done = {"video": not has_video, "audio": not any(s.astream is not None for s in sources)}

    def commit(next_key: Pkt | None = None) -> None:
        nonlocal committed, start_pts
        committed = True
        head: list[Pkt] = []
        if has_video and smart is not None and gop[0].rt_pts < start_ms - _EPS_MS:
            head = smart.encode(gop, next_key, start_ms, end_ms)
        if head:
            # re-encoded frames from the start replace the GOP; the copy resumes at next_key
            w.video_bsf = smart.bsf
            start_pts = head[0].rt_pts
            w.base_ms = min(p.rt_dts for p in head)
            gop[:] = head
        elif has_video:
            start_pts = gop[0].rt_pts
            w.base_ms = min(p.rt_dts for p in gop)
            if smart is not None and smart.bsf is not None:
                w.video_bsf = smart.bsf
        for p in sorted(gop + abuf, key=lambda q: q.rt_dts):
            emit(p)
        gop.clear()
        abuf.clear()

    def emit(p: Pkt) -> None:
        if p.kind == "video":
            if p.rt_dts >= end_ms - _EPS_MS:
                done["video"] = True
                return
        else:
            if p.rt_pts >= end_ms - _EPS_MS:
                done["audio"] = True
                return
            if p.rt_pts < w.base_ms or (has_video and p.rt_pts < start_pts - 0.5):
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
                        commit(p)
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
    if not committed or not (w.count["video"] or w.count["audio"]):
        raise MediaError(
            f"no media data between {start_ms:.0f} ms and {end_ms:.0f} ms in the available segments"
        )
    if has_video and not w.count["video"]:
        raise MediaError(f"no video frame between {start_ms:.0f} ms and {end_ms:.0f} ms")
    return round(max(0.0, start_ms - start_pts), 3)
