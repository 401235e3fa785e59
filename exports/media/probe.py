"""Inspect a media file."""
from __future__ import annotations

import os

import av

from ._common import ClipInfo, codec_name
from .errors import MediaError

__all__ = ["probe"]


def probe(path: str) -> ClipInfo:
    """Codecs, picture size and duration of a media file (packets are scanned, not decoded).

    duration_ms is the span of the video stream (audio when there is no video):
    last pts + packet duration - first pts.
    """
    if not os.path.isfile(path):
        raise MediaError(f"{path} does not exist")
    try:
        c = av.open(path)
    except Exception as e:
        raise MediaError(f"{os.path.basename(path)} is not a readable media file: {e}") from e
    try:
        vs = c.streams.video[0] if c.streams.video else None
        aus = c.streams.audio[0] if c.streams.audio else None
        main = vs if vs is not None else aus
        if main is None:
            raise MediaError(f"{os.path.basename(path)} has no audio or video stream")
        first = last_end = None
        count = {"video": 0, "audio": 0}
        step = None
        prev = None
        try:
            for pkt in c.demux([s for s in (vs, aus) if s is not None]):
                if pkt.pts is None and pkt.dts is None:
                    continue
                kind = "video" if vs is not None and pkt.stream_index == vs.index else "audio"
                count[kind] += 1
                if pkt.stream_index != main.index:
                    continue
                ts = pkt.pts if pkt.pts is not None else pkt.dts
                t = float(ts * pkt.time_base) * 1000.0
                if prev is not None and t > prev:
                    step = t - prev if step is None else min(step, t - prev)
                prev = t
                dur = float((pkt.duration or 0) * pkt.time_base) * 1000.0
                first = t if first is None else min(first, t)
                end = t + (dur or (step or 0.0))
                last_end = end if last_end is None else max(last_end, end)
        except av.error.FFmpegError as e:
            raise MediaError(f"{os.path.basename(path)} is corrupt: {e}") from e
        if first is None:
            raise MediaError(f"{os.path.basename(path)} contains no media packets")
        return ClipInfo(
            path=path,
            duration_ms=last_end - first,
            video_codec=codec_name(vs) if vs is not None and count["video"] else None,
            audio_codec=codec_name(aus) if aus is not None and count["audio"] else None,
            width=vs.codec_context.width if vs is not None else None,
            height=vs.codec_context.height if vs is not None else None,
            size_bytes=os.path.getsize(path),
        )
    finally:
        c.close()
