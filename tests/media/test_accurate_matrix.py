"""Issue 15, item 8: every codec x output container x GOP structure x start / end position,
through the media engine.

The sources are conftest.ACCURATE_SOURCES, made once per session by ``accurate_source`` (8 s,
320x180, 25 fps, 1 s GOPs: keyframes at whole seconds; a hole in [4 s, 6 s); every picture
stamped with its second and frame number): H.264 and HEVC, each as a closed GOP without
B-frames, a closed GOP with B-frames (H.264 with a B pyramid) and an open GOP whose keyframes
have leading pictures; DASH and HLS.  The positions are test_accurate's STARTS / ENDS: on the
keyframe, one frame after it, one frame before the next keyframe, inside the hole.

* ``cut_clip(mode="accurate")``: the full cross, with test_accurate.check_accurate (frame by
  frame seams, timestamps, ffmpeg, audio ends, what is re-encoded) and what a user checks on
  top of it: PyAV decodes every frame without a decoder message, presentation times increase,
  the codec / picture size / pixel format / aspect ratio / profile are the source's, an MP4
  starts presenting at 0 and has its moov before its mdat.
* ``cut_clip(mode="keyframe")``: the full cross: the stream copy starts on the keyframe at or
  before the start, and shows every frame from there on, once and in order.
* an end on a keyframe that opens a segment (the matrix's are inside segments), in each mode.
* ``encode_selection``: a subset covering each source, each start and end, each output codec
  and container.

The engine bugs found are in BUGS: the cases that run into them are xfail(strict=True), with the
reasons.  test_accurate.py's test_h264 / test_hevc are subsets of the accurate cross here.
"""
import io
import itertools
import os
import struct
from pathlib import Path

import av
import av.logging
import pytest

from exports.media import (
    KEYFRAME_AUDIO_HEAD_MS,
    MediaError,
    cut_clip,
    encode_selection,
    load_recording,
    select_segments,
)
from tests import mediagen
from tests.media.conftest import ACCURATE_SOURCES
from tests.media.test_accurate import (
    AAC_FRAME_S,
    ENDS,
    FRAME_MS,
    STARTS,
    check_accurate,
    expected_stamps,
    hole_of,
    inspect,
    nal_types,
    stamp_ms,
)

CODECS = ("h264", "hevc")
GOPS = ("closed", "bframes", "open")
CONTAINERS = ("ts", "mp4")
POSITIONS = [(s, e) for s in STARTS for e in ENDS if (s, e) != ("gap", "gap")]
HOLE = (4000, 6000)  # the part of the timeline the recordings do not have
MP4_TAG = {"h264": "avc1", "hevc": "hvc1"}  # sample entries of a plain copy (keyframe mode)


# --------------------------------------------------------------------------- what the tests read
def run(store, key, start, end, out_path, *, encode=None, **kw):
    rec = load_recording(store.fetch, key)
    keyframe = kw.get("mode") == "keyframe" and not encode
    sel = select_segments(rec, start, end, audio_head_ms=KEYFRAME_AUDIO_HEAD_MS if keyframe else 0.0)
    files = store.files(sel.keys())
    if encode:
        return encode_selection(selection=sel, files=files, out_path=out_path, codec=encode, preset="ultrafast",
                                **kw)
    return cut_clip(selection=sel, files=files, out_path=out_path, **kw)


def video_format(container) -> dict:
    vs = container.streams.video[0]
    cc = vs.codec_context
    return {"codec": cc.name, "size": (cc.width, cc.height), "pix_fmt": cc.pix_fmt,
            "sar": vs.sample_aspect_ratio or cc.sample_aspect_ratio, "profile": cc.profile}


_SOURCE_FORMATS: dict[str, dict] = {}


