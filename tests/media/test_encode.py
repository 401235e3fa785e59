import os
import time

import av
import pytest

from exports.media import (
    MediaError,
    available_hw_encoder,
    cut_clip,
    encode_clip,
    encode_selection,
    load_recording,
    probe,
    select_segments,
)
from exports.media import _common as media_common
from tests import mediagen


def first_pts(path):
    with av.open(path) as c:
        out = {}
        for pkt in c.demux():
            if pkt.pts is not None:
                t = float(pkt.pts * pkt.time_base)
                out[pkt.stream.type] = min(out.get(pkt.stream.type, t), t)
        return out


@pytest.mark.parametrize("codec,container,expected", [
    ("h264", "ts", "h264"), ("h264", "mp4", "h264"), ("h265", "ts", "hevc"), ("h265", "mp4", "hevc"),
])
def test_encode_is_frame_accurate(ts_file, tmp_path, codec, container, expected):
    out = str(tmp_path / f"out.{container}")
    # 3.48 s = frame 87 = second 3, frame 12: not a keyframe (GOP = 25 frames)
    info = encode_clip(src_path=ts_file, out_path=out, codec=codec, container=container,
                       trim_start_ms=3480, duration_ms=2000, preset="ultrafast")
    stamps = mediagen.stamps_in(out)
    assert stamps[0] == (3, 12)
    assert len(stamps) == 50
    assert stamps[-1] == (5, 11)
    assert info.video_codec == expected and info.audio_codec == "aac"
    assert info.duration_ms == pytest.approx(2000, abs=40)
    assert (info.width, info.height) == (320, 180)
    assert info.lead_ms == 0
    p = probe(out)
    assert (p.video_codec, p.audio_codec) == (expected, "aac")
    assert p.duration_ms == pytest.approx(2000, abs=40)
    starts = first_pts(out)
    assert starts["video"] < 0.1  # (B-frame delay of x265 in TS is ~2 frames)
    assert starts["audio"] == pytest.approx(starts["video"], abs=0.05)
    assert not os.path.exists(out + ".part")
    if container == "mp4" and codec == "h265":
        with av.open(out) as c:
            assert c.streams.video[0].codec_tag == "hvc1"


def test_trim_between_frames_takes_next_frame(ts_file, tmp_path):
    out = str(tmp_path / "o.ts")
    encode_clip(src_path=ts_file, out_path=out, codec="h264", trim_start_ms=3500, duration_ms=1000, preset="ultrafast")
    stamps = mediagen.stamps_in(out)
    assert stamps[0] == (3, 13)  # 3.52 s, first frame at or after 3.5 s
    assert len(stamps) == 25


def test_encode_to_the_end(ts_file, tmp_path):
    out = str(tmp_path / "o.mp4")
    info = encode_clip(src_path=ts_file, out_path=out, codec="h264", container="mp4", trim_start_ms=8000, preset="ultrafast")
    assert mediagen.seconds_in(out) == [8, 9]
    assert info.duration_ms == pytest.approx(2000, abs=40)


def test_encode_cut_output_using_lead(store, dash_timeline, tmp_path):
    """The export pipeline: stream-copy the segments, then trim the lead while encoding."""
    rec = load_recording(store.fetch, dash_timeline)
    sel = select_segments(rec, 4480, 7480)
    cut = cut_clip(selection=sel, files=store.files(sel.keys()), out_path=str(tmp_path / "cut.ts"), mode="keyframe")
    assert cut.lead_ms == pytest.approx(480, abs=1)
    out = str(tmp_path / "final.mp4")
    info = encode_clip(src_path=cut.path, out_path=out, codec="h264", container="mp4",
                       trim_start_ms=cut.lead_ms, duration_ms=3000, preset="ultrafast")
    stamps = mediagen.stamps_in(out)
    assert stamps[0] == (4, 12) and stamps[-1] == (7, 11) and len(stamps) == 75
    assert info.audio_codec == "aac" and mediagen.has_audio(out)


def test_non_aac_audio_is_reencoded(mp2_ts_file, tmp_path):
    out = str(tmp_path / "o.mp4")
    info = encode_clip(src_path=mp2_ts_file, out_path=out, codec="h264", container="mp4",
                       trim_start_ms=1000, duration_ms=2000, preset="ultrafast")
    assert info.audio_codec == "aac"
    p = probe(out)
    assert p.audio_codec == "aac"
    starts = first_pts(out)
    assert starts["audio"] == pytest.approx(starts["video"], abs=0.05)
    with av.open(out) as c:
        a = c.streams.audio[0]
        total = sum(f.samples for f in c.decode(a))
    assert total / a.rate == pytest.approx(2.0, abs=0.1)


