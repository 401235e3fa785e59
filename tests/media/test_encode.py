import os

import av
import pytest

from exports.media import MediaError, available_hw_encoder, cut_clip, encode_clip, load_recording, probe, select_segments
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
    cut = cut_clip(selection=sel, files=store.files(sel.keys()), out_path=str(tmp_path / "cut.ts"))
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
