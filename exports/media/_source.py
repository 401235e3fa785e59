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

Every packet is yielded as a packet of the track's first run (``_reframe``: a run packaged
otherwise, such as fMP4 segments after MPEG-TS ones, is converted), and AES-128 encrypted
parts are decrypted as FFmpeg reads them (``_decrypt``), with their keys from ``files``.

Damaged segments (``_validate``: cut short, overwritten, of another codec or picture size) are
left out as if they were missing, and listed in ``TrackSource.skipped``: a segment's packets are
held until the segment is judged (when the first video packet of a later segment arrives, or the
run ends), then yielded or dropped.  A demuxer that fails or stops inside a run is opened again
on the segments after the one it stopped in.  After a hole (a segment missing, skipped, or a
gap in the manifest's timeline) the video starts again on a keyframe, without that keyframe's
leading pictures: what references pictures that are not there is not yielded.  The output of a
clip keeps such a hole in its timeline (timestamps jump over it), as for a missing segment.
"""
from __future__ import annotations

import bisect
import collections
import concurrent.futures
import io
import os
import statistics
from dataclasses import dataclass
from typing import BinaryIO, Iterator, Mapping, Sequence

import av

from ._common import SkippedSegment
from ._decrypt import EncryptedFile, read_key
from ._reframe import Reframe
from ._validate import (
    TS_HEAD,
    TsEdges,
    VideoCheck,
    piece_format,
    structure_problem,
    ts_counter_problem,
    ts_edges,
    ts_open_pes_problem,
    ts_sync_ok,
    ts_video_types,
)
from .errors import KeyUnavailable, MediaError
from .manifest import Part, Segment, Track
from .select import Selection, lack_length

__all__ = ["ConcatFile", "Pkt", "TrackSource", "describe_skipped", "open_sources", "skipped_of"]


Piece = str | EncryptedFile  # a downloaded file, read as it is or decrypted


def _open(piece: Piece) -> BinaryIO:
    return piece.open() if isinstance(piece, EncryptedFile) else open(piece, "rb")


class ConcatFile(io.RawIOBase):
    """Read-only, seekable concatenation of files (no copy).

    `ts`: which pieces are MPEG-TS; their sync bytes are checked as they are read, and the pieces
    where one is missing are put in `sync_lost`.  A piece None is empty (a segment left out).
    `error_piece`: the piece whose reading raised, if one did."""

    def __init__(self, pieces: Sequence[Piece | None], ts: Sequence[bool] = ()):
        super().__init__()
        self.pieces = list(pieces)
        self.ts = list(ts) + [False] * (len(self.pieces) - len(ts))
        self.sync_lost: set[int] = set()
        self.error_piece: int | None = None
        self.sizes = [_size(p) if p is not None else 0 for p in self.pieces]
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
        try:
            if self._fh_idx != i:
                if self._fh is not None:
                    self._fh.close()
                    self._fh = None
                self._fh = _open(self.pieces[i])
                self._fh_idx = i
            self._fh.seek(local)
            got = self._fh.readinto(memoryview(b)[:n])
        except Exception:
            self.error_piece = i
            raise
        if self.ts[i] and got and not ts_sync_ok(memoryview(b)[:got], local):
            self.sync_lost.add(i)
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
    tb: float = 0.0  # the packet's time base as a float (0: read it from the packet): muxers need no Fraction


class TrackSource:
    """Demuxes the available files of one track, yielding packets in recording time."""

    def __init__(self, track: Track, files: Mapping[str, str], *, want_video: bool, want_audio: bool,
                 decode_check: bool = False):
        self.track = track
        # decode the first keyframe of every segment (VideoCheck.decode_problem), not only of those that
        # bring new parameter sets: for readers that decode the clip anyway
        self.decode_check = decode_check
        self.files = files
        self.keys: dict[str, bytes] = {}  # AES-128 keys read, by local name
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
        self.skipped: list[SkippedSegment] = []  # damaged segments left out, in recording order
        self._prev_end: float | None = None  # manifest end of the last segment yielded
        self._hole = False  # a segment was left out since then
        self._await_key = False  # after a hole: video waits for a keyframe
        self._lead_key: tuple[int, float] | None = None  # (segment, keyframe pts): its leading pictures are dropped
        self._frame_ms = 40.0  # the video's frame duration
        self._key_sizes: collections.deque[int] = collections.deque(maxlen=8)  # of the last segments' keyframes
        self._ts_video: frozenset[int] | None = None  # MPEG-TS video stream types of the track's first segment
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._edges: dict[int, TsEdges | None] = {}  # MPEG-TS segment (index in parts) -> its edges (_ts_edges)

        # runs of consecutive segments that share an initialization (all of them, unless the
        # track changes it: DASH periods, HLS EXT-X-MAP), each read as one byte stream; a segment
        # without its file or its initialization's file is skipped, and so is one whose file
        # cannot be whole (_validate.structure_problem)
        self.runs: list[_Run] = []
        last_fmt = None  # how the last segment was packaged ("ts" / "mp4")
        init_fmts: dict[str, str] = {}  # how each initialization is packaged
        for s in track.segments:
            path = self._local(s.name)
            if path is None:
                continue
            try:
                piece = self._piece(s.part, path)
            except KeyUnavailable:
                raise
            except MediaError as e:  # (an encrypted segment that is not whole AES blocks, or badly padded)
                self._skip(s, str(e))
                continue
            init = track.init_of(s)
            init_path = self._local(init.name) if init is not None else None
            if init is not None and init_path is None:
                continue
            init_piece = self._piece(init, init_path) if init is not None else None
            fmt, head = _format(piece)
            if init_piece is not None and init.name not in init_fmts:
                init_fmts[init.name] = _format(init_piece)[0]
            init_fmt = init_fmts[init.name] if init_piece is not None else None
            if init_piece is not None and fmt == "ts" and init_fmt != "ts":
                # MPEG-TS initializes itself: an fMP4 EXT-X-MAP left in effect over it (by a playlist
                # writer unaware that the packaging changed) does not apply
                init = init_piece = None
            if fmt == "other":  # (garbage where an MPEG-TS or fMP4 segment is expected is checked as one)
                fmt = init_fmt if init_fmt in ("ts", "mp4") else (last_fmt or fmt)
            else:
                last_fmt = fmt
            problem = structure_problem(lambda p=piece: _open(p), _size(piece), fmt)
            if problem is None and fmt == "ts":
                problem = self._ts_codec_problem(head)
            if problem is not None:
                self._skip(s, problem)
                continue
            init_name = init.name if init is not None else None
            if not self.runs or self.runs[-1].init_name != init_name:
                self.runs.append(_Run(init_name, init_piece, len(self.parts), s.key))
            self.runs[-1].segments.append(piece)
            self.runs[-1].ts.append(fmt == "ts")
            self.parts.append((s, path))
        # an MPEG-TS segment cut on a packet boundary inside a PES packet that declares its length is left
        # out of the demuxer's stream, as one that is not whole packets: the demuxer and the parsers would
        # take the next segment's first bytes for the rest of that PES packet
        for run in self.runs:
            for k, ts in enumerate(run.ts):
                problem = self._ts_pes_problem(run, run.first_part + k) if ts else None
                if problem is not None:
                    run.blanked.add(k)
                    self._skip(self.parts[run.first_part + k][0], problem)
        if not self.parts:
            return
        try:
            for run in self.runs:
                self._open_run(run)
        except Exception as e:  # av.error.*, OSError
            self.close()
            raise MediaError(f"cannot read {track.kind} segments ({self.parts[0][0].key} ...): {e}") from e
        self.file = self.runs[0].file
        self.container = self.runs[0].container
        if want_video and self.container.streams.video:
            self.vstream = self.container.streams.video[0]
        if want_audio and self.container.streams.audio:
            self.astream = self.container.streams.audio[0]
        if self.vstream is not None:
            rate = self.vstream.average_rate or self.vstream.guessed_rate
            self._frame_ms = 1000.0 / float(rate) if rate else 40.0
        try:
            for run in self.runs:
                run.reframe = self._reframe(run)
        except MediaError:
            self.close()
            raise

    def _open_run(self, run: "_Run", start: int = 0) -> None:
        """Open the run's demuxer on its segments from `start` (index in run.segments) on, leaving out
        (as damaged) a segment it cannot be opened on; the first error when it cannot be opened at all."""
        first_error: Exception | None = None
        while True:
            try:
                run.open(start)
                return
            except Exception as e:  # av.error.*, OSError, MediaError (a decryption)
                first_error = first_error or e
                k = run.failed_segment()
                if k is None:
                    k = next((i for i in range(start, len(run.segments)) if i not in run.blanked), None)
                if k is None or k in run.blanked:
                    raise first_error from None
                run.blanked.add(k)
                self._skip(self.parts[run.first_part + k][0], f"it cannot be read ({e})")

    def _ts_codec_problem(self, head: bytes) -> str | None:
        """Whether an MPEG-TS segment declares another video codec than the track's first one."""
        types = ts_video_types(head)
        if not types:
            return None
        if self._ts_video is None:
            self._ts_video = types
            return None
        if types != self._ts_video:
            found = ", ".join(f"0x{t:02x}" for t in sorted(types))
            expected = ", ".join(f"0x{t:02x}" for t in sorted(self._ts_video))
            return f"its video is of another codec (MPEG-TS stream type {found}, the recording's {expected})"
        return None

    def _checker(self) -> concurrent.futures.ThreadPoolExecutor:
        """The thread decoding the segments' first keyframes (VideoCheck.decode_problem), in order."""
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="segment-check")
        return self._pool

    def _skip(self, seg: Segment, reason: str) -> None:
        """Leave a damaged segment out (as if it were missing)."""
        self.skipped.append(SkippedSegment(key=seg.key, name=seg.name, track=self.track.kind, start_ms=seg.start_ms,
                                           end_ms=seg.end_ms, reason=reason))
        self._hole = True

    def _local(self, name: str) -> str | None:
        """The downloaded file of the part named `name`, if it is there."""
        path = self.files.get(name)
        return path if path and os.path.isfile(path) else None

    def _piece(self, part: Part, path: str) -> Piece:
        """What FFmpeg reads of a downloaded part: its file, decrypted as it is read when it is
        encrypted (the key is read once per track)."""
        encryption = part.encryption
        if encryption is None:
            return path
        key_name = encryption.key_part.name
        if key_name not in self.keys:
            key_path = self._local(key_name)
            if key_path is None:
                raise KeyUnavailable(key_name, f"the AES-128 key {key_name} of {part.key} cannot be read "
                                               "(it is not among the downloaded files)")
            self.keys[key_name] = read_key(key_path, key_name)
        return EncryptedFile(path, self.keys[key_name], encryption.iv, part.name)

    def _reframe(self, run: "_Run") -> Reframe:
        """The conversion of a run's packets to the form of the first run's (see _reframe)."""
        streams = run.container.streams
        return Reframe(video=streams.video[0] if self.vstream is not None and streams.video else None,
                       audio=streams.audio[0] if self.astream is not None and streams.audio else None,
                       primary_video=self.vstream, primary_audio=self.astream, where=run.first_key)

    @property
    def usable(self) -> bool:
        return self.container is not None and (self.vstream is not None or self.astream is not None)

    def close(self) -> None:
        if getattr(self, "_pool", None) is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)  # (before the decoders it uses are dropped)
            self._pool = None
        for run in getattr(self, "runs", ()):
            run.close()
        self.container = None
        self.file = None

    # -- timeline ---------------------------------------------------------------
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

    def _wrap(self, pkt: av.Packet, offset: float, kind: str) -> Pkt:
        tb = float(pkt.time_base)
        dts = pkt.dts if pkt.dts is not None else pkt.pts
        pts = pkt.pts if pkt.pts is not None else dts
        rt_dts = dts * tb * 1000.0 + offset
        rt_pts = pts * tb * 1000.0 + offset
        dur = (pkt.duration or 0) * tb * 1000.0
        if kind == "video" or self.vstream is None:
            if rt_dts > self._last_rt_dts and self._last_rt_dts != float("-inf"):
                self._last_dur = dur or min(1000.0, rt_dts - self._last_rt_dts) or self._last_dur
            self._last_rt_dts = max(self._last_rt_dts, rt_dts)
        return Pkt(kind=kind, packet=pkt, rt_pts=rt_pts, rt_dts=rt_dts, dur_ms=dur, key=bool(pkt.is_keyframe), tb=tb)

    def packets(self) -> Iterator[Pkt]:
        """Packets of the wanted streams in (about) decode order with recording-time stamps.

        Each packet belongs to the segment its bytes come from; a segment's packets are held
        until it is judged (``_judge``: when the first video packet of a later segment arrives,
        or the first packet of a later segment when there is no video, or the run ends), then
        yielded, their offset fixed by the segment's first video packet (first packet when there
        is no video), or dropped when the segment is damaged.
        """
        if not self.usable:
            return
        for run in self.runs:
            yield from self._run_packets(run)

    def _run_packets(self, run: "_Run") -> Iterator[Pkt]:
        judged: dict[int, _Verdict] = {}  # segment (index in self.parts) -> what became of it
        held: dict[int, _Held] = {}  # segment -> its packets, not judged yet
        hi = run.first_part + len(run.segments) - 1
        last = top = run.first_part + run.start
        anchor_index: int | None = None
        while True:
            c = run.container
            vstream = c.streams.video[0] if self.vstream is not None and c.streams.video else None
            astream = c.streams.audio[0] if self.astream is not None and c.streams.audio else None
            streams = [s for s in (vstream, astream) if s is not None]
            if not streams:
                break
            anchor_index = vstream.index if vstream is not None else None
            if vstream is not None and run.check is None:
                run.check = VideoCheck(vstream)
            demuxed = c.demux(streams)
            error: Exception | None = None
            while True:
                try:
                    pkt = next(demuxed)
                except StopIteration:
                    break
                except (av.error.FFmpegError, OSError, MediaError) as e:
                    error = e
                    break
                if pkt.dts is None and pkt.pts is None:
                    continue
                pos = pkt.pos
                idx = run.first_part + run.segment_of(pos) if pos is not None and pos >= 0 else last
                last = idx
                verdict = judged.get(idx)
                if verdict is not None:  # (a late packet of a segment already judged)
                    yield from self._emit(run, (pkt,), verdict, anchor_index)
                    continue
                top = max(top, idx)
                h = held.get(idx)
                if h is None:
                    h = held[idx] = _Held()
                h.packets.append(pkt)
                video = pkt.stream_index == anchor_index
                if video:
                    if h.first_video is None:
                        h.first_video = pkt
                    if h.key_check is None and pkt.is_keyframe and run.check.active:
                        check = run.check
                        h.new_sets = check.new_parameter_sets(memoryview(pkt))
                        # a stream copy puts every segment into one track, described by the first one's
                        # parameters: a segment of another encoding is left out, from the profile and level
                        # its new parameter sets say, or the size its keyframe decodes to (in band: with its
                        # own parameter sets; MP4 packets without them: with the initialization's, which
                        # another encoding's pictures do not decode with).  A decoder takes any of them.
                        if self.decode_check or h.new_sets or (check.relies_on_extradata(memoryview(pkt))
                                                               and self._unlike_keyframes(pkt.size)):
                            # decoded beside the demuxing (the decoder releases the GIL), judged with the segment
                            h.key_check = self._checker().submit(
                                check.keyframe_problem, bytes(pkt), frozenset() if self.decode_check else h.new_sets)
                        else:
                            h.key_check = _NOT_DECODED
                if len(held) > 1 and (anchor_index is None or video or len(h.packets) > 256):
                    # the segments before this one are complete
                    for j in sorted(k for k in held if k < idx):
                        after = pkt if video and j + 1 == idx else None
                        yield from self._judge(run, j, held.pop(j), judged, anchor_index, after)
                if len(h.packets) >= _HOLD_MAX:
                    # a long segment (a whole recording in one file) is judged on its beginning, and the
                    # rest of it passes as it comes, as before (holding all of it would cost its size)
                    yield from self._judge(run, idx, held.pop(idx), judged, anchor_index, None, partial=True)
            if error is None and top >= hi:
                break
            # the demuxer failed, or stopped before the end of the run: find the segment it failed on (the
            # one a read failed in, else the first from the last one it gave packets of that does not
            # demux alone), leave it out, and demux again from the last segment it gave packets of
            t = top - run.first_part
            k = run.failed_segment()
            if k is None:
                k = next((i for i in range(t, len(run.segments)) if i not in run.blanked and not run.demuxes(i)),
                         None)
            if k is None or run.first_part + k in judged:
                # nothing to blame: what was read stands, and the reading goes on after it
                for j in sorted(held):
                    yield from self._judge(run, j, held.pop(j), judged, anchor_index, None)
                restart = t + 1
            else:
                culprit = run.first_part + k
                for j in sorted(i for i in held if i < min(top, culprit)):
                    yield from self._judge(run, j, held.pop(j), judged, anchor_index, None)
                for j in [i for i in held if i >= min(top, culprit)]:
                    del held[j]  # (demuxed again)
                judged[culprit] = _DROPPED
                run.blanked.add(k)
                self._skip(self.parts[culprit][0], f"it cannot be demuxed ({error or 'the demuxer stops in it'})")
                restart = min(t, k)
            if restart >= len(run.segments):
                break
            try:
                self._open_run(run, restart)
                run.reframe = self._reframe(run)
            except Exception:  # av.error.*, OSError, MediaError: nothing more of the run can be read
                break
            last = top = run.first_part + run.start
        for j in sorted(held):
            yield from self._judge(run, j, held.pop(j), judged, anchor_index, None)

    def _unlike_keyframes(self, size: int) -> bool:
        """Whether a keyframe without parameter sets is worth decoding: the first one, or one whose
        size is far from the last keyframes' (another encoding's pictures: another rendition's
        segment). Decoding every one would cost a copy more than the copy itself (4K: tens of ms each)."""
        typical = statistics.median(self._key_sizes) if self._key_sizes else None
        self._key_sizes.append(size)
        return typical is None or not typical / _KEY_SIZE_RATIO <= size <= typical * _KEY_SIZE_RATIO

    def _judge(self, run: "_Run", j: int, h: "_Held", judged: dict, anchor_index: int | None,
               after: av.Packet | None, partial: bool = False) -> Iterator[Pkt]:
        """Yield the packets of segment `j` (index in self.parts), or drop them when it is damaged.
        `after`: the first video packet of the segment that follows it, when that one is read;
        `partial`: the packets are the segment's first ones only."""
        seg = self.parts[j][0]
        problem = self._problem(run, j, h, anchor_index, after, partial)
        if problem is not None:
            judged[j] = _DROPPED
            self._skip(seg, problem)
            return
        if self._hole or (self._prev_end is not None and seg.start_ms - self._prev_end > 1.0):
            self._hole = False
            self._await_key = anchor_index is not None
        self._prev_end = seg.end_ms
        first = h.first_video if h.first_video is not None else h.packets[0]
        verdict = judged[j] = _Verdict(self._anchor(j, first), j)
        yield from self._emit(run, h.packets, verdict, anchor_index)

    def _emit(self, run: "_Run", packets, verdict: "_Verdict", anchor_index: int | None) -> Iterator[Pkt]:
        if verdict is _DROPPED:
            return
        for q in packets:
            kind = "video" if q.stream_index == anchor_index else "audio"
            if kind == "video" and (self._await_key or self._lead_key is not None):
                if self._await_key:  # after a hole: from a keyframe on, without its leading pictures
                    if not q.is_keyframe:
                        continue
                    self._await_key = False
                    self._lead_key = (verdict.seg, q.pts)
                elif self._lead_key[0] != verdict.seg:
                    self._lead_key = None
                elif q.pts is not None and self._lead_key[1] is not None and q.pts < self._lead_key[1]:
                    continue
            q = run.reframe(q, kind)  # (after anchoring: the offset is taken from the packet as demuxed)
            if q is not None:
                yield self._wrap(q, verdict.offset, kind)

    def _problem(self, run: "_Run", j: int, h: "_Held", anchor_index: int | None,
                 after: av.Packet | None, partial: bool = False) -> str | None:
        """Why segment `j` is damaged (None: it is not); see _validate."""
        k = j - run.first_part
        if run.sync_lost(k):
            return "its MPEG-TS packets lose their sync (bytes overwritten or missing)"
        check = run.check
        if anchor_index is None or check is None or h.first_video is None or not check.active:
            return None
        video = [p for p in h.packets if p.stream_index == anchor_index]
        first = video[0]
        key = next((p for p in video if p.is_keyframe), None)
        problem = check.nal_problem(memoryview(first), first.is_keyframe)
        if problem is None and key is not None and key is not first:
            problem = check.nal_problem(memoryview(key), True)
        if problem is not None:
            return problem
        if check.length_size is not None:
            for p in video:
                if not check.framing_ok(memoryview(p)):
                    return "its video packets are not whole NAL units (bytes overwritten or missing)"
        if h.key_check is not None and h.key_check is not _NOT_DECODED:
            problem = h.key_check.result()
            if problem is not None:
                return problem
        problem = None if partial else self._cut_short(run, j, h, video, after)
        if problem is None and h.new_sets:
            check.known_sets |= h.new_sets
        return problem

    def _cut_short(self, run: "_Run", j: int, h: "_Held", video: list, after: av.Packet | None) -> str | None:
        """Whether the media of segment `j` ends well before the next segment begins (or, for
        MPEG-TS without a next segment to compare with, before the manifest says it ends): a file
        truncated on a packet boundary.  Video and audio are both short then."""
        seg = self.parts[j][0]
        tb = float(video[0].time_base) * 1000.0
        times = [p.dts if p.dts is not None else p.pts for p in video]
        start = min(times) * tb
        covered = max(times) * tb + self._frame_ms - start
        audio = [p for p in h.packets if p.stream_index != video[0].stream_index and p.pts is not None]
        if audio:
            atb = float(audio[0].time_base) * 1000.0
            end = max(p.pts + (p.duration or 0) for p in audio) * atb
            covered = max(covered, end - min(p.pts for p in audio) * atb)
        expected = None
        if after is not None and j + 1 < len(self.parts):
            nxt = self.parts[j + 1][0]
            span = nxt.start_ms - seg.start_ms
            if abs(nxt.start_ms - seg.end_ms) <= 1.0:
                t = (after.dts if after.dts is not None else after.pts) * float(after.time_base) * 1000.0
                if abs((t - start) - span) <= max(1000.0, 0.25 * span):
                    expected = t - start  # (the next segment continues this one's timestamps)
        continued = expected is not None
        if expected is None and run.ts[j - run.first_part]:
            expected = seg.end_ms - seg.start_ms
        if expected is not None and expected - covered > max(4 * self._frame_ms, 0.25 * expected):
            return f"it is cut short (its media covers {covered:.0f} ms of {expected:.0f})"
        if continued and run.ts[j - run.first_part]:
            # an MPEG-TS segment cut on a packet boundary, too little to be seen in time: packets lost at its
            # end, as the continuity counters say
            return self._ts_counter_problem(run, j)
        return None

    # -- MPEG-TS segments cut on a packet boundary (_validate.ts_edges) -----------------------------
    def _ts_edges_of(self, run: "_Run", j: int) -> TsEdges | None:
        """The edges of segment `j` (index in self.parts; read once) when it is an MPEG-TS segment of
        `run` that its demuxer reads (not left out); else None."""
        k = j - run.first_part
        if not 0 <= k < len(run.segments) or not run.ts[k] or k in run.blanked:
            return None
        if j not in self._edges:
            piece = run.segments[k]
            try:
                self._edges[j] = ts_edges(lambda: _open(piece), _size(piece))
            except (OSError, MediaError):
                self._edges[j] = None
        return self._edges[j]

    def _follows(self, j: int) -> bool:
        """Whether segment `j` (index in self.parts) starts where the one before it ends."""
        return 0 < j < len(self.parts) and abs(self.parts[j][0].start_ms - self.parts[j - 1][0].end_ms) <= 1.0

    def _media_pids(self, run: "_Run") -> list[int]:
        """The PIDs of the streams read from the run's MPEG-TS segments (their stream ids)."""
        streams = run.container.streams
        return [s.id for s, wanted in ((streams.video[0] if streams.video else None, self.vstream),
                                       (streams.audio[0] if streams.audio else None, self.astream))
                if s is not None and wanted is not None]

    def _ts_pes_problem(self, run: "_Run", j: int) -> str | None:
        """Whether MPEG-TS segment `j` ends inside an audio or video PES packet that declares its length
        (see _validate.ts_open_pes_problem; the segment that follows it, else the one before it, is the
        witness that the muxer's lengths are right)."""
        edges = self._ts_edges_of(run, j)
        if edges is None or not edges.open_pes:
            return None
        nxt = self._ts_edges_of(run, j + 1) if self._follows(j + 1) else None
        witness = nxt if nxt is not None else (self._ts_edges_of(run, j - 1) if self._follows(j) else None)
        return ts_open_pes_problem(edges, nxt, witness, sorted(edges.open_pes))

    def _ts_counter_problem(self, run: "_Run", j: int) -> str | None:
        """Whether MPEG-TS segment `j`, whose timeline the next segment continues, lost packets at its
        end, as the continuity counters say (see _validate.ts_counter_problem)."""
        prev = self._ts_edges_of(run, j - 1) if self._follows(j) else None
        nxt = self._ts_edges_of(run, j + 1) if prev is not None else None
        then = self._ts_edges_of(run, j + 2) if nxt is not None and self._follows(j + 2) else None
        edges = self._ts_edges_of(run, j) if then is not None else None
        if edges is None:
            return None
        return ts_counter_problem(prev, edges, nxt, then, self._media_pids(run))


