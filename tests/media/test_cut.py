import os

import av
import pytest

from exports.media import MediaError, cut_clip, load_recording, probe, select_segments
from tests import mediagen


def streams_start(path):
    """{kind: (first pts in s, codec name)} and the list of video pts (s) in decode order."""
    out = {}
    with av.open(path) as c:
        for s in c.streams:
            out[s.type] = None
        for pkt in c.demux():
            if pkt.pts is None:
                continue
            kind = pkt.stream.type
            t = float(pkt.pts * pkt.time_base)
            if out.get(kind) is None or t < out[kind]:
                out[kind] = t
    return out


def cut(store, key, start, end, tmp_path, container="ts", drop=(), name=None, mode="keyframe"):
    """cut_clip in keyframe mode (the stream copy from the keyframe at or before the start) unless
    told otherwise: frame-accurate cuts (the default mode) are tested in test_accurate.py."""
    rec = load_recording(store.fetch, key)
    sel = select_segments(rec, start, end)
    files = {k: v for k, v in store.files(sel.keys()).items() if k not in drop}
    out = str(tmp_path / (name or f"clip.{container}"))
    return cut_clip(selection=sel, files=files, out_path=out, container=container, mode=mode)


@pytest.mark.parametrize("container", ["ts", "mp4"])
def test_dash_timeline_cut(store, dash_timeline, tmp_path, container):
    info = cut(store, dash_timeline, 4500, 9200, tmp_path, container)
    assert os.path.isfile(info.path) and not os.path.exists(info.path + ".part")
    # starts at the keyframe at or before 4.5 s (GOP = 1 s)
    assert mediagen.first_stamp(info.path) == (4, 0)
    assert info.lead_ms == pytest.approx(500, abs=1)
    assert info.start_ms == pytest.approx(4000, abs=1)  # the keyframe's recording time
    assert mediagen.seconds_in(info.path) == [4, 5, 6, 7, 8, 9]
    assert info.duration_ms == pytest.approx(9200 - 4000, abs=45)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert (info.width, info.height) == (320, 180)
    assert info.size_bytes == os.path.getsize(info.path)
    starts = streams_start(info.path)
    assert starts["video"] == pytest.approx(0, abs=0.05)
    assert starts["audio"] == pytest.approx(starts["video"], abs=0.05)  # in sync
    assert mediagen.has_audio(info.path)
    p = probe(info.path)
    assert (p.video_codec, p.audio_codec) == ("h264", "aac")
    assert p.duration_ms == pytest.approx(info.duration_ms, abs=45)


def test_mp4_output_is_faststart(store, dash_timeline, tmp_path):
    info = cut(store, dash_timeline, 0, 3000, tmp_path, "mp4")
    with open(info.path, "rb") as f:
        data = f.read()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")


def test_dash_number_cut_on_keyframe(store, dash_number, tmp_path):
    info = cut(store, dash_number, 7000, 11000, tmp_path)
    assert mediagen.first_stamp(info.path) == (7, 0)
    assert info.lead_ms == 0 and info.start_ms == 7000
    assert mediagen.seconds_in(info.path) == [7, 8, 9, 10]
    assert info.duration_ms == pytest.approx(4000, abs=45)
    assert mediagen.has_audio(info.path)


@pytest.mark.parametrize("container", ["ts", "mp4"])
def test_hls_cut(store, hls, tmp_path, container):
    info = cut(store, hls, 12300, 15000, tmp_path, container)
    assert mediagen.first_stamp(info.path) == (12, 0)
    assert info.lead_ms == pytest.approx(300, abs=1)
    assert mediagen.seconds_in(info.path) == [12, 13, 14]
    assert info.duration_ms == pytest.approx(3000, abs=45)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    starts = streams_start(info.path)
    assert starts["video"] == pytest.approx(0, abs=0.05)
    assert starts["audio"] == pytest.approx(starts["video"], abs=0.05)


def test_hls_master_cut_uses_best_variant(store, hls_master, tmp_path):
    info = cut(store, hls_master, 1000, 3000, tmp_path)
    assert (info.width, info.height) == (640, 360)
    assert mediagen.seconds_in(info.path) == [1, 2]


