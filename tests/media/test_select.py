import pytest

from exports.media import (
    KEYFRAME_AUDIO_HEAD_MS,
    Recording,
    Segment,
    Track,
    lack_length,
    parse_m3u8,
    select_segments,
)
from exports.media.select import LOOKAHEAD_MS


def seg(key, a, b, n=0):
    return Segment(key=key, start_ms=a, end_ms=b, number=n)


@pytest.fixture
def rec():
    # video: [0,2) [2,4) [4,6) gap [10,12) [12,14); audio: continuous 0..14
    video = Track(kind="video", init_key="r/v-init", segments=(
        seg("r/v1", 0, 2000, 1), seg("r/v2", 2000, 4000, 2), seg("r/v3", 4000, 6000, 3),
        seg("r/v4", 10000, 12000, 4), seg("r/v5", 12000, 14000, 5)))
    audio = Track(kind="audio", init_key="r/a-init", segments=tuple(
        seg(f"r/a{i}", i * 2000, (i + 1) * 2000, i) for i in range(7)))
    return Recording(kind="dash", origin_ms=None, tracks=(video, audio), duration_ms=14000)


def test_overlap_and_keys(rec):
    sel = select_segments(rec, 3000, 10500)
    assert [s.key for s in sel.tracks[0].segments] == ["r/v2", "r/v3", "r/v4"]
    assert [s.key for s in sel.tracks[1].segments] == ["r/a1", "r/a2", "r/a3", "r/a4", "r/a5"]
    assert sel.keys() == ["r/v-init", "r/v2", "r/v3", "r/v4", "r/a-init", "r/a1", "r/a2", "r/a3", "r/a4", "r/a5"]
    assert (sel.start_ms, sel.end_ms) == (3000, 10500)
    assert sel.lack_ms == 4000  # the [6 s, 10 s) gap


def test_boundaries_are_half_open(rec):
    sel = select_segments(rec, 2000, 4000, lookahead_ms=0)
    assert [s.key for s in sel.tracks[0].segments] == ["r/v2"]
    assert sel.lack_ms == 0


def test_end_near_a_boundary_takes_the_next_segment(rec):
    # media presented before 4 s may be stored in [4 s, 6 s) (leading pictures, muxed audio)
    sel = select_segments(rec, 2000, 4000, lookahead_ms=1000)
    assert [s.key for s in sel.tracks[0].segments] == ["r/v2", "r/v3"]
    assert sel.lack_ms == 0
    assert [s.key for s in select_segments(rec, 2000, 2900, lookahead_ms=1000).tracks[0].segments] == ["r/v2"]


def test_end_on_a_boundary_takes_the_segment_it_opens_as_look_ahead(rec):
    # by default: the media presented before 4 s may be stored in [4 s, 6 s) (an open-GOP keyframe's
    # leading pictures, MPEG-TS audio muxed after it); the first track only
    sel = select_segments(rec, 1000, 4000)
    assert [s.key for s in sel.tracks[0].segments] == ["r/v1", "r/v2", "r/v3"]
    assert [s.key for s in sel.tracks[1].segments] == ["r/a0", "r/a1"]
    assert sel.keys() == ["r/v-init", "r/v1", "r/v2", "r/v3", "r/a-init", "r/a0", "r/a1"]
    # optional: never missing media, never LackLength (the init is not its alone)
    assert sel.lookahead == {"r/v3"}
    assert sel.lack_ms == 0 and lack_length(sel, ["r/v3"]) == 0
    # just before a boundary (less than LOOKAHEAD_MS): the same
    assert select_segments(rec, 1000, 4000 - LOOKAHEAD_MS + 1).lookahead == {"r/v3"}
    # elsewhere in a segment (a 60 s clip ending mid-segment fetches nothing more): the overlap only
    for end in (4000 - LOOKAHEAD_MS, 3500, 4500):
        sel = select_segments(rec, 1000, end)
        assert sel.lookahead == frozenset()
        assert [s.key for s in sel.tracks[0].segments] == (["r/v1", "r/v2"] if end < 4000 else ["r/v1", "r/v2", "r/v3"])
    # the segment after the end does not follow the overlap (a gap in the timeline): not taken
    sel = select_segments(rec, 4500, 6000)
    assert [s.key for s in sel.tracks[0].segments] == ["r/v3"] and sel.lookahead == frozenset()
    sel = select_segments(rec, 6500, 10000)  # (nothing overlaps in the first track)
    assert sel.tracks[0].segments == () and sel.lookahead == frozenset()
    # lookahead_ms=0: exactly the overlap
    sel = select_segments(rec, 1000, 4000, lookahead_ms=0)
    assert [s.key for s in sel.tracks[0].segments] == ["r/v1", "r/v2"] and sel.lookahead == frozenset()


