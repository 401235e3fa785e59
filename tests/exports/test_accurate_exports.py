"""Issue 15, item 8, end to end: frame-accurate exports through POST export-to-s3dir, a real Celery
worker and the real S3 endpoint, from the recordings of tests/media (conftest.ACCURATE_SOURCES:
8 s, 1 s GOPs, a hole in [4 s, 6 s)), checked frame by frame as tests/media/test_accurate_matrix.py
checks the engine's clips, plus what the answer says: ClipStart, ClipDuration, LackLength.

A representative subset of the engine's matrix: both codecs, both containers, closed GOP,
B-frames and open GOP, starts and ends on a keyframe, one frame after it, one frame before the
next one, and the hole at the start, at the end and inside the clip.
"""
import os
from types import SimpleNamespace

import av
import pytest

from exports.media import ClipInfo
from tests.exports.conftest import ORIGIN_MS, export_body, poll, submit
from tests.exports.test_export_pipeline import fetch_clip
from tests.media.conftest import ACCURATE_SOURCES
from tests.media.test_accurate import (
    FRAME_MS,
    check_accurate,
    expected_stamps,
    hole_of,
    stamp_ms,
)
from tests.media.test_accurate_matrix import (
    HOLE,
    check_encoded,
    check_file,
    missing_ms,
    source_format,
)

pytestmark = pytest.mark.django_db(transaction=True)

MANIFEST = {"dash": "manifest.mpd", "hls": "index.m3u8"}

# (source, ExportFormat, export_type, start ms, end ms) in the recording
CASES = [
    ("h264-closed", "mp4", 0, 1040, 2960),  # one frame after a keyframe .. one frame before the next
    ("h264-bframes", "ts", 0, 1960, 3040),  # one frame before a keyframe .. one frame after the next
    ("h264-open", "mp4", 0, 1040, 3000),  # open GOP, to an MP4, ending on a keyframe
    ("hevc-closed", "ts", 0, 4500, 7040),  # starting inside the hole of the DASH timeline
    ("hevc-bframes", "mp4", 0, 1000, 5000),  # from a keyframe into the missing HLS segment
    ("hevc-open", "ts", 0, 1960, 3040),  # open GOP, to MPEG-TS
    ("h264-closed", "ts", 0, 1000, 7000),  # the hole inside the clip
    ("hevc-open", "mp4", 1, 1040, 2960),  # export_type 1: H.264 encode of an open-GOP HEVC recording
]
def case_id(case):
    source, fmt, export_type, start, end = case
    return f"{source}-{fmt}-type{export_type}-{start}-{end}"


@pytest.fixture
def accurate_recording(uploaded_recordings, recordings_dir):
    """source name -> (LivePath of it in the source bucket, its local copy as a tests.media store)."""

    def get(source: str) -> tuple[str, SimpleNamespace, str]:
        options = dict(ACCURATE_SOURCES[source])
        kind = options.pop("kind")
        hole = {"gaps": [(4, 6)], "template": "timeline"} if kind == "dash" else {"missing": [(4, 6)]}
        name = f"accurate-{source}"
        live_path = uploaded_recordings(name, kind, duration_s=8, **hole, **options)
        return live_path, SimpleNamespace(root=str(recordings_dir)), f"{name}/{MANIFEST[kind]}"

    return get


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_accurate_export(api, s3, session_id, celery_worker, accurate_recording, tmp_path, request, case):
    source, fmt, export_type, start, end = case
    live_path, local, key = accurate_recording(source)
    body = export_body(live_path, session_id, StartPos=ORIGIN_MS + start, Duration=end - start,
                       export_type=export_type, ExportFormat=fmt)  # CutMode: accurate by default
    answer = poll(api, submit(api, body)["TaskId"], session_id)
    assert answer["ErrorCode"] == 5, answer
    clip = fetch_clip(s3, answer, tmp_path)
    assert clip.endswith(f".{fmt}")

    lack = missing_ms(start, end)
    assert answer["LackLength"] == lack
    expected = expected_stamps(start, end, hole_of(source))
    assert abs(answer["ClipStart"] - stamp_ms(expected[0])) <= 1
    with av.open(clip) as c:  # (what the answer does not say, from the clip)
        codecs = {s.type: s.codec_context.name for s in c.streams}
        width, height = c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height
    info = ClipInfo(path=clip, duration_ms=answer["ClipDuration"], video_codec=codecs["video"],
                    audio_codec=codecs.get("audio"), width=width, height=height, size_bytes=os.path.getsize(clip),
                    start_ms=answer["ClipStart"])
    if export_type == 0:
        check_accurate(info, source, start, end, fmt)  # the frames, the seams, the audio, what is re-encoded
        d = check_file(clip, container=fmt, expected_format=source_format(local, key))
        assert answer["ClipDuration"] == pytest.approx((d["times"][-1] - d["times"][0]) * 1000 + FRAME_MS, abs=1)
    else:
        check_encoded(info, source, start, end, "h264" if export_type == 1 else "h265", fmt,
                      source_format(local, key))
    # the answer's own arithmetic (api.md): what was asked = what the clip is + what is missing at its
    # ends; a hole inside the clip stays a jump of its timestamps, so ClipDuration spans it
    hole_start, hole_end = HOLE
    lack_inside = hole_end - hole_start if start < hole_start and end > hole_end else 0
    assert abs(end - start - answer["ClipDuration"] - (answer["LackLength"] - lack_inside)) <= FRAME_MS
