"""A damaged segment in the middle of a clip (issue 14 item 9): skipped, the rest exported.

One middle segment of a recording is damaged three ways (truncated to half its bytes, 2 kB in its
middle overwritten with random bytes, replaced by a segment of another recording of another codec
or picture size) and the clip is cut (accurate and keyframe modes, MPEG-TS and MP4) and encoded:
every frame of the output decodes (FFmpeg's error detection set to fail), the frames are the
clip's without the damaged segment's, presented at their recording times (the hole stays in the
timeline, as for a missing segment), audio stays with them, and ClipInfo.skipped names the
segment.  A clip with nothing readable raises MediaError.

The sources (25 fps, every frame stamped with its time), with 1 s GOPs and 2 s segments: DASH
fMP4 and HLS MPEG-TS with H.264, DASH with HEVC, HLS with open GOPs (the keyframe after the
damaged segment has leading pictures that reference it); and HLS with 2 s GOPs in 1 s segments
(the segment after the damaged one starts without a keyframe).  The engine's side of this is
exports/media/_validate.py and _source.py.

Damage a stream copy would carry into its output unseen: an fMP4 segment of the same codec at
another picture size (another rendition; its parameter sets in the initialization, or in band), an
MPEG-TS segment of another profile and level, and an MPEG-TS segment that lost only a tenth of its
end (on a packet boundary or not, or from inside its last PES packet).
"""
import os
import random

import av
import pytest

from exports.media import MediaError, cut_clip, encode_selection, load_recording, select_segments
from exports.media import thumbnail_from_selection
from tests import mediagen

FRAME_MS = 40


@pytest.fixture(scope="session")
def open_gop_hls(store):
    """10 s HLS, H.264 open GOPs with 4 B-frames: each keyframe has leading pictures."""
    path = mediagen.make_hls(os.path.join(store.root, "dmg-open"), duration_s=10, bframes=4, b_pyramid=True,
                             b_adapt=0, open_gop=True)
    return os.path.relpath(path, store.root)


@pytest.fixture(scope="session")
def split_hls(store):
    """10 s HLS with 2 s GOPs cut into 1 s segments (split_by_time): every other segment starts
    without a keyframe."""
    path = mediagen.make_hls(os.path.join(store.root, "dmg-split"), duration_s=10, seg_s=1, gop_s=2,
                             hls_flags="split_by_time")
    return os.path.relpath(path, store.root)


# source -> (manifest fixture, index of the damaged video segment, donor fixture and the index of the
# donor's segment that replaces it, clip range)
SOURCES = {
    "dash-h264": ("dash_timeline", 4, ("hevc_dash", 1), (5520, 14480)),  # [8 s, 10 s); the donor: HEVC
    "hls-h264": ("hls", 4, ("hls_master", 1), (5520, 14480)),  # the donor: 640x360 (v1 of the master)
    "dash-hevc": ("hevc_dash", 1, ("dash_timeline", 1), (520, 5480)),  # [2 s, 4 s); the donor: H.264
}
DAMAGES = ("half", "random", "other")
OUTPUTS = ("accurate-ts", "accurate-mp4", "keyframe-ts", "keyframe-mp4", "encode-ts")


def segment_path(store, manifest: str, index: int) -> tuple[str, object]:
    """(local path, Segment) of a recording's video (or muxed) segment number `index`."""
    rec = load_recording(store.fetch, manifest)
    seg = rec.tracks[0].segments[index]
    return os.path.join(store.root, seg.key), seg


