"""Reading the downloaded segments of a track as one packet stream in recording time.

Internal helpers shared by cut / thumbnail.  A track's available files (init +
segments, or plain TS segments; byte ranges are files of their own) are exposed to
FFmpeg as one seekable byte stream (``ConcatFile``) per run of segments sharing an
initialization (several when it changes: DASH periods, HLS EXT-X-MAP); every demuxed
packet is mapped back to the segment it came from (by byte position) so that its
timestamps can be expressed in *recording time*:

* the first segment read anchors the media timeline to the manifest
  (``rt = raw + offset`` with ``offset = segment.start_ms - segment.media_start_ms``
  when the manifest maps media time (DASH) and the timestamps agree with it, else
  ``offset = segment.start_ms - first_video_pts``);
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

        # runs of consecutive segments that share an initialization (all of them, unless the
        # track changes it: DASH periods, HLS EXT-X-MAP), each read as one byte stream; a segment
        # without its file or its initialization's file is skipped
        self.runs: list[_Run] = []
        for s in track.segments:
            path = local(s.name)
            init = track.init_of(s)
            init_path = local(init.name) if init is not None else None
            if path is None or (init is not None and init_path is None):
                continue
            init_name = init.name if init is not None else None
            if not self.runs or self.runs[-1].init_name != init_name:
                self.runs.append(_Run(init_name, init_path, len(self.parts)))
            self.runs[-1].paths.append(path)
            self.parts.append((s, path))
        if not self.parts:
            return
        try:
            for run in self.runs:
                run.open()
        except Exception as e:  # av.error.*, OSError
            self.close()
            raise MediaError(f"cannot read {track.kind} segments ({self.parts[0][0].key} ...): {e}") from e
        self.file = self.runs[0].file
        self.container = self.runs[0].container
        if want_video and self.container.streams.video:
            self.vstream = self.container.streams.video[0]
        if want_audio and self.container.streams.audio:
            self.astream = self.container.streams.audio[0]

    @property
    def usable(self) -> bool:
        return self.container is not None and (self.vstream is not None or self.astream is not None)

    def close(self) -> None:
        for run in getattr(self, "runs", ()):
            run.close()
        self.container = None
        self.file = None

    # -- timeline ---------------------------------------------------------------
    def _seg_index(self, run: "_Run", pos: int) -> int:
        return run.first_part + run.file.part_of(pos) - run.first_seg_file

    def _anchor(self, seg_idx: int, pkt: av.Packet) -> float:
        """Offset (ms) mapping this segment's raw timestamps to recording time."""
        seg = self.parts[max(0, seg_idx)][0]
        tb = float(pkt.time_base)
        raw_ts = pkt.pts if pkt.pts is not None else pkt.dts
        raw = raw_ts * tb * 1000.0
        if self.offset is None:
            self.offset = _manifest_offset(seg, raw)
        else:
            span = seg.start_ms - self._prev_seg_start
            expected = self._prev_raw + span
            if abs(raw - expected) > max(1000.0, 0.25 * abs(span)):
                # a jump the manifest does not explain: re-anchor on the manifest time
                new = _manifest_offset(seg, raw)
                dts = pkt.dts if pkt.dts is not None else raw_ts
                rt_dts = dts * tb * 1000.0 + new
                floor = self._last_rt_dts + self._last_dur
                if rt_dts < floor:
                    new += floor - rt_dts
                self.offset = new
        self._prev_raw = raw
        self._prev_seg_start = seg.start_ms
        return self.offset

    def _wrap(self, pkt: av.Packet, offset: float, video_index: int | None = None) -> Pkt:
        tb = float(pkt.time_base)
        dts = pkt.dts if pkt.dts is not None else pkt.pts
        pts = pkt.pts if pkt.pts is not None else dts
        rt_dts = dts * tb * 1000.0 + offset
        rt_pts = pts * tb * 1000.0 + offset
        dur = (pkt.duration or 0) * tb * 1000.0
        kind = "video" if (video_index is not None and pkt.stream_index == video_index) else "audio"
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
        for run in self.runs:
            yield from self._run_packets(run)

    def _run_packets(self, run: "_Run") -> Iterator[Pkt]:
        c = run.container
        vstream = c.streams.video[0] if self.vstream is not None and c.streams.video else None
        astream = c.streams.audio[0] if self.astream is not None and c.streams.audio else None
        streams = [s for s in (vstream, astream) if s is not None]
        if not streams:
            return
        anchor_index = vstream.index if vstream is not None else None
        offsets: dict[int, float] = {}
        pending: dict[int, list[av.Packet]] = {}
        last_idx = run.first_part
        lo, hi = run.first_part, run.first_part + len(run.paths) - run.first_seg_file - 1

        def wrap(q: av.Packet, offset: float) -> Pkt:
            return self._wrap(q, offset, anchor_index)

        try:
            for pkt in c.demux(streams):
                if pkt.dts is None and pkt.pts is None:
                    continue
                idx = self._seg_index(run, pkt.pos) if pkt.pos is not None and pkt.pos >= 0 else last_idx
                idx = min(max(idx, lo), hi)
                last_idx = idx
                if idx in offsets:
                    yield wrap(pkt, offsets[idx])
                    continue
                waiting = pending.setdefault(idx, [])
                waiting.append(pkt)
                if anchor_index is None or pkt.stream_index == anchor_index or len(waiting) > 256:
                    # segments before this one that never got a video packet anchor on their first packet
                    for j in sorted(k for k in pending if k < idx):
                        offsets[j] = self._anchor(j, pending[j][0])
                        for q in pending.pop(j):
                            yield wrap(q, offsets[j])
                    anchor_pkt = pkt if (anchor_index is None or pkt.stream_index == anchor_index) else waiting[0]
                    offsets[idx] = self._anchor(idx, anchor_pkt)
                    for q in pending.pop(idx):
                        yield wrap(q, offsets[idx])
            for j in sorted(pending):
                offsets[j] = self._anchor(j, pending[j][0])
                for q in pending[j]:
                    yield wrap(q, offsets[j])
        except av.error.FFmpegError as e:
            raise MediaError(f"cannot demux {self.track.kind} segments: {e}") from e


def _manifest_offset(seg: Segment, raw: float) -> float:
    """Offset (ms) placing a segment whose first packet is at `raw` (ms, media time) at its manifest
    time: by the manifest's own mapping of media time (DASH: period start, presentationTimeOffset,
    timescale) when it gives one that the timestamps agree with, else by putting that packet at
    the segment's start."""
    if seg.media_start_ms is not None:
        offset = seg.start_ms - seg.media_start_ms
        if abs(raw - seg.media_start_ms) <= max(1000.0, seg.end_ms - seg.start_ms):
            return offset
    return seg.start_ms - raw


class _Run:
    """Consecutive segments of a track sharing one initialization, read as one byte stream."""

    def __init__(self, init_name: str | None, init_path: str | None, first_part: int):
        self.init_name = init_name
        self.init_path = init_path
        self.first_part = first_part  # index in TrackSource.parts of the run's first segment
        self.first_seg_file = 1 if init_path else 0  # index in the byte stream of the first segment
        self.paths: list[str] = [init_path] if init_path else []
        self.file: ConcatFile | None = None
        self.container = None

    def open(self) -> None:
        self.file = ConcatFile(self.paths)
        self.container = av.open(self.file, "r", buffer_size=1 << 18)

    def close(self) -> None:
        for obj in (self.container, self.file):
            if obj is not None:
                try:
                    obj.close()
                except Exception:
                    pass
        self.container = None
        self.file = None


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
