"""Small shared helpers: ClipInfo, output container names, atomic output files."""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from .errors import MediaError

__all__ = ["ClipInfo", "SkippedSegment", "container_format", "atomic_output", "codec_name"]


@dataclass(frozen=True)
class SkippedSegment:
    """A downloaded segment that was damaged (cut short, overwritten, of another codec or picture
    size) and left out of a clip, as if it were missing."""

    key: str  # its storage key
    name: str  # its local name (Part.name: the key, or the key and its byte range), as lack_length takes it
    track: str  # the kind of its track: "video", "audio" or "muxed"
    start_ms: float  # the time it covers, recording time (the manifest's)
    end_ms: float
    reason: str  # what is wrong with it, for people


@dataclass(frozen=True)
class ClipInfo:
    path: str
    duration_ms: float
    video_codec: str | None  # FFmpeg codec name: "h264", "hevc", ...
    audio_codec: str | None  # "aac", ...
    width: int | None
    height: int | None
    size_bytes: int
    lead_ms: float = 0.0  # how far before the requested start the clip's first frame is (0: frame accurate)
    start_ms: float = 0.0  # where the clip's first frame is, in the source's time (recording time for a selection)
    # damaged segments left out (cut_clip, encode_selection), in recording order; the clip lacks their
    # time as it lacks a missing segment's (the output's timestamps jump over it)
    skipped: tuple[SkippedSegment, ...] = ()
    # ms of the requested range that the skipped segments of the first track (video / muxed) held and no
    # other segment covers: what LackLength gains over lack_length(selection, missing files)
    skipped_ms: int = 0


_FORMATS = {
    "ts": ("mpegts", {}),
    "mpegts": ("mpegts", {}),
    "mp4": ("mp4", {"movflags": "+faststart"}),
    "mov": ("mov", {"movflags": "+faststart"}),
    "mkv": ("matroska", {}),
    "matroska": ("matroska", {}),
}


def container_format(container: str) -> tuple[str, dict[str, str]]:
    """'ts' / 'mp4' (/ 'mov' / 'mkv') -> (FFmpeg muxer name, muxer options)."""
    try:
        fmt, opts = _FORMATS[container.lower()]
    except (KeyError, AttributeError):
        raise MediaError(f"unsupported output container {container!r} (use 'ts' or 'mp4')") from None
    return fmt, dict(opts)


def codec_name(stream) -> str | None:
    if stream is None:
        return None
    try:
        return stream.codec_context.codec.canonical_name  # "mp3", not the decoder's "mp3float"
    except Exception:
        return None


@contextlib.contextmanager
def atomic_output(out_path: str, what: str) -> Iterator[str]:
    """Yield a temporary path next to out_path; rename it to out_path on success.

    On any exception the temporary file is removed and the error re-raised as
    MediaError (MediaError instances pass through unchanged).
    """
    directory = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(directory):
        raise MediaError(f"output directory {directory} does not exist")
    tmp = out_path + ".part"
    try:
        yield tmp
        os.replace(tmp, out_path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(e, MediaError) or not isinstance(e, Exception):
            raise
        raise MediaError(f"{what} failed: {e}") from e


PROGRESS_INTERVAL_S = 0.25  # on_progress is called at most this often (plus once at the end)


class Progress:
    """Reports `done / total` to `callback`, throttled and never decreasing (a restarted attempt,
    such as an encoder fallback, resets `done` but never what was already reported)."""

    def __init__(self, callback: Callable[[float], None], total: float = 1.0):
        self.callback = callback
        self.total = max(1.0, total)
        self.reported = 0.0
        self.last_call = float("-inf")

    def restart(self, total: float) -> None:
        self.total = max(1.0, total)

    def update(self, done: float) -> None:
        now = time.monotonic()
        if now - self.last_call < PROGRESS_INTERVAL_S:
            return
        fraction = min(1.0, done / self.total)
        if fraction > self.reported:
            self.last_call = now
            self.reported = fraction
            self.callback(fraction)

    def done(self) -> None:
        self.reported = 1.0
        self.callback(1.0)