def test_hwaccel_falls_back_to_software(ts_file, tmp_path):
    out = str(tmp_path / "o.ts")
    info = encode_clip(src_path=ts_file, out_path=out, codec="h265", trim_start_ms=0, duration_ms=1000,
                       preset="ultrafast", hwaccel=True)
    assert info.video_codec == "hevc"
    assert mediagen.first_stamp(out) == (0, 0)
    hw = available_hw_encoder("h265")
    assert hw in (None, "hevc_nvenc")
    assert available_hw_encoder("h265") == hw  # cached


def test_encode_errors_leave_nothing(ts_file, tmp_path):
    junk = tmp_path / "junk.ts"
    junk.write_bytes(b"\x47garbage" * 1000)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(MediaError):
        encode_clip(src_path=str(junk), out_path=str(out_dir / "o.ts"), codec="h264")
    with pytest.raises(MediaError):
        encode_clip(src_path=str(tmp_path / "missing.ts"), out_path=str(out_dir / "o.ts"), codec="h264")
    with pytest.raises(MediaError):  # nothing after 60 s in a 10 s file
        encode_clip(src_path=ts_file, out_path=str(out_dir / "o.ts"), codec="h264", trim_start_ms=60000, preset="ultrafast")
    with pytest.raises(MediaError):
        encode_clip(src_path=ts_file, out_path=str(out_dir / "o.ts"), codec="vp9")
    assert os.listdir(out_dir) == []


@pytest.mark.parametrize("ext", ["ts", "mp4"])
def test_long_trim_seeks_and_stays_accurate(tmp_path, ext):
    src = mediagen.make_file(str(tmp_path / f"long.{ext}"), duration_s=16, width=160, height=90)
    out = str(tmp_path / "o.ts")
    info = encode_clip(src_path=src, out_path=out, codec="h264", trim_start_ms=12480, duration_ms=1000, preset="ultrafast")
    stamps = mediagen.stamps_in(out)
    assert stamps[0] == (12, 12) and len(stamps) == 25
    assert info.audio_codec == "aac"


# --------------------------------------------------------------------------- encode_selection
def _selection(store, key, start, end, drop=()):
    rec = load_recording(store.fetch, key)
    sel = select_segments(rec, start, end)
    files = {k: v for k, v in store.files(sel.keys()).items() if k not in drop}
    return rec, sel, files


def two_pass(sel, files, out_dir, codec, container):
    """What the pipeline did before encode_selection: cut to an intermediate TS, then encode it."""
    out_dir.mkdir(exist_ok=True)
    cut = cut_clip(selection=sel, files=files, out_path=str(out_dir / "intermediate.ts"))
    return encode_clip(src_path=cut.path, out_path=str(out_dir / f"two.{container}"), codec=codec,
                       container=container, trim_start_ms=cut.lead_ms, duration_ms=sel.end_ms - sel.start_ms,
                       preset="ultrafast")


def one_pass(sel, files, out_dir, codec, container, **kw):
    out_dir.mkdir(exist_ok=True)
    info = encode_selection(selection=sel, files=files, out_path=str(out_dir / f"one.{container}"), codec=codec,
                            container=container, preset="ultrafast", **kw)
    # no intermediate file (nor a leftover .part) anywhere in the output directory
    assert os.listdir(out_dir) == [f"one.{container}"]
    return info


def assert_equivalent(one, two, *, container, codec):
    expected = "hevc" if codec == "h265" else "h264"
    s1, s2 = mediagen.stamps_in(one.path), mediagen.stamps_in(two.path)
    assert s1[0] == s2[0]
    assert abs(len(s1) - len(s2)) <= 1
    assert one.duration_ms == pytest.approx(two.duration_ms, abs=40)  # within one frame (25 fps)
    assert one.lead_ms == 0
    assert (one.video_codec, one.audio_codec) == (expected, two.audio_codec)
    assert (one.width, one.height) == (two.width, two.height)
    assert one.size_bytes == os.path.getsize(one.path)
    p = probe(one.path)
    assert p.video_codec == expected
    assert p.duration_ms == pytest.approx(probe(two.path).duration_ms, abs=40)
    starts = first_pts(one.path)
    assert starts["video"] < 0.1
    if two.audio_codec:
        assert mediagen.has_audio(one.path)
        assert starts["audio"] == pytest.approx(starts["video"], abs=0.05)  # in sync
        assert starts["audio"] == pytest.approx(first_pts(two.path)["audio"], abs=0.025)
    if container == "mp4" and codec == "h265":
        with av.open(one.path) as c:
            assert c.streams.video[0].codec_tag == "hvc1"
    return s1, s2