def first_segments(store, key) -> io.BytesIO:
    """The recording's video before its hole, as one file: its first two segments (after the
    initialization for DASH)."""
    directory = Path(store.root, key).parent
    if key.endswith(".mpd"):
        names = ["init-0.m4s", "chunk-0-00001.m4s", "chunk-0-00002.m4s"]
    else:
        names = ["seg00000.ts", "seg00001.ts"]
    return io.BytesIO(b"".join((directory / n).read_bytes() for n in names))


def source_format(store, key) -> dict:
    """The video format of a recording (codec, picture size, pixel format, aspect ratio, profile)."""
    where = os.path.join(store.root, key)
    if where not in _SOURCE_FORMATS:
        with av.open(first_segments(store, key)) as c:
            _SOURCE_FORMATS[where] = video_format(c)
    return _SOURCE_FORMATS[where]


def missing_ms(start, end, hole=HOLE) -> float:
    """How much of [start, end) the recording does not have."""
    return max(0, min(end, hole[1]) - max(start, hole[0]))


def top_level_boxes(path) -> list[bytes]:
    out = []
    with open(path, "rb") as f:
        while header := f.read(8):
            size, kind = struct.unpack(">I4s", header)
            if size == 1:
                size = struct.unpack(">Q", f.read(8))[0] - 8
            out.append(kind)
            f.seek(size - 8, os.SEEK_CUR)
    return out


def decode_everything(path) -> dict:
    """Every video frame decoded by PyAV: presentation times, what the decoder said, packets."""
    level = av.logging.get_level()
    av.logging.set_level(av.logging.WARNING)
    try:
        with av.logging.Capture() as logs, av.open(path) as c:
            fmt = video_format(c)
            packets = frames = 0
            times = []
            for packet in c.demux(c.streams.video[0]):
                if packet.size:
                    packets += 1
                for frame in packet.decode():
                    frames += 1
                    times.append(float(frame.pts * frame.time_base))
    finally:
        av.logging.set_level(level)
    return {"format": fmt, "times": times, "packets": packets, "frames": frames,
            "messages": [f"{name}: {text.strip()}" for lv, name, text in logs if lv <= av.logging.WARNING]}


def check_file(path, *, container, expected_format):
    """What holds for every clip: every frame decodes, presented in increasing time, in the
    expected format; an MP4 is fast-start and starts at 0."""
    d = decode_everything(path)
    assert d["messages"] == []
    assert d["frames"] == d["packets"]  # every packet gives a picture
    assert all(b > a for a, b in itertools.pairwise(d["times"]))
    if expected_format is not None:
        assert d["format"] == expected_format
    if container == "mp4":
        boxes = top_level_boxes(path)
        assert boxes.index(b"moov") < boxes.index(b"mdat")
        assert d["times"][0] == pytest.approx(0, abs=0.001)
    return d


# --------------------------------------------------------------------------- engine bugs found
# The cases of the matrix that fail today, by cause: each such case is xfail(strict=True) with the
# reasons of the causes it runs into (known_bugs says which), and is itself the reproduction.
BUGS: dict[str, str] = {}  # none known today (fixed: "segment-end", "h264-open-gop-after-hole")


def known_bugs(mode, source, container, start, end) -> list[str]:
    """Names (BUGS) of the engine bugs a case of the matrix runs into."""
    return []


def expect_bugs(request, *case):
    found = known_bugs(*case)
    if found:
        request.applymarker(pytest.mark.xfail(strict=True, reason="; ".join(BUGS[b] for b in found)))