class _Held:
    """The packets of a segment, held until it is judged."""

    __slots__ = ("first_video", "key_check", "new_sets", "packets")

    def __init__(self):
        self.packets: list[av.Packet] = []
        self.first_video: av.Packet | None = None
        # VideoCheck.decode_problem of its first keyframe (_NOT_DECODED: not asked for)
        self.key_check: concurrent.futures.Future | None = None
        self.new_sets: frozenset[bytes] = frozenset()  # parameter sets its first keyframe brings


_NOT_DECODED = concurrent.futures.Future()
_HOLD_MAX = 1500  # packets held at most per segment (10 s of 60 fps video and 48 kHz AAC: about 1070)
# a keyframe this many times larger or smaller than the last ones' median is decoded (_unlike_keyframes)
_KEY_SIZE_RATIO = 1.5


class _Verdict:
    """A segment judged sound: the offset of its timestamps (ms)."""

    __slots__ = ("offset", "seg")

    def __init__(self, offset: float, seg: int):
        self.offset = offset
        self.seg = seg


_DROPPED = _Verdict(0.0, -1)  # a segment judged damaged: its packets are dropped


def _format(piece: Piece) -> tuple[str, bytes]:
    """"ts", "mp4" or "other" (how a downloaded part is packaged), and its first bytes."""
    with _open(piece) as f:
        head = f.read(TS_HEAD)
    return piece_format(head), head