@pytest.mark.parametrize("container", ["ts", "mp4"])
@pytest.mark.parametrize("fixture,start,end,codec,first", [
    ("dash_timeline", 4480, 7480, "h264", (4, 12)),
    ("dash_number", 6520, 9000, "h264", (6, 13)),
    ("hls", 12300, 15000, "h264", (12, 8)),  # 12.3 s is between frames: the next one (12.32 s)
    ("hls_bframes", 3280, 6280, "h264", (3, 7)),
    ("dash_timeline", 4480, 5480, "h265", (4, 12)),
    ("hls", 12300, 13300, "h265", (12, 8)),
])
def test_encode_selection_matches_cut_then_encode(store, tmp_path, request, fixture, start, end, codec, first,
                                                  container):
    _, sel, files = _selection(store, request.getfixturevalue(fixture), start, end)
    two = two_pass(sel, files, tmp_path / "two", codec, container)
    one = one_pass(sel, files, tmp_path / "one", codec, container)
    s1, _ = assert_equivalent(one, two, container=container, codec=codec)
    assert s1[0] == first
    assert one.duration_ms == pytest.approx(end - start, abs=40)
    assert one.audio_codec == "aac"


@pytest.mark.parametrize("fixture", ["hevc_hls", "hevc_dash"])
def test_encode_selection_from_hevc_recording(store, tmp_path, request, fixture):
    _, sel, files = _selection(store, request.getfixturevalue(fixture), 2520, 3520)
    two = two_pass(sel, files, tmp_path / "two", "h264", "mp4")
    one = one_pass(sel, files, tmp_path / "one", "h264", "mp4")
    s1, _ = assert_equivalent(one, two, container="mp4", codec="h264")
    assert s1[0] == (2, 13) and len(s1) == 25


@pytest.mark.parametrize("start,end,drop_first,seconds,first", [
    (4000, 12000, False, [4, 5, 10, 11], (4, 0)),  # [6 s, 10 s) is absent from the timeline
    (7000, 12000, False, [10, 11], (10, 0)),  # the start lies in the hole: begins after it
    (13000, 17500, False, [13, 16, 17], (13, 0)),  # 14-16 s segment files deleted from storage
    (1000, 3500, True, [2, 3], (2, 0)),  # the head's key dropped from files
])
def test_encode_selection_gaps_and_missing_files(store, dash_gaps, tmp_path, start, end, drop_first, seconds, first):
    rec = load_recording(store.fetch, dash_gaps)
    drop = {rec.tracks[0].segments[0].key} if drop_first else set()
    _, sel, files = _selection(store, dash_gaps, start, end, drop=drop)
    two = two_pass(sel, files, tmp_path / "two", "h264", "ts")
    one = one_pass(sel, files, tmp_path / "one", "h264", "ts")
    s1, s2 = assert_equivalent(one, two, container="ts", codec="h264")
    assert s1 == s2
    assert s1[0] == first
    assert mediagen.seconds_in(one.path) == seconds


def test_encode_selection_from_a_keyframe(store, dash_number, tmp_path):
    _, sel, files = _selection(store, dash_number, 7000, 9000)
    two = two_pass(sel, files, tmp_path / "two", "h264", "mp4")
    one = one_pass(sel, files, tmp_path / "one", "h264", "mp4")
    s1, _ = assert_equivalent(one, two, container="mp4", codec="h264")
    assert s1[0] == (7, 0) and len(s1) == 50


@pytest.mark.parametrize("container", ["ts", "mp4"])
def test_encode_selection_of_one_keyframe(store, dash_number, tmp_path, container):
    # (cut -> encode cannot do this one: FFmpeg does not find the video stream of a TS with one frame)
    _, sel, files = _selection(store, dash_number, 7000, 7040)
    one = one_pass(sel, files, tmp_path, "h264", container)
    assert mediagen.stamps_in(one.path) == [(7, 0)]
    assert one.duration_ms == pytest.approx(40, abs=1) and one.lead_ms == 0


def test_encode_selection_without_audio(store, dash_number, tmp_path):
    rec = load_recording(store.fetch, dash_number)
    _, sel, files = _selection(store, dash_number, 2500, 4000, drop={rec.tracks[1].init_key})
    two = two_pass(sel, files, tmp_path / "two", "h264", "ts")
    one = one_pass(sel, files, tmp_path / "one", "h264", "ts")
    assert_equivalent(one, two, container="ts", codec="h264")
    assert one.audio_codec is None and not mediagen.has_audio(one.path)
    assert mediagen.first_stamp(one.path) == (2, 13)


