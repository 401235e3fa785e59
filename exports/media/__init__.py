"""Pure media engine: manifests, segment selection, cut / encode / thumbnail / probe.

No Django, no storage access: storage keys and local paths in, files and numbers out.
"""
from .errors import KeyUnavailable, ManifestError, MediaError
from .manifest import (
    Encryption,
    FetchRange,
    Part,
    Recording,
    Segment,
    Track,
    load_recording,
    parse_m3u8,
    parse_mpd,
    part_name,
)
from .select import KEYFRAME_AUDIO_HEAD_MS, Selection, lack_length, select_segments

__all__ = [
    "MediaError",
    "ManifestError",
    "KeyUnavailable",
    "Encryption",
    "Part",
    "part_name",
    "FetchRange",
    "Segment",
    "Track",
    "Recording",
    "load_recording",
    "parse_mpd",
    "parse_m3u8",
    "Selection",
    "select_segments",
    "KEYFRAME_AUDIO_HEAD_MS",
    "lack_length",
]
from ._common import ClipInfo, SkippedSegment
from .cut import cut_clip
from .encode import available_hw_encoder, encode_clip, encode_selection
from .probe import probe
from .thumbnail import thumbnail, thumbnail_from_selection

__all__ += [
    "ClipInfo",
    "SkippedSegment",
    "cut_clip",
    "encode_clip",
    "encode_selection",
    "available_hw_encoder",
    "thumbnail",
    "thumbnail_from_selection",
    "probe",
]