def _size(piece: Piece) -> int:
    return piece.size if isinstance(piece, EncryptedFile) else os.path.getsize(piece)


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
    """Consecutive segments of a track sharing one initialization, read as one byte stream (from
    `start` on: a demuxer that failed inside the run is opened again on the segments after)."""

    def __init__(self, init_name: str | None, init: Piece | None, first_part: int, first_key: str):
        self.init_name = init_name
        self.init = init
        self.first_part = first_part  # index in TrackSource.parts of the run's first segment
        self.first_key = first_key  # (its storage key, for messages)
        self.first_seg_file = 1 if init is not None else 0  # index in the byte stream of the first segment
        self.segments: list[Piece] = []
        self.ts: list[bool] = []  # which segments are MPEG-TS
        self.start = 0  # the segment (index in `segments`) the open demuxer starts on
        self.blanked: set[int] = set()  # segments left out of the demuxer (damaged)
        self._tried: tuple[ConcatFile | None, int] = (None, 0)  # the last demuxer's stream, and its start
        self.file: ConcatFile | None = None
        self.container = None
        self.reframe: Reframe | None = None
        self.check: VideoCheck | None = None
        self._retired: list = []  # demuxers replaced by a new one (their streams may be the track's primary ones)

    def open(self, start: int = 0) -> None:
        """Open the demuxer on the segments from `start` (index in `segments`) on, without the
        `blanked` ones (read as empty)."""
        segments = [None if k in self.blanked else p for k, p in enumerate(self.segments)][start:]
        file = ConcatFile(([self.init] if self.init is not None else []) + segments,
                          [False] * self.first_seg_file + self.ts[start:])
        self._tried = (file, start)
        try:
            container = av.open(file, "r", buffer_size=1 << 18)
        except BaseException:
            file.close()
            raise
        if self.container is not None:
            self._retired += [self.container, self.file]
        self.file, self.container, self.start = file, container, start

    def failed_segment(self) -> int | None:
        """The segment (index in `segments`) whose reading raised in the last demuxer opened, if one did."""
        file, start = self._tried
        if file is None or file.error_piece is None or file.error_piece < self.first_seg_file:
            return None
        return start + file.error_piece - self.first_seg_file

    def demuxes(self, k: int) -> bool:
        """Whether segment `k` (index in `segments`) demuxes alone, to its end."""
        if k >= len(self.segments) or k in self.blanked:
            return True
        try:
            with av.open(ConcatFile(([self.init] if self.init is not None else []) + [self.segments[k]]), "r") as c:
                return any(True for _ in c.demux())
        except Exception:  # av.error.*, OSError, MediaError
            return False

    def segment_of(self, pos: int) -> int:
        """The segment (index in `segments`) holding byte `pos` of the open demuxer's stream."""
        k = self.start + self.file.part_of(pos) - self.first_seg_file
        return min(max(k, self.start), len(self.segments) - 1)

    def sync_lost(self, k: int) -> bool:
        """Whether a sync byte of segment `k` was missing when the open demuxer read it."""
        return self.file is not None and (k - self.start + self.first_seg_file) in self.file.sync_lost

    def close(self) -> None:
        for obj in (self.container, self.file, *self._retired):
            if obj is not None:
                try:
                    obj.close()
                except Exception:
                    pass
        self._retired = []
        self.container = None
        self.file = None
        if self.check is not None:
            self.check.close()