def damage(src: str, how: str, out_dir, donor: str | None = None) -> str:
    """A damaged copy of segment file `src`."""
    with open(src, "rb") as f:
        data = f.read()
    if how == "half":
        data = data[: len(data) // 2]
    elif how == "half-aligned":  # MPEG-TS cut on a packet boundary: its structure is sound, its content short
        data = data[: len(data) // 2 // 188 * 188]
    elif how == "tail":  # a tenth cut off, not on an MPEG-TS packet boundary
        data = data[: len(data) * 9 // 10 // 188 * 188 + 100]
    elif how == "tail-aligned":  # a tenth cut off, on a packet boundary: 200 ms of its 2 s lost
        data = data[: len(data) * 9 // 10 // 188 * 188]
    elif how == "last-pes":  # cut on a packet boundary inside its last PES packet (of those that declare a length)
        data = data[: last_pes_cut(data)]
    elif how == "random":
        rnd = random.Random(14)
        mid = len(data) // 2
        data = data[: mid - 1024] + rnd.randbytes(2048) + data[mid + 1024:]
    elif how == "other":
        with open(donor, "rb") as f:
            data = f.read()
    else:
        raise ValueError(how)
    path = str(out_dir / ("damaged-" + os.path.basename(src)))
    with open(path, "wb") as f:
        f.write(data)
    return path


def last_pes_cut(data: bytes) -> int:
    """The bytes of an MPEG-TS segment up to the end of the first TS packet of its last PES packet
    that declares its length and spans more than one TS packet (audio: FFmpeg writes no length for
    video): a cut inside that PES packet, on a packet boundary, losing what follows it."""
    cut = None
    for i in range(len(data) // 188):
        p = data[i * 188:(i + 1) * 188]
        at = 4 + (1 + p[4] if p[3] & 0x20 else 0)
        if p[1] & 0x40 and p[at:at + 3] == b"\x00\x00\x01":
            length = p[at + 4] << 8 | p[at + 5]
            if length and 6 + length > 188 - at:
                cut = i + 1
    assert cut is not None, "no PES packet that declares a length spans two TS packets"
    return cut * 188


def with_sps(data: bytes, profile: int | None = None, level: int | None = None) -> bytes:
    """An H.264 MPEG-TS segment whose sequence parameter sets (in band, not split between TS packets)
    say another profile_idc / level_idc (the syntax after them is the same for Baseline and Main)."""
    out = bytearray(data)
    at = out.find(b"\x00\x00\x01\x67")
    assert at >= 0, "no SPS"
    while at >= 0:
        if profile is not None:
            out[at + 4] = profile
        if level is not None:
            out[at + 6] = level
        at = out.find(b"\x00\x00\x01\x67", at + 4)
    return bytes(out)


def export(output: str, selection, files, out_dir):
    kind, container = output.split("-")
    out = str(out_dir / f"{output}.{container}")
    if kind == "encode":
        return encode_selection(selection=selection, files=files, out_path=out, codec="h264", container=container)
    return cut_clip(selection=selection, files=files, out_path=out, container=container, mode=kind)


def frames(path: str) -> list[tuple[float, tuple[int, int]]]:
    """(pts in s, stamp) of every video frame, decoded with FFmpeg's error detection set to fail on
    any error; a frame marked corrupt fails too."""
    out = []
    with av.open(path) as c:
        vs = c.streams.video[0]
        vs.codec_context.options = {"err_detect": "explode"}
        for pkt in c.demux(vs):
            for f in vs.codec_context.decode(pkt):
                assert not f.is_corrupt, f"corrupt frame at {f.time}"
                out.append((float(f.pts * f.time_base), mediagen.read_stamp(f)))
    return out


def audio_spans(path: str) -> list[tuple[float, float]]:
    """(start, end) in s of every audio frame, in presentation order (an AAC frame lasts 1024
    samples; MP4 stretches the duration of the sample before a jump in the timeline to the jump)."""
    with av.open(path) as c:
        if not c.streams.audio:
            return []
        a = c.streams.audio[0]
        frame = (a.codec_context.frame_size or 1024) / a.codec_context.sample_rate
        spans = [(float(p.pts * p.time_base), float(p.pts * p.time_base) + frame)
                 for p in c.demux(a) if p.pts is not None]
    return sorted(spans)


def stamp_ms(stamp: tuple[int, int]) -> int:
    return stamp[0] * 1000 + stamp[1] * FRAME_MS


def expected_stamps(first_ms: int, end_ms: int, hole: tuple[int, int], total_s: int) -> list[tuple[int, int]]:
    return [(t // 1000, t % 1000 // FRAME_MS) for t in range(0, total_s * 1000, FRAME_MS)
            if first_ms <= t < end_ms and not hole[0] <= t < hole[1]]


def check_clip(info, selection, output: str, hole: tuple[int, int], seg, total_s: int, muxed: bool,
               expected_first_ms: int | None = None):
    """What a viewer checks on a clip made around a damaged segment (`hole`: the recording time
    whose frames the output lacks)."""
    start, end = int(selection.start_ms), int(selection.end_ms)
    keyframe = output.startswith("keyframe")
    first_ms = expected_first_ms if expected_first_ms is not None else (start // 1000 * 1000 if keyframe else start)
    # the skipped segment is named, and what it adds to LackLength is its time in the clip
    assert [s.key for s in info.skipped] == [seg.key], info.skipped
    skipped = info.skipped[0]
    assert (skipped.start_ms, skipped.end_ms) == (seg.start_ms, seg.end_ms)
    assert skipped.reason
    assert info.skipped_ms == min(end, seg.end_ms) - max(start, seg.start_ms)
    # every frame decodes, and they are the clip's without the damaged segment's
    decoded = frames(info.path)
    stamps = [s for _, s in decoded]
    assert stamps == expected_stamps(first_ms, end, hole, total_s)
    assert mediagen.first_stamp(info.path) == stamps[0]
    assert info.start_ms == pytest.approx(first_ms, abs=1)
    # each frame at its recording time: the hole stays in the timeline (a jump)
    t0 = decoded[0][0]
    for pts, stamp in decoded:
        assert pts - t0 == pytest.approx((stamp_ms(stamp) - first_ms) / 1000, abs=0.002), stamp
    # the duration: the media lacks the skipped time (within a frame); a cut's ClipInfo.duration_ms
    # is the length from the first frame to the end of the last, the hole included, as for a missing
    # segment (an encode's counts its frames today: see test_accurate_matrix, encode-duration-over-hole)
    lacking = min(end, hole[1]) - max(first_ms, hole[0])
    assert len(stamps) * FRAME_MS == pytest.approx(end - first_ms - lacking, abs=FRAME_MS)
    if not output.startswith("encode"):
        assert info.duration_ms == pytest.approx(end - first_ms, abs=FRAME_MS)
    # audio and video together: at both ends, and around the hole (muxed: audio lacks it too;
    # separate audio track, undamaged: audio goes on through it)
    audio = audio_spans(info.path)
    assert audio, "no audio"
    v_end = decoded[-1][0] + FRAME_MS / 1000
    assert audio[0][0] == pytest.approx(t0, abs=0.05)
    assert audio[-1][1] == pytest.approx(v_end, abs=0.05)
    gap_from = t0 + (max(seg.start_ms, first_ms) - first_ms) / 1000  # (the segment's time: its audio's)
    gap_to = t0 + (min(seg.end_ms, end) - first_ms) / 1000
    if gap_to - gap_from < 0.5:
        return
    # (muxed: a segment holds the audio the muxer interleaved with its video by decode time: up to
    # the video's reorder delay (240 ms with 4 B-frames) and an audio frame off its boundaries)
    slack = 0.3
    inside = [a for a in audio if gap_from + slack < (a[0] + a[1]) / 2 < gap_to - slack]
    if muxed:
        assert not inside, "audio where the video lacks a damaged segment"
        before = [a for a in audio if a[1] <= gap_from + slack]
        after = [a for a in audio if a[0] >= gap_to - slack]
        assert before[-1][1] == pytest.approx(gap_from, abs=slack)
        assert after[0][0] == pytest.approx(gap_to, abs=slack)
    else:
        assert max(b[0] - a[1] for a, b in zip(audio, audio[1:], strict=False)) < 0.03  # no hole in the audio


def selection_with(store, manifest: str, start: int, end: int, replaced: dict[str, str]):
    rec = load_recording(store.fetch, manifest)
    sel = select_segments(rec, start, end)
    files = store.files(sel.keys())
    files.update(replaced)
    return sel, files


def damaged_case(store, request, tmp_path, source: str, how: str):
    manifest_fixture, index, (donor_fixture, donor_index), (start, end) = SOURCES[source]
    manifest = request.getfixturevalue(manifest_fixture)
    src, seg = segment_path(store, manifest, index)
    donor = None
    if how == "other":
        donor_manifest = request.getfixturevalue(donor_fixture)
        if donor_fixture == "hls_master":
            donor_manifest = os.path.join(os.path.dirname(donor_manifest), "v1", "index.m3u8")
        donor, _ = segment_path(store, donor_manifest, donor_index)
    bad = damage(src, how, tmp_path, donor)
    sel, files = selection_with(store, manifest, start, end, {seg.key: bad})
    return sel, files, seg


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("source", sorted(SOURCES))
def test_damaged_middle_segment_is_skipped(store, request, tmp_path, source, how, output):
    sel, files, seg = damaged_case(store, request, tmp_path, source, how)
    info = export(output, sel, files, tmp_path)
    total_s = 6 if source == "dash-hevc" else 20
    check_clip(info, sel, output, (int(seg.start_ms), int(seg.end_ms)), seg, total_s, muxed=source.startswith("hls"))


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("how", ["half-aligned", "other-codec"])
def test_damaged_ts_segment_is_skipped(store, request, hevc_hls, tmp_path, how, output):
    """MPEG-TS truncated on a packet boundary (whole packets, half the time), and a segment of
    HEVC in an H.264 recording (the program map says so; FFmpeg's parser would merge its first
    picture into the segment before's last one)."""
    manifest = request.getfixturevalue("hls")
    src, seg = segment_path(store, manifest, 4)
    donor = segment_path(store, hevc_hls, 1)[0] if how == "other-codec" else None
    bad = damage(src, "other" if donor else how, tmp_path, donor)
    sel, files = selection_with(store, manifest, 5520, 14480, {seg.key: bad})
    info = export(output, sel, files, tmp_path)
    check_clip(info, sel, output, (int(seg.start_ms), int(seg.end_ms)), seg, 20, muxed=True)


@pytest.mark.parametrize("output", OUTPUTS)
def test_open_gop_keyframe_after_a_damaged_segment(store, open_gop_hls, tmp_path, output):
    """The keyframe after the damaged segment has leading pictures, predicted from pictures of the
    damaged segment: they are dropped; the leading pictures of the damaged segment's own keyframe
    (presented before it, in the segment before) are lost with it."""
    src, seg = segment_path(store, open_gop_hls, 2)  # [4 s, 6 s)
    bad = damage(src, "random", tmp_path)
    # (a keyframe cut from 0: on a later keyframe, keyframe mode copies that keyframe's own leading
    # pictures, which do not decode: a limit of keyframe mode with open GOPs, damage or not)
    start = 0 if output.startswith("keyframe") else 1520
    # (a keyframe cut ends where check_clip expects it on 8440: with 4 B-frames the frame at 8440 needs the
    # P picture at 8600, so a stream copy to 8480 runs to (8,15), 4 frames past the end, cut._copy's rule)
    end = 8440 if output.startswith("keyframe") else 8480
    sel, files = selection_with(store, open_gop_hls, start, end, {seg.key: bad})
    info = export(output, sel, files, tmp_path)
    check_clip(info, sel, output, (3840, 6000), seg, 10, muxed=True)


@pytest.mark.parametrize("output", OUTPUTS)
def test_segment_after_a_damaged_one_without_a_keyframe(store, split_hls, tmp_path, output):
    """2 s GOPs in 1 s segments: the segment after the damaged [2 s, 3 s) starts inside a GOP whose
    keyframe was in the damaged segment; its video is dropped up to the next keyframe (4 s)."""
    src, seg = segment_path(store, split_hls, 2)
    bad = damage(src, "half", tmp_path)
    sel, files = selection_with(store, split_hls, 520, 5480, {seg.key: bad})
    info = export(output, sel, files, tmp_path)
    first = 0 if output.startswith("keyframe") else 520
    decoded = frames(info.path)
    stamps = [s for _, s in decoded]
    assert stamps == expected_stamps(first, 5480, (2000, 4000), 10)
    assert [s.key for s in info.skipped] == [seg.key] and info.skipped_ms == 1000
    t0 = decoded[0][0]
    for pts, stamp in decoded:
        assert pts - t0 == pytest.approx((stamp_ms(stamp) - first) / 1000, abs=0.002)


@pytest.mark.parametrize("how", ["half", "random", "other"])
@pytest.mark.parametrize("source", ["dash-h264", "hls-h264"])
def test_clip_of_a_damaged_segment_alone_fails(store, request, tmp_path, source, how):
    if (source, how) == ("hls-h264", "other"):
        pytest.skip("a lone MPEG-TS segment of another picture size has nothing to be compared with: it is "
                    "exported as it is")
    sel, files, seg = damaged_case(store, request, tmp_path, source, how)
    sel = select_segments(load_recording(store.fetch, request.getfixturevalue(SOURCES[source][0])),
                          seg.start_ms + 200, seg.end_ms - 200)
    assert [s.key for s in sel.tracks[0].segments] == [seg.key]
    for output in OUTPUTS:
        with pytest.raises(MediaError, match=seg.key):
            export(output, sel, files, tmp_path)
    assert [n for n in os.listdir(tmp_path) if not n.startswith("damaged-")] == []  # nothing left behind


# fMP4 recordings and, for each, a recording of the same codec at another picture size (another
# rendition, as a faulty packager may write into it): (recording fixture, index of its damaged segment,
# the donor's make_dash arguments, clip range, seconds of the recording)
OTHER_SIZE = {
    "h264": ("dash_timeline", 4, {"duration_s": 12}, (5520, 14480), 20),
    "hevc": ("hevc_dash", 1, {"duration_s": 6, "vcodec": "libx265"}, (520, 5480), 6),
    # the donor's keyframes carry their parameter sets in band (x264 repeat-headers), the recording's not
    "h264-in-band": ("dash_timeline", 4, {"duration_s": 12, "open_gop": False}, (5520, 14480), 20),
}


@pytest.fixture(scope="session")
def other_size_donor(store):
    """name of OTHER_SIZE -> directory of its donor recording (640x360; made once per session)."""
    made: dict[str, str] = {}

    def get(name: str) -> str:
        if name not in made:
            made[name] = os.path.join(store.root, "dmg-640-" + name)
            mediagen.make_dash(made[name], width=640, height=360, **OTHER_SIZE[name][2])
        return made[name]

    return get


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("name", sorted(OTHER_SIZE))
def test_same_codec_other_picture_size_in_fmp4(store, request, other_size_donor, tmp_path, name, output):
    """An fMP4 segment of another encoding of the same codec at another picture size: a stream copy
    would put it in a track whose sample description says the recording's size.  Relying on the
    initialization's parameter sets, its keyframe does not decode with them; bringing its own in
    band, it decodes to its own size.  Skipped either way, by the encode too, and the segments after
    it are not (a decoder that met the donor's parameter sets in band keeps them: the next keyframes
    are decoded with the initialization's)."""
    fixture, index, _, (start, end), total_s = OTHER_SIZE[name]
    manifest = request.getfixturevalue(fixture)
    src, seg = segment_path(store, manifest, index)
    bad = damage(src, "other", tmp_path, os.path.join(other_size_donor(name), os.path.basename(seg.key)))
    sel, files = selection_with(store, manifest, start, end, {seg.key: bad})
    info = export(output, sel, files, tmp_path)
    check_clip(info, sel, output, (int(seg.start_ms), int(seg.end_ms)), seg, total_s, muxed=False)


@pytest.mark.parametrize("output", OUTPUTS)
def test_ts_segment_of_another_profile(store, hls, tmp_path, output):
    """An MPEG-TS segment whose parameter sets (in band) say another profile and level than the
    recording's, at the same picture size: a stream copy leaves it out (it is of another encoding,
    and one track's parameters would not describe it); the encode decodes it, and takes it."""
    src, seg = segment_path(store, hls, 4)
    with open(src, "rb") as f:
        data = with_sps(f.read(), profile=77, level=30)  # Main 3.0 (the recording: Constrained Baseline 1.2)
    bad = tmp_path / "damaged-main.ts"
    bad.write_bytes(data)
    sel, files = selection_with(store, hls, 5520, 14480, {seg.key: str(bad)})
    info = export(output, sel, files, tmp_path)
    if output.startswith("encode"):
        assert info.skipped == () and info.skipped_ms == 0
        assert [s for _, s in frames(info.path)] == expected_stamps(5520, 14480, (0, 0), 20)
        return
    assert "profile" in info.skipped[0].reason
    check_clip(info, sel, output, (int(seg.start_ms), int(seg.end_ms)), seg, 20, muxed=True)


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("how", ["tail", "tail-aligned", "last-pes"])
def test_ts_segment_cut_short_by_a_tenth(store, hls, tmp_path, how, output):
    """An MPEG-TS segment that lost its end (a tenth of it, or from inside its last audio PES packet)
    is skipped: not on a packet boundary, its structure says so; on a packet boundary, the length
    its last PES packet declares, or the continuity counters from it to the next segment (the
    recording's muxer runs them on from segment to segment), though its time is almost all there."""
    src, seg = segment_path(store, hls, 4)
    bad = damage(src, how, tmp_path)
    sel, files = selection_with(store, hls, 5520, 14480, {seg.key: bad})
    info = export(output, sel, files, tmp_path)
    assert "cut short" in info.skipped[0].reason
    check_clip(info, sel, output, (int(seg.start_ms), int(seg.end_ms)), seg, 20, muxed=True)


@pytest.mark.parametrize("output", ["accurate-ts", "keyframe-mp4", "encode-ts"])
@pytest.mark.parametrize("fixture", ["hls", "hls_bframes", "split_hls", "open_gop_hls", "hevc_hls", "hls_mp2"])
def test_sound_ts_recording_skips_nothing(store, request, tmp_path, fixture, output):
    """No MPEG-TS segment of a sound recording is taken for one cut short (ts_edges)."""
    manifest = request.getfixturevalue(fixture)
    rec = load_recording(store.fetch, manifest)
    segs = rec.tracks[0].segments
    sel, files = selection_with(store, manifest, segs[0].start_ms + 520, segs[-1].end_ms - 520, {})
    info = export(output, sel, files, tmp_path)
    assert info.skipped == () and info.skipped_ms == 0


@pytest.mark.parametrize("fixture", ["dash_timeline", "hls"])
def test_segment_whose_reading_fails(store, request, tmp_path, monkeypatch, fixture):
    """A segment file that fails to be read part way (an I/O error): the demuxer, stopped by it, is
    opened again after it."""
    import io

    from exports.media import _source

    manifest = request.getfixturevalue(fixture)
    src, seg = segment_path(store, manifest, 7)  # [14 s, 16 s)

    class Failing(io.FileIO):
        def readinto(self, b):
            if self.tell() >= 2000:
                raise OSError("input/output error")
            return super().readinto(memoryview(b)[:2000 - self.tell()])

    real_open = _source._open
    monkeypatch.setattr(_source, "_open", lambda piece: Failing(piece, "rb") if piece == src else real_open(piece))
    sel, files = selection_with(store, manifest, 1000, 19000, {})
    for output in ("accurate-ts", "keyframe-mp4", "encode-ts"):
        info = export(output, sel, files, tmp_path)
        assert [(s.key, "input/output error" in s.reason) for s in info.skipped] == [(seg.key, True)]
        assert info.skipped_ms == 2000
        assert [s for _, s in frames(info.path)] == expected_stamps(1000, 19000, (14000, 16000), 20)


def test_thumbnail_skips_a_damaged_first_segment(store, hls, tmp_path):
    src, seg = segment_path(store, hls, 4)
    bad = damage(src, "random", tmp_path)
    sel, files = selection_with(store, hls, 8200, 12000, {seg.key: bad})
    out = str(tmp_path / "thumb.jpg")
    thumbnail_from_selection(selection=sel, files=files, out_path=out)
    from PIL import Image

    assert mediagen.read_stamp(Image.open(out)) == (10, 0)


@pytest.mark.parametrize("output", OUTPUTS)
def test_sound_recording_skips_nothing(store, dash_timeline, tmp_path, output):
    sel, files = selection_with(store, dash_timeline, 5520, 14480, {})
    info = export(output, sel, files, tmp_path)
    assert info.skipped == () and info.skipped_ms == 0
