"""Frame-accurate cuts: cut_clip(mode="accurate"), the default.

The sources (conftest.ACCURATE_SOURCES) are 8 s recordings with 1 s GOPs (keyframes at whole
seconds) and a hole in [4 s, 6 s); every frame carries its (second, frame) stamp.  Each cut is
checked frame by frame: the first frame is the one at the start, the last the last before the
end, every frame in between once and in order, timestamps increasing, the file decodable by
PyAV and by the ffmpeg command line without a message, audio aligned at both ends.
"""
import dataclasses
import itertools
import os
import struct
import subprocess
from fractions import Fraction

import av
import pytest

from exports.media import (
    MediaError,
    cut_clip,
    encode_selection,
    load_recording,
    select_segments,
)
from exports.media import _common as media_common
from tests import mediagen

FRAME_MS = 40
AAC_FRAME_S = 1024 / 48000
STARTS = {"key": 1000, "key+1": 1040, "key-1": 1960, "gap": 4500}  # key-1: the frame before the next keyframe
ENDS = {"key": 7000, "key+1": 7040, "key-1": 6960, "gap": 5000}
RECODE_MARK = {"h264": b"crf=18.0", "hevc": b"crf=20.0"}  # options string of the head / tail encoder


def hole_of(source: str) -> tuple[int, int]:
    # open GOP: the leading pictures of the 4 s keyframe (3.84-3.96 s) are in the missing segment too
    return (3840, 6000) if source.endswith("open") else (4000, 6000)


def expected_stamps(start, end, hole):
    return [(t // 1000, t % 1000 // FRAME_MS) for t in range(0, 8000, FRAME_MS)
            if start <= t < end and not hole[0] <= t < hole[1]]


def stamp_ms(stamp):
    return stamp[0] * 1000 + stamp[1] * FRAME_MS


def cut(store, key, start, end, tmp_path, container, name=None, **kw):
    rec = load_recording(store.fetch, key)
    sel = select_segments(rec, start, end)
    out = str(tmp_path / (name or f"clip.{container}"))
    return cut_clip(selection=sel, files=store.files(sel.keys()), out_path=out, container=container, **kw)


# --------------------------------------------------------------------------- file inspection
def nal_types(data: bytes, hevc: bool) -> list[int]:
    """NAL unit types of an access unit, Annex B or 4-byte length-prefixed."""
    kind = (lambda b: (b >> 1) & 0x3F) if hevc else (lambda b: b & 0x1F)
    out = []
    if data[:4] == b"\0\0\0\1" or data[:3] == b"\0\0\1":
        i = data.find(b"\0\0\1")
        while 0 <= i < len(data) - 3:
            out.append(kind(data[i + 3]))
            i = data.find(b"\0\0\1", i + 3)
    else:
        i = 0
        while i + 4 < len(data):
            size = int.from_bytes(data[i:i + 4], "big")
            out.append(kind(data[i + 4]))
            i += 4 + size
    return out


def inspect(path, codec):
    """What the checks need, read with PyAV (and the ffmpeg command line)."""
    hevc = codec == "hevc"
    r = {}
    with av.open(path) as c:
        vs = c.streams.video[0]
        r["tag"] = vs.codec_tag
        dts, pts_lt_dts, recoded, keys_without_ps = [], 0, [], 0
        for p in c.demux(vs):
            if p.dts is None:
                continue
            dts.append(p.dts)
            pts_lt_dts += p.pts is not None and p.pts < p.dts
            data = bytes(p)
            recoded.append(RECODE_MARK[codec] in data)
            if p.is_keyframe and (33 if hevc else 7) not in nal_types(data, hevc):
                keys_without_ps += 1
        r["dts_increasing"] = all(b > a for a, b in itertools.pairwise(dts))
        r["pts_lt_dts"] = pts_lt_dts
        r["recoded_parts"] = sum(recoded)  # each re-encoded part starts with the encoder's SEI
        r["head_recoded"] = bool(recoded) and recoded[0]
        r["keys_without_ps"] = keys_without_ps
    with av.open(path) as c:
        frames = [(float(f.pts * f.time_base), mediagen.read_stamp(f)) for f in c.decode(video=0)]
    r["stamps"] = [s for _, s in frames]
    r["video"] = (frames[0][0], frames[-1][0] + FRAME_MS / 1000) if frames else None
    with av.open(path) as c:
        audio = [(float(f.pts * f.time_base), f.samples / f.sample_rate) for f in c.decode(audio=0)]
    r["audio"] = (audio[0][0], audio[-1][0] + audio[-1][1]) if audio else None
    r["ffmpeg"] = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-f", "null", "-"],
                                 capture_output=True, text=True, check=False).stderr
    return r