def test_timeline_gap_is_left_as_a_jump(store, dash_gaps, tmp_path):
    info = cut(store, dash_gaps, 4000, 12000, tmp_path)
    assert mediagen.seconds_in(info.path) == [4, 5, 10, 11]
    # [6 s, 10 s) is absent: the output keeps the hole in its timeline
    assert info.duration_ms == pytest.approx(8000, abs=45)


def test_start_inside_a_gap_begins_after_it(store, dash_gaps, tmp_path):
    info = cut(store, dash_gaps, 7000, 12000, tmp_path)
    assert mediagen.seconds_in(info.path) == [10, 11]
    assert info.lead_ms == 0 and info.start_ms == 10000
    assert info.duration_ms == pytest.approx(2000, abs=45)


def test_keys_missing_from_files_are_skipped(store, dash_gaps, tmp_path):
    # 14-16 s segment files were deleted from storage: store.files() leaves them out
    info = cut(store, dash_gaps, 13000, 17500, tmp_path)
    assert mediagen.seconds_in(info.path) == [13, 16, 17]
    # and explicitly dropped keys too (head missing: output starts at the first available keyframe)
    rec = load_recording(store.fetch, dash_gaps)
    first_video = rec.tracks[0].segments[0].key
    info = cut(store, dash_gaps, 1000, 3500, tmp_path, drop={first_video}, name="head.ts")
    assert mediagen.first_stamp(info.path) == (2, 0)
    assert info.lead_ms == 0


def test_audio_track_missing_gives_video_only(store, dash_number, tmp_path):
    rec = load_recording(store.fetch, dash_number)
    audio_init = rec.tracks[1].init_key
    info = cut(store, dash_number, 2000, 4000, tmp_path, drop={audio_init})
    assert info.audio_codec is None and info.video_codec == "h264"
    assert mediagen.seconds_in(info.path) == [2, 3]


def test_hls_discontinuity(store, tmp_path):
    key = os.path.relpath(mediagen.make_hls_discontinuity(os.path.join(store.root, "hls-disc"), parts=(6, 6)), store.root)
    info = cut(store, key, 3000, 9000, tmp_path)
    stamps = mediagen.stamps_in(info.path)
    assert stamps[0] == (3, 0)
    assert mediagen.seconds_in(info.path) == [3, 4, 5, 6, 7, 8]
    assert len(stamps) == 6 * 25
    assert info.duration_ms == pytest.approx(6000, abs=45)
    with av.open(info.path) as c:
        dts = [p.dts for p in c.demux(c.streams.video[0]) if p.dts is not None]
    assert dts == sorted(dts)


def test_bframes_recording(store, hls_bframes, tmp_path):
    info = cut(store, hls_bframes, 3000, 6000, tmp_path)
    stamps = mediagen.stamps_in(info.path)
    assert stamps[0] == (3, 0)
    assert mediagen.seconds_in(info.path) == [3, 4, 5]
    assert len(stamps) == 75


def test_nothing_available_raises(store, dash_timeline, tmp_path):
    rec = load_recording(store.fetch, dash_timeline)
    sel = select_segments(rec, 2000, 4000)
    out = tmp_path / "none.ts"
    with pytest.raises(MediaError):
        cut_clip(selection=sel, files={}, out_path=str(out))
    assert os.listdir(tmp_path) == []


def test_range_after_the_end_raises(store, hls, tmp_path):
    rec = load_recording(store.fetch, hls)
    # the tail is lacking: what exists is copied (from the keyframe before the start)
    sel = select_segments(rec, 19500, 25000)
    assert sel.lack_ms == 5000
    info = cut_clip(selection=sel, files=store.files(sel.keys()), out_path=str(tmp_path / "tail.ts"), mode="keyframe")
    assert mediagen.seconds_in(info.path) == [19] and info.lead_ms == pytest.approx(500, abs=1)
    os.remove(info.path)
    # accurate (the default): from the frame at 19.5 s to the end of what exists
    info = cut_clip(selection=sel, files=store.files(sel.keys()), out_path=str(tmp_path / "tail.ts"))
    assert mediagen.first_stamp(info.path) == (19, 13) and info.lead_ms == 0 and info.start_ms == 19520
    assert len(mediagen.stamps_in(info.path)) == 12
    os.remove(info.path)
    # nothing at all in range
    sel = select_segments(rec, 30000, 35000)
    with pytest.raises(MediaError):
        cut_clip(selection=sel, files=store.files(sel.keys()), out_path=str(tmp_path / "x.ts"))
    assert os.listdir(tmp_path) == []