def open_sources(selection: Selection, files: Mapping[str, str], *, decode_check: bool = False) -> list[TrackSource]:
    """Open the sources for the first track (video / muxed) and the audio track, if any.

    Audio comes from the separate audio track when it is usable, else from the muxed track.
    `decode_check`: see TrackSource.
    """
    if not selection.tracks:
        raise MediaError("the selection has no track")
    first = selection.tracks[0]
    audio_track = next((t for t in selection.tracks[1:] if t.kind == "audio"), None)
    sources: list[TrackSource] = []
    audio_src = None
    try:
        if audio_track is not None:
            audio_src = TrackSource(audio_track, files, want_video=False, want_audio=True)
            if not audio_src.usable:
                audio_src.close()
                audio_src = None
        main = TrackSource(first, files, want_video=first.kind != "audio",
                           want_audio=first.kind == "audio" or audio_src is None, decode_check=decode_check)
        if main.usable:
            sources.append(main)
        else:
            main.close()
            if main.skipped:  # (rather than a clip of the other track alone)
                raise MediaError(f"no {first.kind} segment of the clip can be read: {describe_skipped(main.skipped)}")
        if audio_src is not None:
            sources.append(audio_src)
    except Exception:
        for s in sources + ([audio_src] if audio_src is not None else []):
            s.close()
        raise
    if not sources:
        raise MediaError("none of the selected segments is available locally")
    return sources


def skipped_of(selection: Selection, files: Mapping[str, str],
               sources: Sequence[TrackSource]) -> tuple[tuple[SkippedSegment, ...], int]:
    """The damaged segments the sources left out (in recording order), and the ms of the requested
    range they make the first track lack beyond what the missing files do (see ClipInfo). The
    look-ahead segment (Selection.lookahead: optional, past the end) is not one of them: damaged,
    it is left out as an absent one is, unreported."""
    skipped = tuple(sorted((s for src in sources for s in src.skipped if s.name not in selection.lookahead),
                           key=lambda s: (s.start_ms, s.track)))
    if not skipped:
        return (), 0
    missing = [k for k in selection.keys() if not (files.get(k) and os.path.isfile(files[k]))]
    extra = lack_length(selection, missing + [s.name for s in skipped]) - lack_length(selection, missing)
    return skipped, max(0, extra)


def describe_skipped(skipped: Sequence[SkippedSegment]) -> str:
    """`key (reason)` of each skipped segment, for messages."""
    text = "; ".join(f"{s.key} ({s.reason})" for s in skipped[:3])
    return text + (f"; and {len(skipped) - 3} more" if len(skipped) > 3 else "")