# --------------------------------------------------------------------------- the sources are what they claim
@pytest.mark.parametrize("source", list(ACCURATE_SOURCES))
def test_sources_have_their_gop_structure(store, accurate_source, source):
    """Keyframes on whole seconds; "closed": no reordering; "bframes": reordering, every GOP closed;
    "open": each keyframe after the first is a non-IDR I picture (H.264) / a CRA (HEVC) followed
    in decode order by leading pictures presented before it."""
    codec, gop = source.split("-")
    hevc = codec == "hevc"
    with av.open(first_segments(store, accurate_source(source))) as c:
        vs = c.streams.video[0]
        packets = [(round(float(p.pts * vs.time_base) * 25), p.is_keyframe, nal_types(bytes(p), hevc))
                   for p in c.demux(vs) if p.size]
    first = packets[0][0]
    keys = [i for i, (_, key, _) in enumerate(packets) if key]
    assert [packets[i][0] - first for i in keys] == [0, 25, 50, 75]  # frames 0, 25, 50, 75: 0 s .. 3 s
    reordered = any(b[0] < a[0] for a, b in itertools.pairwise(packets))
    assert reordered == (gop != "closed")
    idr = {19, 20} if hevc else {5}
    for i in keys[1:]:
        leading = [n for n, _, _ in packets[i + 1:i + 6] if n < packets[i][0]]
        kinds = set(packets[i][2])
        if gop == "open":
            assert leading and not kinds & idr and (21 in kinds if hevc else 1 in kinds)
        else:
            assert not leading and kinds & idr


# --------------------------------------------------------------------------- accurate: the full cross
@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("start,end", POSITIONS, ids=[f"{s}..{e}" for s, e in POSITIONS])
@pytest.mark.parametrize("gop", GOPS)
@pytest.mark.parametrize("codec", CODECS)
def test_accurate_cut(store, accurate_source, tmp_path, request, codec, gop, start, end, container):
    source = f"{codec}-{gop}"
    expect_bugs(request, "accurate", source, container, start, end)
    key = accurate_source(source)
    s, e = STARTS[start], ENDS[end]
    info = run(store, key, s, e, str(tmp_path / f"clip.{container}"), container=container)
    r = check_accurate(info, source, s, e, container)
    d = check_file(info.path, container=container, expected_format=source_format(store, key))
    assert (info.width, info.height) == d["format"]["size"]
    # the duration the engine reports is the file's: first frame to the end of the last
    assert info.duration_ms == pytest.approx((d["times"][-1] - d["times"][0]) * 1000 + FRAME_MS, abs=1)
    assert len(r["stamps"]) == d["frames"]


# --------------------------------------------------------------------------- keyframe mode: the full cross
def keyframe_before(start_ms, hole=HOLE):
    """The keyframe a stream copy starts on: at or before the start, or the first after a hole
    the start lies in."""
    if hole[0] <= start_ms < hole[1]:
        return hole[1]
    return start_ms // 1000 * 1000