def test_garbage_segment_raises_and_leaves_nothing(store, hls, tmp_path):
    rec = load_recording(store.fetch, hls)
    sel = select_segments(rec, 0, 4000)
    junk = tmp_path / "junk.ts"
    junk.write_bytes(b"this is not an mpeg-ts segment" * 100)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(MediaError):
        cut_clip(selection=sel, files={k: str(junk) for k in sel.keys()}, out_path=str(out_dir / "c.ts"))
    assert os.listdir(out_dir) == []


def test_unknown_container(store, hls, tmp_path):
    rec = load_recording(store.fetch, hls)
    sel = select_segments(rec, 0, 4000)
    with pytest.raises(MediaError):
        cut_clip(selection=sel, files=store.files(sel.keys()), out_path=str(tmp_path / "c.avi"), container="avi")


@pytest.mark.parametrize("fixture", ["hevc_hls", "hevc_dash"])
def test_hevc_recording_copy_to_mp4(store, tmp_path, fixture, request):
    info = cut(store, request.getfixturevalue(fixture), 2500, 5000, tmp_path, "mp4")
    assert info.video_codec == "hevc" and info.audio_codec == "aac"
    assert mediagen.first_stamp(info.path) == (2, 0) and len(mediagen.stamps_in(info.path)) == 75
    with av.open(info.path) as c:
        assert c.streams.video[0].codec_tag == "hvc1"


def frame_index(stamp, fps=25):
    return stamp[0] * fps + stamp[1]


@pytest.mark.parametrize("fixture,start,first,frames", [
    ("dash_timeline", 4480, (4, 12), 75),
    ("dash_number", 6520, (6, 13), 75),
    ("hls", 12300, (12, 8), 75),  # 12.3 s is between frames: the next one (12.32 s)
    ("hevc_hls", 2520, (2, 13), 75),
    ("hevc_dash", 2520, (2, 13), 75),
    ("hls_bframes", 3280, (3, 7), 75),
])
@pytest.mark.parametrize("container", ["ts", "mp4"])
def test_accurate_cut_is_the_default(store, tmp_path, request, fixture, start, first, frames, container):
    info = cut_clip_accurate(store, request.getfixturevalue(fixture), start, start + 3000, tmp_path, container)
    stamps = mediagen.stamps_in(info.path)
    assert stamps[0] == first
    assert len(stamps) == frames
    # every frame decodes, in order, across the re-encoded head and the copied rest
    assert [frame_index(s) for s in stamps] == list(range(frame_index(first), frame_index(first) + frames))
    assert info.lead_ms == 0 and info.start_ms == pytest.approx(frame_index(first) * 40, abs=1)
    assert info.duration_ms == pytest.approx(frames * 40, abs=1)
    assert decoded_start(info.path, "audio") == pytest.approx(decoded_start(info.path, "video"), abs=1024 / 48000)
    with av.open(info.path) as c:
        dts = [p.dts for p in c.demux(c.streams.video[0]) if p.dts is not None]
    assert all(b > a for a, b in zip(dts, dts[1:]))


def decoded_start(path, kind):
    """Time of the first decoded frame of a kind (an MP4's AAC pre-roll is skipped by its edit list)."""
    with av.open(path) as c:
        frame = next(iter(c.decode(**{kind: 0})))
        return float(frame.pts * frame.time_base)


def cut_clip_accurate(store, key, start, end, tmp_path, container="ts"):
    rec = load_recording(store.fetch, key)
    sel = select_segments(rec, start, end)
    return cut_clip(selection=sel, files=store.files(sel.keys()), out_path=str(tmp_path / f"smart.{container}"),
                    container=container)


def test_accurate_cut_on_a_keyframe_is_a_plain_copy(store, dash_number, tmp_path):
    info = cut_clip_accurate(store, dash_number, 7000, 8000, tmp_path)
    assert mediagen.stamps_in(info.path)[0] == (7, 0) and len(mediagen.stamps_in(info.path)) == 25


def test_accurate_cut_to_mp4(store, hls, tmp_path):
    info = cut_clip_accurate(store, hls, 12300, 13000, tmp_path, container="mp4")
    assert mediagen.first_stamp(info.path) == (12, 8) and info.lead_ms == 0
    assert len(mediagen.stamps_in(info.path)) == 17