def test_encode_selection_across_a_discontinuity(store, tmp_path):
    key = os.path.relpath(mediagen.make_hls_discontinuity(os.path.join(store.root, "hls-disc-enc"), parts=(4, 4)),
                          store.root)
    _, sel, files = _selection(store, key, 2480, 6000)
    two = two_pass(sel, files, tmp_path / "two", "h264", "ts")
    one = one_pass(sel, files, tmp_path / "one", "h264", "ts")
    s1, s2 = assert_equivalent(one, two, container="ts", codec="h264")
    assert s1 == s2 and s1[0] == (2, 12) and mediagen.seconds_in(one.path) == [2, 3, 4, 5]


def test_encode_selection_reencodes_non_aac_audio(store, hls_mp2, tmp_path):
    _, sel, files = _selection(store, hls_mp2, 1480, 3480)
    two = two_pass(sel, files, tmp_path / "two", "h264", "mp4")
    one = one_pass(sel, files, tmp_path / "one", "h264", "mp4")
    assert_equivalent(one, two, container="mp4", codec="h264")
    assert one.audio_codec == "aac" and probe(one.path).audio_codec == "aac"
    with av.open(one.path) as c:
        a = c.streams.audio[0]
        total = sum(f.samples for f in c.decode(a))
    assert total / a.rate == pytest.approx(2.0, abs=0.1)


def test_encode_selection_progress(store, dash_timeline, tmp_path, monkeypatch):

    _, sel, files = _selection(store, dash_timeline, 4480, 7480)
    calls = []
    monkeypatch.setattr(media_common, "PROGRESS_INTERVAL_S", 0.0)  # every frame
    one_pass(sel, files, tmp_path / "every", "h264", "ts", on_progress=calls.append)
    assert len(calls) > 10
    assert calls == sorted(calls) and all(0 < f <= 1.0 for f in calls)
    assert calls[-1] == 1.0 and calls[-2] >= 0.95  # frames done / frames expected reached ~1 before the end
    # throttled (the default): a few calls a second at most
    monkeypatch.undo()
    calls.clear()
    started = time.monotonic()
    one_pass(sel, files, tmp_path / "throttled", "h264", "ts", on_progress=calls.append)
    elapsed = time.monotonic() - started
    assert 1 <= len(calls) <= elapsed / media_common.PROGRESS_INTERVAL_S + 2
    assert calls == sorted(calls) and calls[-1] == 1.0


def test_encode_selection_progress_error_aborts(store, dash_timeline, tmp_path):
    _, sel, files = _selection(store, dash_timeline, 4480, 7480)

    def cancel(fraction):
        raise RuntimeError("cancelled")

    with pytest.raises(MediaError, match="cancelled"):
        encode_selection(selection=sel, files=files, out_path=str(tmp_path / "o.ts"), codec="h264",
                         preset="ultrafast", on_progress=cancel)
    assert os.listdir(tmp_path) == []


def test_encode_selection_hwaccel_falls_back_to_software(store, hls, tmp_path):
    _, sel, files = _selection(store, hls, 2000, 3000)
    info = one_pass(sel, files, tmp_path, "h264", "ts", hwaccel=True)
    assert info.video_codec == "h264" and mediagen.first_stamp(info.path) == (2, 0)


def test_encode_selection_errors_leave_nothing(store, dash_timeline, hls, tmp_path):
    import dataclasses

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = str(out_dir / "o.ts")
    _, sel, files = _selection(store, dash_timeline, 2000, 4000)
    with pytest.raises(MediaError):  # nothing downloaded
        encode_selection(selection=sel, files={}, out_path=out, codec="h264")
    audio_only = dataclasses.replace(sel, tracks=sel.tracks[1:])
    with pytest.raises(MediaError, match="no video"):
        encode_selection(selection=audio_only, files=files, out_path=out, codec="h264")
    junk = tmp_path / "junk.ts"
    junk.write_bytes(b"this is not an mpeg-ts segment" * 100)
    _, hsel, hfiles = _selection(store, hls, 0, 4000)
    with pytest.raises(MediaError):
        encode_selection(selection=hsel, files={k: str(junk) for k in hsel.keys()}, out_path=out, codec="h264")
    _, late, late_files = _selection(store, hls, 30000, 35000)
    with pytest.raises(MediaError):  # nothing in range
        encode_selection(selection=late, files=late_files, out_path=out, codec="h264")
    with pytest.raises(MediaError):
        encode_selection(selection=sel, files=files, out_path=out, codec="vp9")
    with pytest.raises(MediaError):
        encode_selection(selection=sel, files=files, out_path=str(out_dir / "o.avi"), codec="h264", container="avi")
    assert os.listdir(out_dir) == []