def check_accurate(info, source, start, end, container):
    codec = "hevc" if source.startswith("hevc") else "h264"
    hole = hole_of(source)
    expected = expected_stamps(start, end, hole)
    r = inspect(info.path, codec)
    # first frame: the one at the start (or the first after it); last: the last before the end;
    # each one in between once, in order, across the re-encoded head / tail and the copied middle
    assert r["stamps"] == expected
    assert info.start_ms == pytest.approx(stamp_ms(expected[0]), abs=0.5)
    assert info.lead_ms == 0
    assert info.duration_ms == pytest.approx(stamp_ms(expected[-1]) + FRAME_MS - stamp_ms(expected[0]), abs=1)
    if not (hole[0] <= start < hole[1] or hole[0] < end <= hole[1]):  # no media missing at the ends
        assert abs(info.duration_ms - (end - start)) <= FRAME_MS
    assert (info.video_codec, info.audio_codec) == (codec, "aac")
    assert info.size_bytes == os.path.getsize(info.path)
    assert r["dts_increasing"] and r["pts_lt_dts"] == 0
    assert r["ffmpeg"] == ""
    # audio and video start (and end, when audio exists there in the source) within one AAC frame
    (v0, v1), (a0, a1) = r["video"], r["audio"]
    assert abs(a0 - v0) <= AAC_FRAME_S + 0.001
    if not hole[0] < end <= hole[1]:
        assert abs(a1 - v1) <= AAC_FRAME_S + 0.001
    head = start not in (1000, 4500)  # not on a keyframe (after the hole: its first keyframe)
    assert r["head_recoded"] == head
    if source.endswith("closed"):  # no reordering: nothing to re-encode at the end
        assert r["recoded_parts"] == head
    plain = container == "mp4" and not head and source.endswith("closed")
    if container == "mp4":  # parameter sets in band (avc3 / hev1) unless nothing can be re-encoded
        assert r["tag"] == {("h264", True): "avc1", ("hevc", True): "hvc1",
                            ("h264", False): "avc3", ("hevc", False): "hev1"}[codec, plain]
    if not plain:  # parameter sets before every keyframe, re-encoded or copied
        assert r["keys_without_ps"] == 0
    return r


# --------------------------------------------------------------------------- the matrix
@pytest.mark.parametrize("container", ["ts", "mp4"])
@pytest.mark.parametrize("gop", ["closed", "bframes", "open"])
@pytest.mark.parametrize("start", list(STARTS))
@pytest.mark.parametrize("end", list(ENDS))
def test_h264(store, accurate_source, tmp_path, container, gop, start, end):
    source = f"h264-{gop}"
    s, e = STARTS[start], ENDS[end]
    if start == end == "gap":
        with pytest.raises(MediaError):  # nothing there
            cut(store, accurate_source(source), s, e, tmp_path, container)
        assert os.listdir(tmp_path) == []
        return
    info = cut(store, accurate_source(source), s, e, tmp_path, container)
    check_accurate(info, source, s, e, container)


# every start and every end once per GOP structure and container
PAIRS = [("key", "key+1"), ("key+1", "key-1"), ("key-1", "gap"), ("gap", "key")]


@pytest.mark.parametrize("container", ["ts", "mp4"])
@pytest.mark.parametrize("gop", ["closed", "bframes", "open"])
@pytest.mark.parametrize("start,end", PAIRS)
def test_hevc(store, accurate_source, tmp_path, container, gop, start, end):
    source = f"hevc-{gop}"
    s, e = STARTS[start], ENDS[end]
    info = cut(store, accurate_source(source), s, e, tmp_path, container)
    check_accurate(info, source, s, e, container)


# --------------------------------------------------------------------------- what is re-encoded
def video_payloads(path):
    with av.open(path) as c:
        return [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]


def test_clip_on_keyframes_is_a_plain_copy(store, accurate_source, tmp_path):
    key = accurate_source("h264-closed")
    info = cut(store, key, 1000, 3000, tmp_path, "mp4")
    copy = cut(store, key, 1000, 3000, tmp_path, "mp4", name="keyframe.mp4", mode="keyframe")
    # nothing re-encoded: the same packets as the keyframe-mode copy, the same sample entry
    assert video_payloads(info.path) == video_payloads(copy.path)
    with av.open(info.path) as c:
        assert c.streams.video[0].codec_tag == "avc1"
    assert (info.start_ms, info.lead_ms, info.duration_ms) == (1000, 0, 2000)