def check_keyframe(info, source, start, end, container):
    codec = "hevc" if source.startswith("hevc") else "h264"
    hole = hole_of(source)
    key = keyframe_before(start)
    r = inspect(info.path, codec)
    stamps = r["stamps"]
    assert stamps and stamps[0] == (key // 1000, 0)
    assert info.start_ms == pytest.approx(key, abs=0.5)
    assert info.lead_ms == pytest.approx(max(0, start - key), abs=0.5)
    # every frame presented from the keyframe to the end, once and in order; a stream copy may
    # go on past the end (the anchors decoded before it), then without a frame missing either
    wanted = expected_stamps(key, end, hole)
    assert stamps[:len(wanted)] == wanted
    last = stamp_ms(stamps[-1])
    assert stamps == expected_stamps(key, last + FRAME_MS, hole)
    assert last + FRAME_MS - end <= 8 * FRAME_MS
    assert info.duration_ms == pytest.approx(last + FRAME_MS - key, abs=1)
    assert (info.video_codec, info.audio_codec) == (codec, "aac")
    assert r["dts_increasing"] and r["pts_lt_dts"] == 0
    assert r["ffmpeg"] == ""
    assert r["recoded_parts"] == 0 and not r["head_recoded"]
    if container == "mp4":
        assert r["tag"] == MP4_TAG[codec]
    (v0, v1), (a0, a1) = r["video"], r["audio"]
    assert abs(a0 - v0) <= AAC_FRAME_S + 0.001
    if not hole[0] < end <= hole[1]:
        assert abs(a1 - v1) <= AAC_FRAME_S + 0.001
    return r


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("start,end", POSITIONS, ids=[f"{s}..{e}" for s, e in POSITIONS])
@pytest.mark.parametrize("gop", GOPS)
@pytest.mark.parametrize("codec", CODECS)
def test_keyframe_cut(store, accurate_source, tmp_path, request, codec, gop, start, end, container):
    source = f"{codec}-{gop}"
    expect_bugs(request, "keyframe", source, container, start, end)
    key = accurate_source(source)
    s, e = STARTS[start], ENDS[end]
    info = run(store, key, s, e, str(tmp_path / f"clip.{container}"), container=container, mode="keyframe")
    check_keyframe(info, source, s, e, container)
    d = check_file(info.path, container=container, expected_format=source_format(store, key))
    assert (info.width, info.height) == d["format"]["size"]


@pytest.mark.parametrize("mode", ["accurate", "keyframe"])
@pytest.mark.parametrize("gop", GOPS)
@pytest.mark.parametrize("codec", CODECS)
def test_range_inside_the_hole_is_an_error(store, accurate_source, tmp_path, codec, gop, mode):
    with pytest.raises(MediaError):
        run(store, accurate_source(f"{codec}-{gop}"), STARTS["gap"], ENDS["gap"], str(tmp_path / "clip.ts"),
            mode=mode)
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- an end on a segment boundary
# The matrix's keyframes are inside segments (2 s segments, ends at 7 s); a keyframe that opens a
# segment is another case for an open GOP: its leading pictures, presented before it, are stored
# after it, in that segment.
@pytest.mark.parametrize("mode,container", [("accurate", "ts"), ("accurate", "mp4"), ("keyframe", "ts"),
                                            ("encode", "ts")])
@pytest.mark.parametrize("source", list(ACCURATE_SOURCES))
def test_end_on_a_segment_boundary(store, accurate_source, tmp_path, request, source, mode, container):
    expect_bugs(request, mode, source, container, "key+1", "segment")
    key = accurate_source(source)
    start, end = STARTS["key+1"], 2000  # the keyframe at 2 s opens the second segment
    out = str(tmp_path / f"clip.{container}")
    if mode == "encode":
        info = run(store, key, start, end, out, encode="h264", container=container)
        check_encoded(info, source, start, end, "h264", container, source_format(store, key))
        return
    info = run(store, key, start, end, out, container=container, mode=mode)
    if mode == "accurate":
        check_accurate(info, source, start, end, container)
    else:
        check_keyframe(info, source, start, end, container)
    check_file(info.path, container=container, expected_format=source_format(store, key))


# --------------------------------------------------------------------------- keyframe mode after a hole, MP4 framing
@pytest.fixture(scope="module")
def h264_open_dash(store):
    """The h264-open source packaged as DASH (fMP4: length-prefixed NAL units), the segment after
    [4 s, 6 s) missing."""
    path = mediagen.make_dash(os.path.join(store.root, "acc-h264-open-dash"), duration_s=8, template="timeline",
                              missing=[(4, 6)], **{k: v for k, v in ACCURATE_SOURCES["h264-open"].items()
                                                   if k != "kind"})
    return os.path.relpath(path, store.root)


@pytest.mark.parametrize("container", CONTAINERS)
def test_keyframe_cut_splices_length_prefixed_h264(store, h264_open_dash, tmp_path, container):
    """The open-GOP keyframe after the hole is spliced in the packets' own framing (length-prefixed
    here): nothing from before the hole is shown after it, and every frame decodes.  (Not checked:
    the times of the leading pictures of the 6 s keyframe, which this DASH packaging starts its
    segment with: the sources place that keyframe at the segment's start, 5.84 s, with them.)"""
    info = run(store, h264_open_dash, 1000, 7000, str(tmp_path / f"clip.{container}"), container=container,
               mode="keyframe")
    r = inspect(info.path, "h264")
    assert r["ffmpeg"] == ""
    stamps = r["stamps"]
    before = [st for st in stamps if st < (4, 0)]
    after = stamps[len(before):]
    assert before == expected_stamps(1000, 3840, HOLE)  # (3.84-3.96 s: the missing 4 s keyframe's leading pictures)
    assert after == sorted(after) and set(expected_stamps(6000, 7000, HOLE)) <= set(after)
    d = decode_everything(info.path)
    assert d["messages"] == [] and d["frames"] == d["packets"]


# --------------------------------------------------------------------------- encode_selection: a subset
# each source twice, each start and end, each output codec with each container three times
ENCODES = [
    ("h264-closed", "key+1", "key-1", "h265", "mp4"),
    ("h264-closed", "gap", "key+1", "h264", "ts"),
    ("h264-bframes", "key-1", "key+1", "h264", "mp4"),
    ("h264-bframes", "key", "gap", "h265", "ts"),
    ("h264-open", "key+1", "key", "h265", "ts"),
    ("h264-open", "key-1", "gap", "h264", "mp4"),
    ("hevc-closed", "key-1", "key-1", "h264", "ts"),
    ("hevc-closed", "key", "key+1", "h265", "mp4"),
    ("hevc-bframes", "key+1", "gap", "h264", "mp4"),
    ("hevc-bframes", "gap", "key-1", "h265", "ts"),
    ("hevc-open", "key-1", "key", "h264", "ts"),
    ("hevc-open", "gap", "key+1", "h265", "mp4"),
]


@pytest.mark.parametrize("source,start,end,codec,container", ENCODES,
                         ids=["-".join(case) for case in ENCODES])
def test_encode_selection(store, accurate_source, tmp_path, request, source, start, end, codec, container):
    expect_bugs(request, "encode", source, container, start, end)
    key = accurate_source(source)
    s, e = STARTS[start], ENDS[end]
    info = run(store, key, s, e, str(tmp_path / f"clip.{container}"), encode=codec, container=container)
    check_encoded(info, source, s, e, codec, container, source_format(store, key))
    assert info.lead_ms == 0


def check_encoded(info, source, start, end, codec, container, source_fmt):
    """An export_type 1 / 2 clip: exactly the frames presented in [start, end), in `codec`, at the
    source's picture size; audio at both ends; the duration the file has."""
    hole = hole_of(source)
    out_codec = "hevc" if codec == "h265" else "h264"
    r = inspect(info.path, out_codec)
    expected = expected_stamps(start, end, hole)
    assert r["stamps"] == expected
    assert info.start_ms == pytest.approx(stamp_ms(expected[0]), abs=0.5)
    assert (info.video_codec, info.audio_codec) == (out_codec, "aac")
    assert r["dts_increasing"] and r["pts_lt_dts"] == 0
    assert r["ffmpeg"] == ""
    (v0, v1), (a0, a1) = r["video"], r["audio"]
    assert abs(a0 - v0) <= AAC_FRAME_S + 0.001
    if not hole[0] < end <= hole[1]:
        assert abs(a1 - v1) <= AAC_FRAME_S + 0.001
    if missing_ms(start, end) == 0:
        assert abs(info.duration_ms - (end - start)) <= FRAME_MS
    # the source's picture size, 8-bit 4:2:0 (the profile is the encoder's choice)
    d = check_file(info.path, container=container, expected_format=None)
    assert {**d["format"], "profile": None} == {**source_fmt, "codec": out_codec, "pix_fmt": "yuv420p", "profile": None}
    assert (info.width, info.height) == source_fmt["size"]
    assert info.duration_ms == pytest.approx((d["times"][-1] - d["times"][0]) * 1000 + FRAME_MS, abs=1)
    return r
