"""Reading the downloaded segments of a track as one packet stream in recording time.

Internal helpers shared by cut / thumbnail.  A track's available files (init +
segments, or plain TS segments) are exposed to FFmpeg as one seekable byte stream
(``ConcatFile``); every demuxed packet is mapped back to the segment it came from
(by byte position) so that its timestamps can be expressed in *recording time*:

* the first segment read anchors the media timeline to the manifest
  (``rt = raw + offset`` with ``offset = segment.start_ms - first_video_pts``);
* following segments keep the offset while their timestamps continue the previous
  segment's (a segment skipped because it is missing is accounted for through the
  manifest times); a jump that the manifest does not explain (HLS discontinuity,
  encoder restart, 33-bit wrap) re-anchors on the manifest time, never going
  backwards in time.
"""
from __future__ import annotations

import bisect
import io
import os
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import av

from .errors import MediaError
from .manifest import Segment, Track
from .select import Selection

__all__ = ["ConcatFile", "Pkt", "TrackSource", "open_sources"]


class ConcatFile(io.RawIOBase):
    """Read-only, seekable concatenation of files (no copy)."""

    def __init__(self, paths: Sequence[str]):
        super().__init__()
        self.paths = list(paths)
        self.sizes = [os.path.getsize(p) for p in self.paths]
        self.starts = []
        total = 0
        for s in self.sizes:
            self.starts.append(total)
            total += s
        self.size = total
        self._pos = 0
        self._fh = None
        self._fh_idx = -1

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(whence)
        self._pos = max(0, pos)
        return self._pos

    def part_of(self, pos: int) -> int:
        return bisect.bisect_right(self.starts, pos) - 1

    def readinto(self, b) -> int:
        if self._pos >= self.size:
            return 0
        i = self.part_of(self._pos)
        local = self._pos - self.starts[i]
        n = min(len(b), self.sizes[i] - local)
        if n <= 0:
            return 0
        if self._fh_idx != i:
            if self._fh is not None:
                self._fh.close()
            self._fh = open(self.paths[i], "rb")
            self._fh_idx = i
        self._fh.seek(local)
        got = self._fh.readinto(memoryview(b)[:n])
        self._pos += got
        return got

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        super().close()


@dataclass
class Pkt:
    kind: str  # "video" / "audio"
    packet: av.Packet
    rt_pts: float  # recording time of the packet's pts, ms
    rt_dts: float
    dur_ms: float
    key: bool
    encoded: bool = False  # produced by the smart-cut encoder (already Annex B)