@pytest.mark.parametrize("end,tail", [(6960, 1), (7000, 0), (7040, 0)])
def test_tail_is_reencoded_only_when_needed(store, accurate_source, tmp_path, end, tail):
    """With B-frames, the frames presented before the end but decoded after a frame past it are
    re-encoded; a clip ending on a keyframe or right after it re-encodes nothing."""
    info = cut(store, accurate_source("h264-bframes"), 6000, end, tmp_path, "ts")
    r = inspect(info.path, "h264")
    assert r["stamps"] == expected_stamps(6000, end, (0, 0))
    assert r["recoded_parts"] == tail and not r["head_recoded"]


def test_head_copies_from_the_next_keyframe(store, accurate_source, tmp_path):
    """Only [start, next keyframe) is re-encoded: the copied part is packet for packet the source's."""
    key = accurate_source("h264-bframes")
    info = cut(store, key, 1480, 3000, tmp_path, "mp4")
    copy = cut(store, key, 2000, 3000, tmp_path, "mp4", name="keyframe.mp4", mode="keyframe")
    got, body = video_payloads(info.path), video_payloads(copy.path)
    head = len(expected_stamps(1480, 2000, (0, 0)))
    assert len(got) == head + 25  # (the keyframe copy ends on decode order: 2 B-frames more)
    assert got[head + 1:] == body[1:25]  # (the copied keyframe gains in-band parameter sets)


# --------------------------------------------------------------------------- format of the re-encoded parts
def sps_profile_level(data: bytes, hevc: bool) -> set[tuple[int, int]]:
    out = set()
    i = data.find(b"\0\0\1")
    while 0 <= i < len(data) - 3:
        s = i + 3
        if hevc and (data[s] >> 1) & 0x3F == 33:
            out.add((data[s + 3] & 0x1F, data[s + 14]))  # general_profile_idc, general_level_idc
        elif not hevc and data[s] & 0x1F == 7:
            out.add((data[s + 1], data[s + 3]))  # profile_idc, level_idc
        i = data.find(b"\0\0\1", s)
    return out


@pytest.mark.parametrize("vcodec,codec", [("libx264", "h264"), ("libx265", "hevc")])
def test_reencoded_parts_keep_the_source_format(store, tmp_path, vcodec, codec):
    colors = {"color_primaries": 1, "color_trc": 1, "colorspace": 1, "color_range": 1}  # BT.709, limited
    key = os.path.relpath(mediagen.make_hls(
        os.path.join(store.root, f"acc-format-{codec}"), duration_s=3, vcodec=vcodec, bframes=3, b_adapt=0,
        pix_fmt="yuv420p10le", sar=Fraction(4, 3), colors=colors), store.root)
    info = cut(store, key, 1040, 2960, tmp_path, "ts")  # head and tail re-encoded
    r = inspect(info.path, codec)
    assert r["stamps"] == expected_stamps(1040, 2960, (0, 0)) and r["ffmpeg"] == ""
    assert r["recoded_parts"] == 2
    frames = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries",
         "frame=pix_fmt,sample_aspect_ratio,color_range,color_space,color_primaries,color_transfer",
         "-of", "csv=p=0", info.path], capture_output=True, text=True, check=True).stdout.split()
    frames = [f.rstrip(",") for f in frames]
    assert len(frames) == len(r["stamps"])
    assert set(frames) == {"yuv420p10le,4:3,tv,bt709,bt709,bt709"}
    # profile / level of every SPS: the source's (High 10 / Main 10), level not above the source's
    with av.open(info.path) as c:
        sets = set().union(*(sps_profile_level(bytes(p), codec == "hevc") for p in c.demux(c.streams.video[0])))
    with av.open(os.path.join(store.root, os.path.dirname(key), "seg00000.ts")) as c:
        source_sets = set().union(*(sps_profile_level(bytes(p), codec == "hevc") for p in c.demux(c.streams.video[0])))
    (profile, level), = source_sets
    assert {p for p, _ in sets} == {profile} and max(lv for _, lv in sets) <= level
    assert profile == (110 if codec == "h264" else 2)  # High 10 / Main 10


