"""Re-encode a clip to H.264 / H.265 (export_type 1 / 2), frame accurate.

Two entry points share the encoder side (``_ClipEncoder``: encoder choice and options,
trimming, audio copy / AAC re-encode, muxing):

* ``encode_clip`` decodes a media file (e.g. the MPEG-TS that ``cut_clip`` wrote);
* ``encode_selection`` decodes the downloaded segments of a selection directly, in
  recording time (as ``cut_clip`` reads them), without an intermediate file.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from fractions import Fraction
from typing import Callable, Mapping

import av

from ._common import ClipInfo, Progress, atomic_output, container_format
from ._source import Pkt, describe_skipped, open_sources, skipped_of
from .cut import _EPS_MS, _copy
from .errors import MediaError
from .select import Selection, lack_length

__all__ = ["encode_clip", "encode_selection", "available_hw_encoder"]

log = logging.getLogger(__name__)

_SOFTWARE = {"h264": "libx264", "h265": "libx265"}
_HARDWARE = {"h264": "h264_nvenc", "h265": "hevc_nvenc"}
_hw_cache: dict[str, str | None] = {}

# x264-style preset -> NVENC preset
_NVENC_PRESET = {
    "ultrafast": "p1", "superfast": "p2", "veryfast": "p3", "faster": "p3", "fast": "p4",
    "medium": "p5", "slow": "p6", "slower": "p7", "veryslow": "p7", "placebo": "p7",
}


def _norm_codec(codec: str) -> str:
    c = (codec or "").lower().replace(".", "")
    c = {"avc": "h264", "x264": "h264", "hevc": "h265", "x265": "h265"}.get(c, c)
    if c not in _SOFTWARE:
        raise MediaError(f"unsupported codec {codec!r} (use 'h264' or 'h265')")
    return c


def available_hw_encoder(codec: str) -> str | None:
    """'h264_nvenc' / 'hevc_nvenc' when that encoder can really encode here, else None (cached)."""
    codec = _norm_codec(codec)
    if codec in _hw_cache:
        return _hw_cache[codec]
    name = _HARDWARE[codec]
    result = None
    try:
        ctx = av.CodecContext.create(name, "w")
        ctx.width, ctx.height = 256, 144
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = Fraction(1, 25)
        ctx.framerate = Fraction(25, 1)
        ctx.open()
        frame = av.VideoFrame(256, 144, "yuv420p")
        for p in frame.planes:
            p.update(b"\x80" * p.buffer_size)
        frame.pts = 0
        ctx.encode(frame)
        ctx.encode(None)
        result = name
    except Exception as e:  # no GPU / driver / encoder not built in
        log.debug("hardware encoder %s unavailable: %s", name, e)
    _hw_cache[codec] = result
    return result


def _encoder_options(name: str, preset: str, crf: int, fps: Fraction | None) -> dict[str, str]:
    gop = str(int(round(float(fps) * 2))) if fps else "50"
    # frame threads, as the ffmpeg command line uses: PyAV opens encoders with slice threads,
    # which parallelise worse (bench: 1.03x -> 0.98x of ffmpeg's wall time for a 720p H.264 clip)
    if name == "libx264":
        return {"preset": preset, "crf": str(crf), "g": gop, "thread_type": "frame"}
    if name == "libx265":
        return {"preset": preset, "crf": str(crf), "g": gop, "x265-params": "log-level=error", "thread_type": "frame"}
    # nvenc
    return {"preset": _NVENC_PRESET.get(preset, preset if preset.startswith("p") else "p4"), "rc": "vbr",
            "cq": str(crf), "b": "0", "g": gop}


class _EncoderFailed(MediaError):
    pass


class _SeekOvershoot(MediaError):
    pass


def _with_fallback(codec: str, hwaccel: bool, attempt: Callable[[str], ClipInfo]) -> ClipInfo:
    """attempt(encoder name) with NVENC first when `hwaccel` and it works, then the software encoder."""
    encoders = []
    if hwaccel:
        hw = available_hw_encoder(codec)
        if hw:
            encoders.append(hw)
    encoders.append(_SOFTWARE[codec])
    last_error: Exception | None = None
    for i, name in enumerate(encoders):
        try:
            return attempt(name)
        except _EncoderFailed as e:
            last_error = e
            if i + 1 < len(encoders):
                log.warning("encoder %s failed (%s), falling back to %s", name, e, encoders[i + 1])
                continue
            raise MediaError(f"encoding with {name} failed: {e}") from e
    raise MediaError(f"encoding failed: {last_error}")  # pragma: no cover


def _frame_rate(vin) -> Fraction:
    return vin.average_rate or vin.guessed_rate or Fraction(25)


# --------------------------------------------------------------------------- encode_clip
def encode_clip(
    *,
    src_path: str,
    out_path: str,
    codec: str,
    container: str = "ts",
    trim_start_ms: float = 0.0,
    duration_ms: float | None = None,
    preset: str = "veryfast",
    crf: int = 23,
    threads: int = 0,
    hwaccel: bool = False,
) -> ClipInfo:
    """Decode `src_path`, keep [trim_start_ms, trim_start_ms + duration_ms) and encode it.

    Times are relative to the first video timestamp of the source.  Video: libx264 /
    libx265 (or NVENC when `hwaccel` and it works; software otherwise).  Audio: AAC
    packets are copied, other codecs re-encoded to AAC.  Output timestamps start at 0;
    ``start_ms`` is where the first frame kept is, in the same time (``lead_ms`` 0).
    """
    codec = _norm_codec(codec)
    fmt, mux_opts = container_format(container)
    if duration_ms is not None and duration_ms <= 0:
        raise MediaError(f"duration_ms must be positive, got {duration_ms}")
    if not os.path.isfile(src_path):
        raise MediaError(f"source file {src_path} does not exist")

    def attempt(name: str) -> ClipInfo:
        args = (src_path, out_path, name, fmt, mux_opts, float(trim_start_ms), duration_ms, preset, crf, threads)
        if trim_start_ms > _SEEK_THRESHOLD_MS:
            try:
                return _encode(*args, seek=True)
            except _SeekOvershoot:
                log.debug("seek in %s overshot, decoding from the start", src_path)
        return _encode(*args, seek=False)

    return _with_fallback(codec, hwaccel, attempt)


_SEEK_THRESHOLD_MS = 10_000


def _encode(src_path, out_path, enc_name, fmt, mux_opts, trim_start_ms, duration_ms, preset, crf, threads, *,
            seek: bool) -> ClipInfo:
    try:
        inp = av.open(src_path)
    except Exception as e:
        raise MediaError(f"cannot open {os.path.basename(src_path)}: {e}") from e
    try:
        if not inp.streams.video:
            raise MediaError(f"{os.path.basename(src_path)} has no video stream")
        vin = inp.streams.video[0]
        ain = inp.streams.audio[0] if inp.streams.audio else None
        vin.thread_type = "AUTO"
        vtb = vin.time_base
        if vin.codec_context.width <= 0 or vin.codec_context.height <= 0:
            raise MediaError(f"{os.path.basename(src_path)}: video stream has no picture size")
        v0 = vin.start_time
        if v0 is None:
            v0 = 0
        t_from = trim_start_ms
        t_to = trim_start_ms + duration_ms if duration_ms is not None else None
        if seek:
            try:  # to the keyframe before (trim start - 1 s); checked on the first decoded frame
                inp.seek(int(v0 + (trim_start_ms - 1000.0) / 1000.0 / vtb), stream=vin, backward=True)
            except av.error.FFmpegError:
                raise _SeekOvershoot("seek failed") from None

        with atomic_output(out_path, "encoding") as tmp:
            out = av.open(tmp, "w", format=fmt, options=mux_opts)
            try:
                enc = _ClipEncoder(out, fmt, enc_name, vin, ain, preset=preset, crf=crf, threads=threads,
                                   v0=v0, t_from=t_from, t_to=t_to)
                enc.check_seek = seek
                streams = [vin] + ([ain] if ain is not None else [])
                for pkt in inp.demux(streams):
                    if pkt.stream_index == vin.index:
                        if pkt.size == 0:
                            continue  # end-of-stream marker: the decoder is flushed below
                        for frame in _decode(vin, pkt):
                            enc.video_frame(frame)
                        if enc.video_done and (ain is None or enc.audio_done):
                            break
                    elif enc.oas is not None:
                        if pkt.dts is None and pkt.pts is None:
                            continue
                        enc.audio_packet(pkt)
                        if enc.video_done and enc.audio_done:
                            break
                if not enc.video_done:
                    for frame in _decode(vin, None):
                        enc.video_frame(frame)
                if not enc.started:
                    raise MediaError(
                        f"no video frame between {t_from:.0f} ms and "
                        f"{'the end' if t_to is None else f'{t_to:.0f} ms'} of {os.path.basename(src_path)}"
                    )
                enc.finish()
            finally:
                out.close()
        return enc.info(out_path)
    finally:
        inp.close()


# --------------------------------------------------------------------------- encode_selection
def encode_selection(
    *,
    selection: Selection,
    files: Mapping[str, str],
    out_path: str,
    codec: str,
    container: str = "ts",
    preset: str = "veryfast",
    crf: int = 23,
    threads: int = 0,
    hwaccel: bool = False,
    on_progress: Callable[[float], None] | None = None,
) -> ClipInfo:
    """Encode [selection.start_ms, selection.end_ms) straight from the downloaded segments.

    One pass, no intermediate file: the same result as ``cut_clip`` to a file followed by
    ``encode_clip(trim_start_ms=lead_ms, duration_ms=end - start)`` on it.  The segments
    are read as ``cut_clip`` reads them (tracks merged in recording time; keys missing from
    `files` skipped, a hole in the timeline left as a jump, a start inside a hole begins
    after it); decoding starts at the video keyframe at or before the start, and the frames
    presented in [start, end) are encoded (encoder, options, NVENC fallback and audio as
    ``encode_clip``): the first frame is the one presented at the start (or the first after it),
    the last the last one presented before the end, as ``cut_clip(mode="accurate")`` cuts.
    Output timestamps start at 0; ``lead_ms`` is 0 and ``start_ms`` the recording time of the
    first frame.  Damaged segments are skipped as ``cut_clip`` skips them (``ClipInfo.skipped``,
    ``skipped_ms``).

    on_progress(fraction): called at most every 0.25 s with frames encoded / frames expected
    (0..1, non-decreasing), and with 1.0 once the output is in place.  An exception it raises
    aborts the encode (nothing is left behind).
    """
    codec = _norm_codec(codec)
    fmt, mux_opts = container_format(container)
    progress = _FrameProgress(on_progress) if on_progress is not None else None

    def attempt(name: str) -> ClipInfo:
        return _encode_selection(selection, files, out_path, name, fmt, mux_opts, preset, crf, threads, progress)

    info = _with_fallback(codec, hwaccel, attempt)
    if progress is not None:
        progress.done()
    return info


def _encode_selection(selection, files, out_path, enc_name, fmt, mux_opts, preset, crf, threads,
                      progress: "_FrameProgress | None") -> ClipInfo:
    start_ms, end_ms = float(selection.start_ms), float(selection.end_ms)
    sources = open_sources(selection, files, decode_check=True)  # (the clip is decoded anyway)
    try:
        vin = next((s.vstream for s in sources if s.vstream is not None), None)
        ain = next((s.astream for s in sources if s.astream is not None), None)
        if vin is None:
            raise MediaError("the selected segments have no video")
        if vin.codec_context.width <= 0 or vin.codec_context.height <= 0:
            raise MediaError("the selected video has no picture size")
        vin.thread_type = "AUTO"
        if progress is not None:
            covered = end_ms - start_ms - _lack_ms(selection, files)
            progress.expect(covered * float(_frame_rate(vin)) / 1000.0)
        with atomic_output(out_path, "encoding") as tmp:
            out = av.open(tmp, "w", format=fmt, options=mux_opts)
            try:
                # the decoded frames carry recording time (in the stream's time base): trim on it directly
                enc = _ClipEncoder(out, fmt, enc_name, vin, ain, preset=preset, crf=crf, threads=threads,
                                   v0=0, t_from=start_ms, t_to=end_ms,
                                   on_frame=progress.frame if progress is not None else None)
                sink = _DecodeSink(enc, vin, ain)
                try:
                    _copy(sources, sink, start_ms, end_ms, has_video=True)
                    sink.flush()
                    if not enc.started:
                        raise MediaError(f"no video frame between {start_ms:.0f} ms and {end_ms:.0f} ms "
                                         "in the available segments")
                except MediaError as e:
                    skipped, _ = skipped_of(selection, files, sources)
                    if not skipped or isinstance(e, (_EncoderFailed, _SeekOvershoot)):
                        raise
                    raise MediaError(f"{e} (damaged segments skipped: {describe_skipped(skipped)})") from e
                enc.finish()
            finally:
                out.close()
        skipped, skipped_ms = skipped_of(selection, files, sources)
        return dataclasses.replace(enc.info(out_path), skipped=skipped, skipped_ms=skipped_ms)
    finally:
        for s in sources:
            s.close()


def _lack_ms(selection: Selection, files: Mapping[str, str]) -> int:
    missing = [k for k in selection.keys() if not (files.get(k) and os.path.isfile(files[k]))]
    return lack_length(selection, missing)


class _FrameProgress(Progress):
    """Frames encoded against frames expected (an encoder fallback starts counting again)."""

    def __init__(self, callback: Callable[[float], None]):
        super().__init__(callback)
        self.frames = 0

    def expect(self, frames: float) -> None:
        self.restart(frames)
        self.frames = 0

    def frame(self) -> None:
        self.frames += 1
        self.update(self.frames)


class _DecodeSink:
    """What ``cut._copy`` writes to, for encode_selection: decodes instead of muxing.

    Packets arrive in recording time (``Pkt.rt_pts`` / ``rt_dts``, ms); their timestamps are
    rewritten to recording time in their stream's time base, so decoded frames and audio
    packets carry recording time and ``_ClipEncoder`` trims them on [start, end).

    At a hole in the timeline (segments missing or skipped as damaged; the sources resume on a
    keyframe, without its leading pictures) the decoder is drained and reset: the keyframe after
    it starts a new sequence (an open-GOP keyframe, a non-IDR I picture, would otherwise be decoded
    as a continuation of the pictures before the hole, and its frames put out of order).
    """

    def __init__(self, enc: "_ClipEncoder", vin, ain):
        self.enc = enc
        self.vin = vin
        self.ain = ain
        self.base_ms = 0.0  # set by _copy (where a stream copy would begin); unused here
        self.count = {"video": 0, "audio": 0}
        self.video_bsf = None
        self._flushed = False
        rate = _frame_rate(vin)
        self.gap_ms = max(3000.0 / float(rate), 100.0)  # a dts jump this large is a hole (as cut's)
        self.last_dts: float | None = None

    def write(self, p: Pkt) -> None:
        pkt = p.packet
        tb = pkt.time_base
        pkt.pts = int(round(p.rt_pts / 1000.0 / tb))
        pkt.dts = int(round(p.rt_dts / 1000.0 / tb))
        self.count[p.kind] += 1
        if p.kind == "video":
            if self.enc.video_done:
                return
            if p.key and self.last_dts is not None and p.rt_dts - self.last_dts > self.gap_ms:
                for frame in _decode(self.vin, None):  # (the pictures before the hole)
                    self.enc.video_frame(frame)
                self.vin.codec_context.flush_buffers()
            self.last_dts = p.rt_dts
            for frame in _decode(self.vin, pkt):
                self.enc.video_frame(frame)
        elif self.enc.oas is not None:
            self.enc.audio_packet(pkt)

    def flush(self) -> None:
        if self.count["video"] and not self.enc.video_done:
            for frame in _decode(self.vin, None):
                self.enc.video_frame(frame)


# --------------------------------------------------------------------------- shared encoder side
class _ClipEncoder:
    """Encoder side of an encode: keeps the video frames presented in [t_from, t_to) and the
    audio from the first kept frame to t_to, encodes / muxes them with timestamps from 0.

    Times: a frame at pts P (time base of `vin`) is at (P - v0) * tb in ms; t_from / t_to in
    the same ms.  AAC audio packets are copied, other audio decoded and encoded to AAC; audio
    waits (pending) until the first kept video frame sets the origin.
    """

    def __init__(self, out, fmt: str, enc_name: str, vin, ain, *, preset: str, crf: int, threads: int,
                 v0: int, t_from: float, t_to: float | None, on_frame: Callable[[], None] | None = None):
        self.out = out
        self.enc_name = enc_name
        self.vtb = vin.time_base
        self.fps = _frame_rate(vin)
        self.v0 = v0
        self.t_from = t_from
        self.t_to = t_to
        self.half_frame_ms = 500.0 / float(self.fps)
        self.on_frame = on_frame
        self.check_seek = False  # encode_clip after a seek: the first decoded frame must not be late

        ovs = out.add_stream(enc_name, rate=self.fps, options=_encoder_options(enc_name, preset, crf, self.fps))
        ovs.width = vin.codec_context.width
        ovs.height = vin.codec_context.height
        ovs.pix_fmt = "yuv420p"
        ovs.codec_context.time_base = self.vtb
        if vin.sample_aspect_ratio:
            ovs.codec_context.sample_aspect_ratio = vin.sample_aspect_ratio
        if threads:
            ovs.codec_context.thread_count = threads
        if fmt in ("mp4", "mov") and enc_name in ("libx265", "hevc_nvenc"):
            ovs.codec_context.codec_tag = "hvc1"
        try:
            ovs.codec_context.open()
        except Exception as e:
            raise _EncoderFailed(str(e)) from e
        self.ovs = ovs

        self.ain = ain
        self.oas = None
        self.copy_audio = False
        if ain is not None:
            if ain.codec_context.name == "aac":
                self.oas = out.add_stream_from_template(ain, opaque=True)
                self.copy_audio = True
            else:
                ain.thread_type = "AUTO"
                rate = ain.codec_context.sample_rate or 48000
                layout = ain.codec_context.layout.name if ain.codec_context.layout else "stereo"
                if ain.codec_context.channels > 2:
                    layout = "stereo"
                self.oas = out.add_stream("aac", rate=rate, layout=layout)
                self.oas.codec_context.time_base = Fraction(1, rate)

        self.zero_pts: int | None = None  # source pts (video tb) of the first kept frame
        self.last_pts = 0  # pts (from zero_pts) of the last kept frame
        self.frames = 0
        self.video_done = False
        self.audio_done = False
        self.audio_pending: list = []
        self.audio_packets = 0
        self.audio_last_dts = None

    @property
    def started(self) -> bool:
        return self.zero_pts is not None

    def video_frame(self, frame) -> None:
        if self.video_done or frame.pts is None:
            return
        rel = float((frame.pts - self.v0) * self.vtb) * 1000.0
        if self.check_seek:
            self.check_seek = False
            if rel > self.t_from + self.half_frame_ms:
                raise _SeekOvershoot(f"first frame after seeking is at {rel:.0f} ms")
        tol = min(_EPS_MS, self.half_frame_ms)  # (the tolerance cut_clip applies: the same frames)
        if rel < self.t_from - tol:
            return
        if self.t_to is not None and rel >= self.t_to - tol:
            self.video_done = True
            return
        if self.zero_pts is None:
            self.zero_pts = frame.pts
            self._release_audio()
        frame.pts = frame.pts - self.zero_pts
        self.last_pts = max(self.last_pts, frame.pts)
        frame.time_base = self.vtb
        frame.pict_type = av.video.frame.PictureType.NONE
        try:
            for p in self.ovs.encode(frame):
                self.out.mux(p)
        except av.error.FFmpegError as e:
            raise _EncoderFailed(str(e)) from e
        self.frames += 1
        if self.on_frame is not None:
            self.on_frame()

    def audio_packet(self, pkt) -> None:
        if self.audio_done or self.oas is None:
            return
        if self.copy_audio:
            self.audio_pending.append(pkt)
        else:
            try:
                frames = self.ain.codec_context.decode(pkt)
            except av.error.FFmpegError as e:
                log.warning("skipping undecodable audio packet: %s", e)
                return
            self.audio_pending.extend(frames)
        if self.zero_pts is not None:
            self._release_audio()

    def _release_audio(self) -> None:
        """Write pending audio (packets or decoded frames) once the video origin is known."""
        if self.zero_pts is None or not self.audio_pending:
            return
        zero_s = float(self.zero_pts * self.vtb)
        end_s = None if self.t_to is None else float(self.v0 * self.vtb) + self.t_to / 1000.0
        pending, self.audio_pending = self.audio_pending, []
        for item in pending:
            tb = item.time_base
            ts = item.pts if item.pts is not None else getattr(item, "dts", None)
            if ts is None:
                continue
            t = float(ts * tb)
            if end_s is not None and t >= end_s:
                self.audio_done = True
                continue
            if t < zero_s - 0.001:
                continue
            shift = int(round(zero_s / tb))
            if self.copy_audio:
                item.pts = item.pts - shift if item.pts is not None else None
                item.dts = item.dts - shift if item.dts is not None else item.pts
                if self.audio_last_dts is not None and item.dts <= self.audio_last_dts:
                    continue
                self.audio_last_dts = item.dts
                item.stream = self.oas
                self.out.mux(item)
                self.audio_packets += 1
            else:
                item.pts = ts - shift
                item.time_base = tb
                for p in self.oas.encode(item):
                    self.out.mux(p)
                    self.audio_packets += 1

    def finish(self) -> None:
        """Flush the video encoder and the audio."""
        try:
            for p in self.ovs.encode(None):
                self.out.mux(p)
        except Exception as e:
            raise _EncoderFailed(str(e)) from e
        if self.oas is None:
            return
        self._release_audio()
        if not self.copy_audio:
            try:
                for p in self.oas.encode(None):
                    self.out.mux(p)
                    self.audio_packets += 1
            except av.error.FFmpegError as e:
                raise MediaError(f"AAC encoding failed: {e}") from e

    def info(self, out_path: str) -> ClipInfo:
        frame_ms = 1000.0 / float(self.fps)
        first_ms = float((self.zero_pts - self.v0) * self.vtb) * 1000.0 if self.zero_pts is not None else 0.0
        return ClipInfo(
            path=out_path,
            # first frame to the end of the last (as cut_clip; a hole in the timeline is kept in the file)
            duration_ms=round(float(self.last_pts * self.vtb) * 1000.0 + frame_ms, 3) if self.frames else 0.0,
            video_codec="hevc" if self.enc_name in ("libx265", "hevc_nvenc") else "h264",
            audio_codec=("aac" if self.audio_packets else None),
            width=self.ovs.width,
            height=self.ovs.height,
            size_bytes=os.path.getsize(out_path),
            start_ms=round(first_ms, 3),
        )


def _decode(stream, pkt):
    try:
        return stream.codec_context.decode(pkt)
    except av.error.FFmpegError as e:
        if pkt is None:
            return []
        log.warning("skipping undecodable video packet: %s", e)
        return []