class TrackSource:
    """Demuxes the available files of one track, yielding packets in recording time."""

    def __init__(self, track: Track, files: Mapping[str, str], *, want_video: bool, want_audio: bool):
        self.track = track
        self.container = None
        self.file = None
        self.vstream = None
        self.astream = None
        self.parts: list[tuple[Segment, str]] = []
        self.offset: float | None = None
        self._prev_raw = 0.0
        self._prev_seg_start = 0.0
        self._last_rt_dts = float("-inf")
        self._last_dur = 40.0

        def local(key: str | None) -> str | None:
            if key is None:
                return None
            p = files.get(key)
            return p if p and os.path.isfile(p) else None

        init_path = local(track.init_key)
        if track.init_key is not None and init_path is None:
            return  # without its initialization segment the track is unusable
        self.parts = [(s, local(s.key)) for s in track.segments if local(s.key)]
        if not self.parts:
            return
        paths = ([init_path] if init_path else []) + [p for _, p in self.parts]
        self._first_seg_part = 1 if init_path else 0
        try:
            self.file = ConcatFile(paths)
            self.container = av.open(self.file, "r", buffer_size=1 << 18)
        except Exception as e:  # av.error.*, OSError
            self.close()
            raise MediaError(f"cannot read {track.kind} segments ({self.parts[0][0].key} ...): {e}") from e
        if want_video and self.container.streams.video:
            self.vstream = self.container.streams.video[0]
        if want_audio and self.container.streams.audio:
            self.astream = self.container.streams.audio[0]

    @property
    def usable(self) -> bool:
        return self.container is not None and (self.vstream is not None or self.astream is not None)

    def close(self) -> None:
        if self.container is not None:
            try:
                self.container.close()
            except Exception:
                pass
            self.container = None
        if self.file is not None:
            try:
                self.file.close()
            except Exception:
                pass
            self.file = None

    # -- timeline ---------------------------------------------------------------
    def _seg_index(self, pos: int) -> int:
        return self.file.part_of(pos) - self._first_seg_part

    def _anchor(self, seg_idx: int, pkt: av.Packet) -> float:
        """Offset (ms) mapping this segment's raw timestamps to recording time."""
        seg = self.parts[max(0, seg_idx)][0]
        tb = float(pkt.time_base)
        raw_ts = pkt.pts if pkt.pts is not None else pkt.dts
        raw = raw_ts * tb * 1000.0
        if self.offset is None:
            self.offset = seg.start_ms - raw
        else:
            span = seg.start_ms - self._prev_seg_start
            expected = self._prev_raw + span
            if abs(raw - expected) > max(1000.0, 0.25 * abs(span)):
                # a jump the manifest does not explain: re-anchor on the manifest time
                new = seg.start_ms - raw
                dts = pkt.dts if pkt.dts is not None else raw_ts
                rt_dts = dts * tb * 1000.0 + new
                floor = self._last_rt_dts + self._last_dur
                if rt_dts < floor:
                    new += floor - rt_dts
                self.offset = new
        self._prev_raw = raw
        self._prev_seg_start = seg.start_ms
        return self.offset

    def _wrap(self, pkt: av.Packet, offset: float) -> Pkt:
        tb = float(pkt.time_base)
        dts = pkt.dts if pkt.dts is not None else pkt.pts
        pts = pkt.pts if pkt.pts is not None else dts
        rt_dts = dts * tb * 1000.0 + offset
        rt_pts = pts * tb * 1000.0 + offset
        dur = (pkt.duration or 0) * tb * 1000.0
        kind = "video" if (self.vstream is not None and pkt.stream_index == self.vstream.index) else "audio"
        if kind == "video" or self.vstream is None:
            if rt_dts > self._last_rt_dts and self._last_rt_dts != float("-inf"):
                self._last_dur = dur or min(1000.0, rt_dts - self._last_rt_dts) or self._last_dur
            self._last_rt_dts = max(self._last_rt_dts, rt_dts)
        return Pkt(kind=kind, packet=pkt, rt_pts=rt_pts, rt_dts=rt_dts, dur_ms=dur, key=bool(pkt.is_keyframe))

    def packets(self) -> Iterator[Pkt]:
        """Packets of the wanted streams in (about) decode order with recording-time stamps.

        Each packet belongs to the segment its bytes come from; a segment's offset is
        fixed by its first video packet (first packet when there is no video), so the
        packets of a segment that arrive before it wait in `pending`.
        """
        if not self.usable:
            return
        streams = [s for s in (self.vstream, self.astream) if s is not None]
        anchor_index = self.vstream.index if self.vstream is not None else None
        offsets: dict[int, float] = {}
        pending: dict[int, list[av.Packet]] = {}
        last_idx = 0
        try:
            for pkt in self.container.demux(streams):
                if pkt.dts is None and pkt.pts is None:
                    continue
                idx = self._seg_index(pkt.pos) if pkt.pos is not None and pkt.pos >= 0 else last_idx
                idx = min(max(idx, 0), len(self.parts) - 1)
                last_idx = idx
                if idx in offsets:
                    yield self._wrap(pkt, offsets[idx])
                    continue
                waiting = pending.setdefault(idx, [])
                waiting.append(pkt)
                if anchor_index is None or pkt.stream_index == anchor_index or len(waiting) > 256:
                    # segments before this one that never got a video packet anchor on their first packet
                    for j in sorted(k for k in pending if k < idx):
                        offsets[j] = self._anchor(j, pending[j][0])
                        for q in pending.pop(j):
                            yield self._wrap(q, offsets[j])
                    anchor_pkt = pkt if (anchor_index is None or pkt.stream_index == anchor_index) else waiting[0]
                    offsets[idx] = self._anchor(idx, anchor_pkt)
                    for q in pending.pop(idx):
                        yield self._wrap(q, offsets[idx])
            for j in sorted(pending):
                offsets[j] = self._anchor(j, pending[j][0])
                for q in pending[j]:
                    yield self._wrap(q, offsets[j])
        except av.error.FFmpegError as e:
            raise MediaError(f"cannot demux {self.track.kind} segments: {e}") from e


def open_sources(selection: Selection, files: Mapping[str, str]) -> list[TrackSource]:
    """Open the sources for the first track (video / muxed) and the audio track, if any.

    Audio comes from the separate audio track when it is usable, else from the muxed track.
    """
    if not selection.tracks:
        raise MediaError("the selection has no track")
    first = selection.tracks[0]
    audio_track = next((t for t in selection.tracks[1:] if t.kind == "audio"), None)
    sources: list[TrackSource] = []
    try:
        audio_src = None
        if audio_track is not None:
            audio_src = TrackSource(audio_track, files, want_video=False, want_audio=True)
            if not audio_src.usable:
                audio_src.close()
                audio_src = None
        main = TrackSource(first, files, want_video=first.kind != "audio",
                           want_audio=first.kind == "audio" or audio_src is None)
        if main.usable:
            sources.append(main)
        else:
            main.close()
        if audio_src is not None:
            sources.append(audio_src)
    except Exception:
        for s in sources:
            s.close()
        raise
    if not sources:
        raise MediaError("none of the selected segments is available locally")
    return sources