# --------------------------------------------------------------------------- MP4 specifics
def edit_lists(path) -> list[list[tuple[int, int]]]:
    """[(segment_duration, media_time)] of each track's elst, in track order."""
    with open(path, "rb") as f:
        data = f.read()
    out = []

    def walk(off, end):
        while off + 8 <= end:
            size, kind = struct.unpack(">I4s", data[off:off + 8])
            if kind in (b"moov", b"trak", b"edts"):
                walk(off + 8, off + size)
            elif kind == b"elst":
                version, count = data[off + 8], struct.unpack(">I", data[off + 12:off + 16])[0]
                fmt, step = (">Qq", 16) if version else (">Ii", 8)
                entries = [struct.unpack(fmt, data[off + 16 + i * (step + 4):off + 16 + i * (step + 4) + step])
                           for i in range(count)]
                out.append(entries)
            off += size

    walk(0, len(data))
    return out


def test_mp4_signals_aac_preroll_with_an_edit_list(store, accurate_source, tmp_path):
    """The AAC frame before the first one kept is muxed as pre-roll (a frame decodes right only
    after the previous one) and skipped by the audio track's edit list, so that players start
    the audio with the video instead of shifting it; at 0 s it is the encoder's priming."""
    for start in (1040, 0):
        info = cut(store, accurate_source("h264-bframes"), start, start + 1000, tmp_path, "mp4", name=f"{start}.mp4")
        _video_elst, audio_elst = edit_lists(info.path)
        assert audio_elst[-1][1] > 0  # media_time: the pre-roll samples are skipped
        with av.open(info.path) as c:
            a = c.streams.audio[0]
            first = next(iter(c.decode(a)))
            assert float(first.pts * first.time_base) == pytest.approx(0, abs=0.001)
        r = inspect(info.path, "h264")
        assert r["video"][0] == pytest.approx(0, abs=0.001)
        assert r["audio"][1] == pytest.approx(r["video"][1], abs=AAC_FRAME_S)


# --------------------------------------------------------------------------- interface
def test_keyframe_mode_is_the_plain_stream_copy(store, accurate_source, tmp_path):
    info = cut(store, accurate_source("h264-bframes"), 1480, 3480, tmp_path, "ts", mode="keyframe")
    assert mediagen.first_stamp(info.path) == (1, 0)
    assert (info.start_ms, info.lead_ms) == (1000, 480)
    assert inspect(info.path, "h264")["recoded_parts"] == 0


def test_unknown_mode(store, accurate_source, tmp_path):
    with pytest.raises(MediaError, match="mode"):
        cut(store, accurate_source("h264-closed"), 1000, 2000, tmp_path, "ts", mode="smart")


def test_audio_only_selection(store, accurate_source, tmp_path):
    key = accurate_source("h264-closed")
    rec = load_recording(store.fetch, key)
    sel = select_segments(rec, 1010, 2990)
    sel = dataclasses.replace(sel, tracks=sel.tracks[1:])
    info = cut_clip(selection=sel, files=store.files(sel.keys()), out_path=str(tmp_path / "a.mp4"), container="mp4")
    assert info.video_codec is None and info.audio_codec == "aac"
    # the audio frames nearest the ends
    assert abs(info.start_ms - 1010) <= AAC_FRAME_S * 500 + 0.5
    assert abs(info.start_ms + info.duration_ms - 2990) <= AAC_FRAME_S * 500 + 0.5


def test_progress(store, accurate_source, tmp_path, monkeypatch):

    monkeypatch.setattr(media_common, "PROGRESS_INTERVAL_S", 0.0)
    calls = []
    cut(store, accurate_source("h264-bframes"), 1040, 6960, tmp_path, "mp4", on_progress=calls.append)
    assert len(calls) > 10 and calls == sorted(calls) and calls[-1] == 1.0 and all(0 < f <= 1 for f in calls)

    def cancel(fraction):
        raise RuntimeError("cancelled")

    out = tmp_path / "cancelled"
    out.mkdir()
    with pytest.raises(MediaError, match="cancelled"):
        cut(store, accurate_source("h264-bframes"), 1040, 6960, out, "mp4", on_progress=cancel)
    assert os.listdir(out) == []


def test_encode_selection_reports_the_first_frame(store, accurate_source, tmp_path):
    key = accurate_source("h264-bframes")
    rec = load_recording(store.fetch, key)
    sel = select_segments(rec, 1030, 1990)
    info = encode_selection(selection=sel, files=store.files(sel.keys()), out_path=str(tmp_path / "e.ts"),
                            codec="h264", preset="ultrafast")
    assert info.start_ms == 1040 and info.lead_ms == 0
    assert mediagen.stamps_in(info.path) == expected_stamps(1030, 1990, (0, 0))