def test_look_ahead_owns_the_initialization_and_key_only_it_needs():
    playlist = ('#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI="k1",IV=0x1\n#EXTINF:2,\na.ts\n#EXTINF:2,\nb.ts\n'
                '#EXT-X-KEY:METHOD=AES-128,URI="k2",IV=0x2\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:2,\nc.m4s\n')
    rec = parse_m3u8(playlist, base_dir="r")
    sel = select_segments(rec, 0, 2000)
    assert sel.keys() == ["r/k1", "r/a.ts", "r/b.ts"] and sel.lookahead == {"r/b.ts"}  # k1: a's too
    sel = select_segments(rec, 1000, 4000)
    assert sel.keys() == ["r/k1", "r/a.ts", "r/b.ts", "r/k2", "r/init.mp4", "r/c.m4s"]
    assert sel.lookahead == {"r/k2", "r/init.mp4", "r/c.m4s"}
    assert lack_length(sel, sel.lookahead) == 0 and lack_length(sel, ["r/k1"]) == 3000


def test_for_a_keyframe_cut_other_tracks_start_with_the_first_tracks_segment(rec):
    # a keyframe cut starts at the keyframe opening [2 s, 4 s): its audio from there
    sel = select_segments(rec, 2500, 2900, audio_head_ms=KEYFRAME_AUDIO_HEAD_MS)
    assert [s.key for s in sel.tracks[0].segments] == ["r/v2"]
    assert [s.key for s in sel.tracks[1].segments] == ["r/a1"]
    audio_late = Recording(kind="dash", origin_ms=None, duration_ms=4000, tracks=(
        Track(kind="video", init_key=None, segments=(seg("v", 0, 4000),)),
        Track(kind="audio", init_key=None, segments=(seg("a0", 0, 1920), seg("a1", 1920, 3840)))))
    keyframe_cut = select_segments(audio_late, 1960, 2500, audio_head_ms=KEYFRAME_AUDIO_HEAD_MS)
    assert [s.key for s in keyframe_cut.tracks[1].segments] == ["a0", "a1"]
    # an accurate cut or an encode needs no audio before the start
    assert [s.key for s in select_segments(audio_late, 1960, 2500).tracks[1].segments] == ["a1"]


def test_lack_head_and_tail(rec):
    shifted = Recording(kind="hls", origin_ms=None, tracks=(Track("muxed", None, (seg("a", 5000, 7000), seg("b", 7000, 9000))),),
                        duration_ms=9000)
    sel = select_segments(shifted, 1000, 12000)
    assert sel.lack_ms == 4000 + 3000
    assert sel.keys() == ["a", "b"]
    none = select_segments(rec, 20000, 25000)
    assert none.lack_ms == 5000 and none.keys() == []


def test_lack_length_with_missing_keys(rec):
    sel = select_segments(rec, 1000, 13000)
    assert sel.lack_ms == 4000
    assert lack_length(sel) == 4000
    assert lack_length(sel, {"r/v1"}) == 4000 + 1000
    assert lack_length(sel, ["r/v3", "r/v5", "r/a1"]) == 4000 + 2000 + 1000
    assert lack_length(sel, {"r/v-init"}) == 12000  # nothing decodable without the init segment


def test_overlapping_segments_counted_once():
    r = Recording("hls", None, (Track("muxed", None, (seg("a", 0, 3000), seg("b", 2000, 4000))),), 4000)
    assert select_segments(r, 0, 5000).lack_ms == 1000


def test_invalid_range(rec):
    with pytest.raises(ValueError):
        select_segments(rec, 5000, 5000)
