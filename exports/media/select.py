"""Pick the segments of a recording that overlap a requested clip."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Collection, Iterable

from .manifest import Recording, Segment, Track

__all__ = ["Selection", "select_segments", "lack_length"]


@dataclass(frozen=True)
class Selection:
    start_ms: float  # requested clip start, recording time
    end_ms: float  # requested clip end (exclusive), recording time
    tracks: tuple[Track, ...]  # same tracks, segments filtered to those overlapping [start, end)
    lack_ms: int  # ms of [start, end) not covered by the first track's timeline

    def keys(self) -> list[str]:
        """Every key to download: init + segment keys of each track, deduplicated, in order.

        A track without any selected segment contributes nothing (not even its init).
        """
        seen: set[str] = set()
        out: list[str] = []
        for tr in self.tracks:
            if not tr.segments:
                continue
            for key in ([tr.init_key] if tr.init_key else []) + [s.key for s in tr.segments]:
                if key not in seen:
                    seen.add(key)
                    out.append(key)
        return out


def _uncovered(segments: Iterable[Segment], start: float, end: float) -> int:
    if end <= start:
        return 0
    spans = sorted((max(s.start_ms, start), min(s.end_ms, end)) for s in segments)
    covered = 0.0
    cur_a = cur_b = None
    for a, b in spans:
        if b <= a:
            continue
        if cur_b is None or a > cur_b:
            if cur_b is not None:
                covered += cur_b - cur_a
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_b is not None:
        covered += cur_b - cur_a
    return max(0, int(round((end - start) - covered)))


def select_segments(recording: Recording, start_ms: float, end_ms: float) -> Selection:
    """Segments of every track overlapping [start_ms, end_ms) (recording time, ms)."""
    if not end_ms > start_ms:
        raise ValueError(f"end_ms ({end_ms}) must be greater than start_ms ({start_ms})")
    tracks = tuple(
        replace(tr, segments=tuple(s for s in tr.segments if s.end_ms > start_ms and s.start_ms < end_ms))
        for tr in recording.tracks
    )
    lack = _uncovered(tracks[0].segments, start_ms, end_ms) if tracks else int(round(end_ms - start_ms))
    return Selection(start_ms=start_ms, end_ms=end_ms, tracks=tracks, lack_ms=lack)


def lack_length(selection: Selection, missing: Collection[str] = ()) -> int:
    """Selection.lack_ms recomputed with segments whose key is in `missing` counted as gaps.

    Uses the first track; a missing initialization segment makes the whole range lacking.
    """
    if not selection.tracks:
        return int(round(selection.end_ms - selection.start_ms))
    first = selection.tracks[0]
    missing = set(missing)
    if first.init_key is not None and first.init_key in missing:
        return int(round(selection.end_ms - selection.start_ms))
    return _uncovered((s for s in first.segments if s.key not in missing), selection.start_ms, selection.end_ms)
