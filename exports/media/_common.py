"""Small shared helpers: ClipInfo, output container names, atomic output files."""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator

from .errors import MediaError

__all__ = ["ClipInfo", "container_format", "atomic_output", "codec_name"]


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
