"""JPEG thumbnails of a media file or of a recording selection."""
from __future__ import annotations

import os
from typing import Mapping

import av
from PIL import Image

from ._common import atomic_output
from ._source import TrackSource
from .errors import MediaError
from .select import Selection

__all__ = ["thumbnail", "thumbnail_from_selection"]


def _save_jpeg(frame: av.VideoFrame, out_path: str, max_size: int, quality: int) -> tuple[int, int]:
    if max_size <= 0:
        raise MediaError(f"max_size must be positive, got {max_size}")
    image = frame.to_image()
    if image.mode != "RGB":
        image = image.convert("RGB")
    image.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
    with atomic_output(out_path, "thumbnail") as tmp:
        image.save(tmp, format="JPEG", quality=int(quality))
    return image.size


def _pick(frames, start_ms: float, to_ms) -> av.VideoFrame | None:
    """First frame at or after start_ms (1 ms tolerance), else the last frame seen."""
    last = None
    for frame in frames:
        if frame.pts is None:
            continue
        if to_ms(frame) >= start_ms - 1.0:
            return frame
        last = frame
    return last


def _decode_all(container, stream):
    try:
        yield from container.decode(stream)
    except av.error.FFmpegError as e:
        raise MediaError(f"cannot decode video: {e}") from e


def thumbnail(*, src_path: str, out_path: str, at_ms: float = 0.0, max_size: int = 1280, quality: int = 85) -> tuple[int, int]:
    """JPEG of the first video frame at or after `at_ms` (relative to the video's first
    timestamp; the last frame when the file is shorter), scaled down to fit
    max_size x max_size.  Returns the JPEG's (width, height)."""
    if not os.path.isfile(src_path):
        raise MediaError(f"{src_path} does not exist")
    name = os.path.basename(src_path)

    def attempt(seek: bool) -> av.VideoFrame | None:
        try:
            c = av.open(src_path)
        except Exception as e:
            raise MediaError(f"{name} is not a readable media file: {e}") from e
        with c:
            if not c.streams.video:
                raise MediaError(f"{name} has no video stream")
            vs = c.streams.video[0]
            vs.thread_type = "AUTO"
            tb = vs.time_base
            v0 = vs.start_time or 0
            if seek:
                try:
                    c.seek(int(v0 + at_ms / 1000.0 / tb), stream=vs, backward=True)
                except av.error.FFmpegError:
                    return None
            frame = _pick(_decode_all(c, vs), at_ms, lambda f: float((f.pts - v0) * tb) * 1000.0)
            if seek and frame is not None and float((frame.pts - v0) * tb) * 1000.0 > at_ms + 1.0:
                return None  # the seek overshot: decode from the start instead
            if frame is not None:
                frame = frame.reformat(format="rgb24")  # detach from the decoder
            return frame

    frame = attempt(True) if at_ms > 5000 else None
    if frame is None:
        frame = attempt(False)
    if frame is None:
        raise MediaError(f"no video frame could be decoded from {name}")
    return _save_jpeg(frame, out_path, max_size, quality)


def thumbnail_from_selection(
    *, selection: Selection, files: Mapping[str, str], out_path: str, max_size: int = 1280, quality: int = 85
) -> tuple[int, int]:
    """JPEG of the recording's frame at selection.start_ms, decoded from the downloaded
    segments (the first frame at or after it; the last one available before it when
    the recording ends earlier)."""
    if not selection.tracks:
        raise MediaError("the selection has no track")
    src = TrackSource(selection.tracks[0], files, want_video=True, want_audio=False, decode_check=True)
    try:
        if src.vstream is None:
            raise MediaError("no video in the available segments")
        ctx = src.vstream.codec_context
        ctx.thread_type = "AUTO"
        start_ms = float(selection.start_ms)

        def frames():
            for p in src.packets():
                if p.kind != "video":
                    continue
                pkt = p.packet
                tb = pkt.time_base
                pkt.pts = int(round(p.rt_pts / 1000.0 / tb))
                pkt.dts = int(round(p.rt_dts / 1000.0 / tb))
                try:
                    yield from ctx.decode(pkt)
                except av.error.FFmpegError:
                    continue
            try:
                yield from ctx.decode(None)
            except av.error.FFmpegError:
                return

        tb = src.vstream.time_base
        frame = _pick(frames(), start_ms, lambda f: float(f.pts * (f.time_base or tb)) * 1000.0)
        if frame is None:
            raise MediaError("no video frame could be decoded from the selected segments")
        frame = frame.reformat(format="rgb24")
    finally:
        src.close()
    return _save_jpeg(frame, out_path, max_size, quality)
