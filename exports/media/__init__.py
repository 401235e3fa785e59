"""Pure media engine: manifests, segment selection, cut / encode / thumbnail / probe.

No Django, no storage access: storage keys and local paths in, files and numbers out.
"""
from .errors import ManifestError, MediaError
from .manifest import Recording, Segment, Track, load_recording, parse_m3u8, parse_mpd
from .select import Selection, lack_length, select_segments

__all__ = [
    "MediaError",
    "ManifestError",
    "Segment",
    "Track",
    "Recording",
    "load_recording",
    "parse_mpd",
    "parse_m3u8",
    "Selection",
    "select_segments",
    "lack_length",
]
