"""Pick the segments of a recording that overlap a requested clip."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Collection, Iterable, Iterator

from .manifest import Part, Recording, Segment, Track

__all__ = ["Selection", "select_segments", "lack_length"]


@dataclass(frozen=True)
class Selection:
    start_ms: float  # requested clip start, recording time
    end_ms: float  # requested clip end (exclusive), recording time
    tracks: tuple[Track, ...]  # same tracks, segments filtered to those overlapping [start, end) (+ look-ahead)
    lack_ms: int  # ms of [start, end) not covered by the first track's timeline
    # local names (Part.name) of the parts taken past the end only for the media presented before it
    # (see select_segments): the look-ahead segment, and its initialization / AES-128 key when no other
    # selected segment uses them.  Optional: when one of them is missing or damaged, the segment is
    # left out as if it had not been selected; never a missing segment, never LackLength (it lies
    # after the end)
    lookahead: frozenset[str] = frozenset()

    def parts(self) -> list[Part]:
        """What to download: for each track, the initialization each selected segment needs (before
        the first segment using it) and the segments, as Parts (storage key + byte range or the
        whole object), each AES-128 encrypted one after its key object (HLS EXT-X-KEY), deduplicated
        by local name, in order.

        This is the one description of a download: ``Part.name`` is the local file a part goes
        into and the key of the ``files`` mapping cut / encode / thumbnail read (each byte range
        is its own file).  A track without any selected segment contributes nothing.
        """
        seen: set[str] = set()
        out: list[Part] = []
        for part in self._media_parts():
            key = () if part.encryption is None else (part.encryption.key_part,)
            for p in key + (part,):
                if p.name not in seen:
                    seen.add(p.name)
                    out.append(p)
        return out

    def keys(self) -> list[str]:
        """The local names of ``parts()`` (the storage keys themselves when no byte range is used)."""
        return [p.name for p in self.parts()]

    def decryption_keys(self) -> list[str]:
        """The local names of the AES-128 key objects among ``parts()``, in order."""
        return list(dict.fromkeys(p.encryption.key_part.name for p in self._media_parts() if p.encryption))

    def media_bytes(self) -> int | None:
        """Bytes of the selected initializations and segments (not the keys) when the manifest gives
        all their sizes (byte ranges), else None."""
        sizes = [p.size for p in {p.name: p for p in self._media_parts()}.values()]
        return None if any(s is None for s in sizes) else sum(sizes)

    def _media_parts(self) -> Iterator[Part]:
        """Each selected segment's initialization (when it has one), then the segment."""
        for tr in self.tracks:
            for s in tr.segments:
                init = tr.init_of(s)
                if init is not None:
                    yield init
                yield s.part


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


# How far past the requested end the first track's next segment is still taken (the look-ahead):
# media presented before an end at (or just before) a segment boundary can be stored after it, in
# the segment that boundary opens: an open-GOP keyframe's leading pictures (presented up to its
# reorder span before it: 4 B-frames at 25 fps, 160 ms), MPEG-TS audio muxed after the video that
# opens the segment (after that keyframe's decode time: its reorder delay before it).  Small, so that
# an end elsewhere in a segment fetches nothing more.
LOOKAHEAD_MS = 200.0
# How far before the start a keyframe cut needs the other tracks at most: it starts on the keyframe
# at or before the start, in the first track's first segment (GOPs are assumed no longer than this).
KEYFRAME_AUDIO_HEAD_MS = 4000.0


def select_segments(recording: Recording, start_ms: float, end_ms: float, *,
                    lookahead_ms: float = LOOKAHEAD_MS, audio_head_ms: float = 0.0) -> Selection:
    """Segments of every track overlapping [start_ms, end_ms) (recording time, ms), and the first
    track's look-ahead segment.

    The first track's (video or muxed) segments decide. With ``audio_head_ms`` (a keyframe cut:
    KEYFRAME_AUDIO_HEAD_MS) the other tracks' (DASH / HLS audio) are taken from the start of the
    first track's first selected segment on (at most audio_head_ms before start_ms), so that a cut
    that starts on the keyframe at or before start_ms has its audio from there; an accurate cut or
    an encode needs none before start_ms.
    Look-ahead: when end_ms lies on a segment boundary of the first track or less than
    ``lookahead_ms`` before one (LOOKAHEAD_MS; 0: exactly the overlap), the segment that boundary
    opens is taken as well, for the media presented before end_ms that it holds (an open-GOP
    keyframe's leading pictures, MPEG-TS audio muxed after that keyframe).  It comes last in the
    track's segments, and what only it needs is in ``Selection.lookahead``: optional parts (see
    there).  A clip ending elsewhere fetches nothing more than the overlap.
    lack_ms counts the first track's missing media in [start_ms, end_ms) only.
    """
    if not end_ms > start_ms:
        raise ValueError(f"end_ms ({end_ms}) must be greater than start_ms ({start_ms})")
    tracks: list = []
    lo = start_ms
    ahead: Segment | None = None
    for i, tr in enumerate(recording.tracks):
        picked = tuple(s for s in tr.segments if s.end_ms > lo and s.start_ms < end_ms)
        if i == 0 and picked:
            lo = min(start_ms, max(picked[0].start_ms, start_ms - max(0.0, audio_head_ms)))
            reach = max(s.end_ms for s in picked)
            # the segment opening the boundary the end lies on (or just before), right after the overlap
            ahead = next((s for s in tr.segments if end_ms <= s.start_ms < end_ms + lookahead_ms
                          and abs(s.start_ms - reach) <= 1.0), None)
            if ahead is not None:
                picked += (ahead,)
        tracks.append(replace(tr, segments=picked))
    tracks = tuple(tracks)
    lack = _uncovered(tracks[0].segments, start_ms, end_ms) if tracks else int(round(end_ms - start_ms))
    optional: frozenset[str] = frozenset()
    if ahead is not None:
        needed = set()  # what the other segments need
        for t_i, tr in enumerate(tracks):
            for s in tr.segments:
                if t_i == 0 and s is ahead:
                    continue
                init = tr.init_of(s)
                for p in (s.part,) + ((init,) if init is not None else ()):
                    needed.add(p.name)
                    if p.encryption is not None:
                        needed.add(p.encryption.key_part.name)
        init = tracks[0].init_of(ahead)
        own = (ahead.part,) + ((init,) if init is not None else ())
        names = {p.name for p in own} | {p.encryption.key_part.name for p in own if p.encryption is not None}
        optional = frozenset(names - needed)
    return Selection(start_ms=start_ms, end_ms=end_ms, tracks=tracks, lack_ms=lack, lookahead=optional)


def lack_length(selection: Selection, missing: Collection[str] = ()) -> int:
    """Selection.lack_ms recomputed with the parts whose local name is in `missing` counted as
    gaps: a missing segment, or any segment whose initialization or AES-128 key is missing.

    Uses the first track.
    """
    if not selection.tracks:
        return int(round(selection.end_ms - selection.start_ms))
    first = selection.tracks[0]
    missing = set(missing)

    def readable(part: Part) -> bool:
        return part.name not in missing and (part.encryption is None or part.encryption.key_part.name not in missing)

    def present(s: Segment) -> bool:
        init = first.init_of(s)
        return readable(s.part) and (init is None or readable(init))

    return _uncovered((s for s in first.segments if present(s)), selection.start_ms, selection.end_ms)
