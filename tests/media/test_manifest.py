import datetime as dt
import struct

import pytest

from exports.media import (
    Encryption,
    ManifestError,
    MediaError,
    Part,
    Recording,
    Segment,
    Track,
    lack_length,
    load_recording,
    parse_m3u8,
    parse_mpd,
    part_name,
    select_segments,
)
from tests import mediagen

ORIGIN_MS = int(mediagen.DEFAULT_ORIGIN.timestamp() * 1000)


def epoch_ms(s: str) -> int:
    return int(dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000)


# --------------------------------------------------------------------------- generated DASH
def test_generated_dash_timeline(store, dash_timeline):
    rec = load_recording(store.fetch, dash_timeline)
    assert rec.kind == "dash" and not rec.dynamic
    assert rec.origin_ms == ORIGIN_MS
    video, audio = rec.tracks
    assert (video.kind, audio.kind) == ("video", "audio")
    assert video.init_key == "dash-tl/init-0.m4s"
    assert audio.init_key == "dash-tl/init-1.m4s"
    assert video.codecs.startswith("avc1") and audio.codecs == "mp4a.40.2"
    assert [s.number for s in video.segments] == list(range(1, 11))
    assert [s.start_ms for s in video.segments] == [i * 2000.0 for i in range(10)]
    assert video.segments[3].key == "dash-tl/chunk-0-00004.m4s"
    assert video.segments[-1].end_ms == 20000.0 == rec.duration_ms
    # audio segment boundaries follow AAC frames but cover the same span
    assert audio.segments[0].start_ms == 0 and abs(audio.segments[-1].end_ms - 20000) < 50
    for t in rec.tracks:  # every listed file exists
        keys = [t.init_key] + [s.key for s in t.segments]
        assert set(store.files(keys)) == set(keys)


def test_generated_dash_number(store, dash_number):
    rec = load_recording(store.fetch, dash_number)
    video = rec.tracks[0]
    assert len(video.segments) == 10
    assert [(s.start_ms, s.end_ms) for s in video.segments[:2]] == [(0.0, 2000.0), (2000.0, 4000.0)]
    assert video.segments[9].key == "dash-num/chunk-0-00010.m4s"
    assert rec.duration_ms == 20000.0
    assert set(store.files([s.key for s in video.segments])) == {s.key for s in video.segments}


def test_generated_dash_gap(store, dash_gaps):
    rec = load_recording(store.fetch, dash_gaps)
    video = rec.tracks[0]
    starts = [s.start_ms for s in video.segments]
    assert starts == [0, 2000, 4000, 10000, 12000, 14000, 16000, 18000]
    # $Time$ names
    assert video.segments[3].key == "dash-gap/chunk-0-128000.m4s"


# --------------------------------------------------------------------------- hand-written DASH
STATIC_MPD = """<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT40S"
     availabilityStartTime="2024-05-06T07:08:09.500Z">
  <BaseURL>media/</BaseURL>
  <Period id="p0" start="PT10S">
    <AdaptationSet contentType="video" mimeType="video/mp4">
      <SegmentTemplate timescale="1000" presentationTimeOffset="5000" startNumber="7"
          initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/$Bandwidth$/seg-$Number%05d$.m4s">
        <SegmentTimeline>
          <S t="5000" d="2000" r="2"/>
          <S t="15000" d="3000"/>
          <S d="1000" r="1"/>
        </SegmentTimeline>
      </SegmentTemplate>
      <Representation id="low" bandwidth="500000" codecs="avc1.4d401f" width="640" height="360"/>
      <Representation id="high" bandwidth="3000000" codecs="avc1.640028" width="1920" height="1080"/>
      <Representation id="mid" bandwidth="1500000" codecs="avc1.4d401f" width="1280" height="720"/>
    </AdaptationSet>
    <AdaptationSet contentType="text" mimeType="application/ttml+xml">
      <Representation id="sub" bandwidth="9999999"><BaseURL>subs.ttml</BaseURL></Representation>
    </AdaptationSet>
    <AdaptationSet mimeType="audio/mp4" lang="en">
      <Representation id="a1" bandwidth="128000" codecs="mp4a.40.2">
        <SegmentTemplate timescale="48000" media="$RepresentationID$/$Time$.m4s" initialization="$RepresentationID$/init.mp4">
          <SegmentTimeline><S t="0" d="96000" r="4"/></SegmentTimeline>
        </SegmentTemplate>
      </Representation>
      <Representation id="a2" bandwidth="256000" codecs="mp4a.40.2">
        <SegmentTemplate timescale="48000" media="a2/$Time$.m4s" initialization="a2/init.mp4">
          <SegmentTimeline><S t="0" d="96000" r="4"/></SegmentTimeline>
        </SegmentTemplate>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>
"""


def test_mpd_template_identifiers_repeats_jumps_pto_period_start():
    rec = parse_mpd(STATIC_MPD, base_dir="rec/abc")
    assert rec.origin_ms == epoch_ms("2024-05-06T07:08:09.500Z")
    video, audio = rec.tracks
    # highest bandwidth video, highest bandwidth audio
    assert (video.representation_id, video.bandwidth, video.codecs) == ("high", 3000000, "avc1.640028")
    assert audio.representation_id == "a2" and audio.kind == "audio"
    assert video.init_key == "rec/abc/media/high/init.mp4"
    assert [s.key for s in video.segments] == [
        f"rec/abc/media/high/3000000/seg-{n:05d}.m4s" for n in range(7, 13)
    ]
    assert [s.number for s in video.segments] == [7, 8, 9, 10, 11, 12]
    # Period@start 10 s + (t - PTO) / timescale; S@t jump leaves [16 s, 20 s) uncovered
    assert [(s.start_ms, s.end_ms) for s in video.segments] == [
        (10000, 12000), (12000, 14000), (14000, 16000), (20000, 23000), (23000, 24000), (24000, 25000),
    ]
    assert rec.duration_ms == 25000
    assert [s.key for s in audio.segments][:2] == ["rec/abc/media/a2/0.m4s", "rec/abc/media/a2/96000.m4s"]
    assert audio.segments[1].start_ms == 12000 and len(audio.segments) == 5


DYNAMIC_MPD = """<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" availabilityStartTime="2024-01-01T00:00:00Z">
  <Period id="p0" start="PT0S">
    <AdaptationSet mimeType="video/mp4" codecs="avc1.64001f">
      <Representation id="v" bandwidth="1000">
        <SegmentTemplate timescale="90000" media="v_$Time$.m4s" initialization="v_init.m4s">
          <SegmentTimeline>
            <S t="0" d="180000" r="-1"/>
            <S t="900000" d="90000" r="-1"/>
          </SegmentTimeline>
        </SegmentTemplate>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>"""


def test_mpd_dynamic_open_ended_repeat():
    origin = epoch_ms("2024-01-01T00:00:00Z")
    rec = parse_mpd(DYNAMIC_MPD, base_dir="live/cam1", now_ms=origin + 14_500)
    assert rec.dynamic and rec.origin_ms == origin
    segs = rec.tracks[0].segments
    # r=-1 followed by an S@t: repeat up to it (5 x 2 s); last r=-1: complete segments until "now"
    assert [s.start_ms for s in segs] == [0, 2000, 4000, 6000, 8000, 10000, 11000, 12000, 13000]
    assert segs[-1].end_ms == 14000
    assert segs[5].key == "live/cam1/v_900000.m4s"
    assert rec.tracks[0].init_key == "live/cam1/v_init.m4s"


def test_mpd_number_template_with_duration():
    mpd = """<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" mediaPresentationDuration="PT10S">
      <Period><AdaptationSet contentType="video">
        <SegmentTemplate timescale="1" duration="4" startNumber="0" media="seg_$Number$.m4s" initialization="init.m4s"/>
        <Representation id="v" bandwidth="1"/></AdaptationSet></Period></MPD>"""
    rec = parse_mpd(mpd, base_dir="")
    segs = rec.tracks[0].segments
    assert [(s.key, s.start_ms, s.end_ms, s.number) for s in segs] == [
        ("seg_0.m4s", 0, 4000, 0), ("seg_1.m4s", 4000, 8000, 1), ("seg_2.m4s", 8000, 10000, 2)]
    assert rec.origin_ms is None and rec.duration_ms == 10000


def test_mpd_dynamic_number_template_bounded_by_now():
    mpd = """<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" availabilityStartTime="2024-01-01T00:00:00Z">
      <Period start="PT0S"><AdaptationSet mimeType="video/mp4">
        <Representation id="v" bandwidth="1">
          <SegmentTemplate timescale="1000" duration="2000" startNumber="1" media="$RepresentationID$-$Number%03d$.m4s"
                           initialization="$RepresentationID$-init.m4s"/>
        </Representation></AdaptationSet></Period></MPD>"""
    rec = parse_mpd(mpd, base_dir="x", now_ms=epoch_ms("2024-01-01T00:00:09Z"))
    assert [s.key for s in rec.tracks[0].segments] == ["x/v-001.m4s", "x/v-002.m4s", "x/v-003.m4s", "x/v-004.m4s"]


def test_mpd_dynamic_time_shift_window():
    mpd = """<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" availabilityStartTime="2024-01-01T00:00:00Z"
               timeShiftBufferDepth="PT10S">
      <Period start="PT0S"><AdaptationSet mimeType="video/mp4">
        <Representation id="v" bandwidth="1">
          <SegmentTemplate timescale="1" duration="2" startNumber="5" media="$Number$.m4s" initialization="i.m4s"/>
        </Representation></AdaptationSet></Period></MPD>"""
    rec = parse_mpd(mpd, base_dir="", now_ms=epoch_ms("2024-01-01T01:00:00Z"))
    segs = rec.tracks[0].segments
    # segments complete by now (3600 s) within the last 10 s: [3590, 3600) -> numbers 5 + 1795 ...
    assert [(s.number, s.start_ms) for s in segs] == [(5 + i, i * 2000.0) for i in range(1795, 1800)]
    assert segs[0].key == "1800.m4s"


def test_mpd_absurd_repeat_count_is_refused():
    mpd = """<MPD xmlns="urn:mpeg:dash:schema:mpd:2011"><Period><AdaptationSet contentType="video">
      <Representation id="v"><SegmentTemplate timescale="1" media="$Number$"><SegmentTimeline>
      <S t="0" d="1" r="999999999"/></SegmentTimeline></SegmentTemplate></Representation></AdaptationSet></Period></MPD>"""
    with pytest.raises(ManifestError):
        parse_mpd(mpd, base_dir="")


def test_mpd_multi_period_concatenates():
    mpd = """<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" mediaPresentationDuration="PT8S">
      <Period start="PT0S"><AdaptationSet contentType="video">
        <SegmentTemplate timescale="1" media="v/$Time$.m4s" initialization="v/init.m4s">
          <SegmentTimeline><S t="0" d="2" r="1"/></SegmentTimeline></SegmentTemplate>
        <Representation id="v" bandwidth="1"/></AdaptationSet></Period>
      <Period start="PT5S"><AdaptationSet contentType="video">
        <SegmentTemplate timescale="1" media="v/$Time$.m4s" initialization="v/init.m4s" presentationTimeOffset="5">
          <SegmentTimeline><S t="5" d="3"/></SegmentTimeline></SegmentTemplate>
        <Representation id="v" bandwidth="1"/></AdaptationSet></Period></MPD>"""
    segs = parse_mpd(mpd, base_dir="r").tracks[0].segments
    assert [(s.key, s.start_ms, s.end_ms) for s in segs] == [
        ("r/v/0.m4s", 0, 2000), ("r/v/2.m4s", 2000, 4000), ("r/v/5.m4s", 5000, 8000)]


def test_mpd_absolute_urls_keep_path():
    mpd = """<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" mediaPresentationDuration="PT4S">
      <BaseURL>https://cdn.example.com/bucket/rec/</BaseURL>
      <Period><AdaptationSet contentType="video">
        <Representation id="v" bandwidth="1">
          <SegmentTemplate timescale="1" duration="2" media="../rec2/$Number$.m4s" initialization="init.m4s"/>
        </Representation></AdaptationSet></Period></MPD>"""
    rec = parse_mpd(mpd, base_dir="ignored/dir")
    assert rec.tracks[0].init_key == "bucket/rec/init.m4s"
    assert [s.key for s in rec.tracks[0].segments] == ["bucket/rec2/1.m4s", "bucket/rec2/2.m4s"]


@pytest.mark.parametrize("text", [
    b"not xml at all",
    b"<html><body>nope</body></html>",
    b'<MPD xmlns="urn:mpeg:dash:schema:mpd:2011"></MPD>',
    b'<MPD xmlns="urn:mpeg:dash:schema:mpd:2011"><Period><AdaptationSet contentType="video">'
    b'<Representation id="v"><SegmentTemplate timescale="1"><SegmentTimeline><S t="0" d="x"/></SegmentTimeline>'
    b'</SegmentTemplate></Representation></AdaptationSet></Period></MPD>',
])
def test_mpd_garbage_raises_manifest_error(text):
    with pytest.raises(ManifestError):
        parse_mpd(text, base_dir="a")
    assert issubclass(ManifestError, MediaError)


# --------------------------------------------------------------------------- HLS
MEDIA_PLAYLIST = """#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:3
#EXT-X-MEDIA-SEQUENCE:100
#EXTINF:2.5,
seg100.ts
#EXT-X-PROGRAM-DATE-TIME:2024-03-04T05:06:07.250+0000
#EXTINF:2.0,title
seg101.ts
#EXT-X-DISCONTINUITY
#EXTINF:3.000,
../other/seg102.ts
#EXTINF:1.5,
http://cdn.example.com/abs/seg103.ts
#EXT-X-ENDLIST
"""


def test_m3u8_media_playlist():
    rec = parse_m3u8(MEDIA_PLAYLIST, base_dir="hls/cam")
    assert rec.kind == "hls" and not rec.dynamic
    # origin = first PROGRAM-DATE-TIME minus the duration before that segment
    assert rec.origin_ms == epoch_ms("2024-03-04T05:06:07.250+00:00") - 2500
    (track,) = rec.tracks
    assert track.kind == "muxed" and track.init_key is None
    assert [(s.key, s.start_ms, s.end_ms, s.number) for s in track.segments] == [
        ("hls/cam/seg100.ts", 0, 2500, 100),
        ("hls/cam/seg101.ts", 2500, 4500, 101),
        ("hls/other/seg102.ts", 4500, 7500, 102),  # DISCONTINUITY: timing stays cumulative
        ("abs/seg103.ts", 7500, 9000, 103),
    ]
    assert rec.duration_ms == 9000


def test_m3u8_live_playlist_is_dynamic_and_without_origin():
    rec = parse_m3u8("#EXTM3U\n#EXTINF:2,\na.ts\n#EXTINF:2,\nb.ts\n", base_dir="")
    assert rec.dynamic and rec.origin_ms is None
    assert [s.number for s in rec.tracks[0].segments] == [0, 1]


def test_m3u8_fmp4_map_is_init():
    rec = parse_m3u8('#EXTM3U\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:2,\n0.m4s\n#EXT-X-ENDLIST\n', base_dir="d")
    assert rec.tracks[0].init_key == "d/init.mp4"


def test_generated_hls(store, hls):
    rec = load_recording(store.fetch, hls)
    assert rec.kind == "hls" and rec.origin_ms == ORIGIN_MS and not rec.dynamic
    segs = rec.tracks[0].segments
    assert len(segs) == 10 and segs[0].key == "hls/seg00000.ts" and segs[-1].end_ms == 20000


def test_master_playlist_picks_highest_bandwidth(store, hls_master):
    fetched = []

    def fetch(key):
        fetched.append(key)
        return store.fetch(key)

    rec = load_recording(fetch, hls_master)
    assert fetched == ["hls-master/master.m3u8", "hls-master/v1/index.m3u8"]
    (track,) = rec.tracks
    assert track.segments[0].key == "hls-master/v1/seg00000.ts"
    assert track.bandwidth > 0 and track.codecs.startswith("avc1")
    with pytest.raises(ManifestError):
        parse_m3u8(store.fetch(hls_master), base_dir="hls-master")


def test_master_playlist_with_audio_rendition():
    files = {
        "m/master.m3u8": b"""#EXTM3U
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="en",DEFAULT=YES,URI="audio/en.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=900000,CODECS="avc1.4d401f,mp4a.40.2",AUDIO="aud"
video/hi.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=300000,CODECS="avc1.4d401f,mp4a.40.2",AUDIO="aud"
video/lo.m3u8
""",
        "m/video/hi.m3u8": b"#EXTM3U\n#EXTINF:4,\nhi0.ts\n#EXT-X-ENDLIST\n",
        "m/audio/en.m3u8": b"#EXTM3U\n#EXTINF:4,\nen0.aac\n#EXT-X-ENDLIST\n",
    }
    rec = load_recording(files.__getitem__, "m/master.m3u8")
    assert [(t.kind, t.segments[0].key) for t in rec.tracks] == [("video", "m/video/hi0.ts"), ("audio", "m/audio/en0.aac")]
    assert rec.tracks[0].bandwidth == 900000


def test_load_recording_sniffs_content():
    rec = load_recording(lambda k: MEDIA_PLAYLIST.encode(), "weird/name.mpd")
    assert rec.kind == "hls"
    rec = load_recording(lambda k: STATIC_MPD.encode(), "weird/name.m3u8")
    assert rec.kind == "dash"


@pytest.mark.parametrize("text", [b"", b"\x00\x01garbage", b"#EXTM3U\nseg.ts\n",
                                  b'#EXTM3U\n#EXT-X-KEY:METHOD=SAMPLE-AES,URI="k"\n#EXTINF:2,\na.ts\n'])
def test_garbage_playlists_raise_manifest_error(text):
    with pytest.raises(ManifestError):
        load_recording(lambda k: text, "x/index.m3u8")


def test_fetch_errors_propagate():
    def fetch(key):
        raise FileNotFoundError(key)

    with pytest.raises(FileNotFoundError):
        load_recording(fetch, "nope/index.m3u8")


# =========================================================================== real-world manifests
# (recordings from packagers other than tests/mediagen.py: see also tests/media/test_corpus.py)


class Bytes:
    """An in-memory bucket counting what is read from it, whole objects and byte ranges."""

    def __init__(self, objects: dict[str, bytes]):
        self.objects = objects
        self.whole: list[str] = []
        self.ranges: list[tuple[str, int, int]] = []

    def fetch(self, key: str) -> bytes:
        self.whole.append(key)
        return self.objects[key]

    def fetch_range(self, key: str, first: int, last: int) -> bytes:
        self.ranges.append((key, first, last))
        return self.objects[key][first:last + 1]

    @property
    def range_bytes(self) -> int:
        return sum(min(b, len(self.objects[k]) - 1) - a + 1 for k, a, b in self.ranges)


def box(typ: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), typ) + payload


def hdlr(handler: bytes) -> bytes:
    return box(b"hdlr", b"\0\0\0\0" + b"\0\0\0\0" + handler + b"\0" * 12 + b"name\0")


def init_segment(*handlers: bytes) -> bytes:
    traks = b"".join(box(b"trak", box(b"mdia", hdlr(h))) for h in handlers)
    return box(b"ftyp", b"isom\0\0\0\x01isomdash") + box(b"moov", box(b"mvhd", b"\0" * 100) + traks)


def sidx(refs, *, timescale: int, ept: int = 0, first_offset: int = 0, version: int = 0) -> bytes:
    """refs: (reference_type, referenced_size, duration)."""
    body = bytes([version, 0, 0, 0]) + struct.pack(">II", 1, timescale)
    body += struct.pack(">II" if version == 0 else ">QQ", ept, first_offset)
    body += struct.pack(">HH", 0, len(refs))
    for rtype, size, dur in refs:
        body += struct.pack(">III", (rtype << 31) | size, dur, 0x90000000)
    return box(b"sidx", body)


def media_chunk(n: int, size: int) -> bytes:
    return box(b"moof", b"\0" * 16) + box(b"mdat", bytes([n]) * (size - 32))


# --------------------------------------------------------------------------- DASH on-demand: SegmentBase + sidx
ONDEMAND_MPD = """<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-on-demand:2011"
     mediaPresentationDuration="PT8S">
  <Period><AdaptationSet contentType="video" mimeType="video/mp4" codecs="avc1.42c00d">
    <Representation id="v" bandwidth="100000"><BaseURL>video.mp4</BaseURL>
      <SegmentBase indexRange="{first}-{last}" timescale="90000" presentationTimeOffset="{pto}">
        <Initialization range="0-{init_last}"/></SegmentBase>
    </Representation></AdaptationSet></Period></MPD>"""


def ondemand_file(sizes=(1000, 1200, 900, 1100), dur=180000, version=0, ept=90000):
    init = init_segment(b"vide")
    index = sidx([(0, s, dur) for s in sizes], timescale=90000, ept=ept, version=version)
    chunks = b"".join(media_chunk(i, s) for i, s in enumerate(sizes))
    return init, index, init + index + chunks


@pytest.mark.parametrize("version", [0, 1])
def test_segment_base_index_range_reads_the_sidx_and_names_byte_ranges(version):
    init, index, data = ondemand_file(version=version)
    bucket = Bytes({"r/od/video.mp4": data, "r/od/manifest.mpd": ONDEMAND_MPD.format(
        first=len(init), last=len(init) + len(index) - 1, pto=90000, init_last=len(init) - 1).encode()})
    rec = load_recording(bucket.fetch, "r/od/manifest.mpd", fetch_range=bucket.fetch_range)
    # only the manifest is fetched whole; the media file only for its index range
    assert bucket.whole == ["r/od/manifest.mpd"]
    assert bucket.ranges == [("r/od/video.mp4", len(init), len(init) + len(index) - 1)]
    (video,) = rec.tracks
    assert video.init == Part("r/od/video.mp4", (0, len(init) - 1))
    assert video.init_name == f"r/od/video.mp4@0-{len(init) - 1}"
    first = len(init) + len(index)
    expected, pos = [], first
    for size in (1000, 1200, 900, 1100):
        expected.append((pos, pos + size - 1))
        pos += size
    assert [s.byte_range for s in video.segments] == expected
    # ept 1 s - presentationTimeOffset 1 s: the first subsegment starts at 0
    assert [(s.start_ms, s.end_ms) for s in video.segments] == [(0, 2000), (2000, 4000), (4000, 6000), (6000, 8000)]
    assert video.segments[1].name == f"r/od/video.mp4@{expected[1][0]}-{expected[1][1]}"


def test_segment_base_bytes_fetched_are_the_clip_bytes():
    init, index, data = ondemand_file(sizes=(5000, 5000, 5000, 5000, 5000, 5000), dur=90000)
    bucket = Bytes({"v.mp4": data, "m.mpd": ONDEMAND_MPD.replace("video.mp4", "v.mp4").replace("PT8S", "PT6S").format(
        first=len(init), last=len(init) + len(index) - 1, pto=0, init_last=len(init) - 1).encode()})
    rec = load_recording(bucket.fetch, "m.mpd", fetch_range=bucket.fetch_range)
    sel = select_segments(rec, 2500, 4500)  # overlaps the subsegments [2, 3) [3, 4) [4, 5) s
    parts = sel.parts()
    assert [p.byte_range for p in parts] == [(0, len(init) - 1)] + [
        (len(init) + len(index) + 5000 * i, len(init) + len(index) + 5000 * (i + 1) - 1) for i in (2, 3, 4)]
    assert sel.keys() == [p.name for p in parts]
    media = sel.media_bytes()
    assert media == len(init) + 3 * 5000
    fetched = bucket.range_bytes + media  # the index, then the parts
    assert fetched <= 1.05 * media
    assert fetched < 0.6 * len(data)


def test_hierarchical_and_daisy_chained_sidx_are_followed():
    init = init_segment(b"vide", b"soun")
    sizes = [700, 800, 900, 1000]
    sub1 = sidx([(0, sizes[0], 1000), (0, sizes[1], 1000)], timescale=1000, ept=0)
    sub2 = sidx([(0, sizes[2], 2000), (0, sizes[3], 2000)], timescale=2000, ept=4000)
    chunks = [media_chunk(i, s) for i, s in enumerate(sizes)]
    part1 = sub1 + chunks[0] + chunks[1]
    part2 = sub2 + chunks[2] + chunks[3]
    top = sidx([(1, len(part1), 2000), (1, len(part2), 2000)], timescale=1000)
    data = init + top + part1 + part2
    mpd = ONDEMAND_MPD.replace('codecs="avc1.42c00d"', 'codecs="avc1.42c00d,mp4a.40.2"').replace(
        ' presentationTimeOffset="{pto}"', "").replace('<Initialization range="0-{init_last}"/>', "")
    bucket = Bytes({"video.mp4": data})
    rec = parse_mpd(mpd.format(first=len(init), last=len(init) + len(top) - 1).replace("PT8S", "PT4S"),
                    base_dir="", fetch_range=bucket.fetch_range)
    (track,) = rec.tracks
    assert track.kind == "muxed"
    assert track.init == Part("video.mp4", (0, len(init) - 1))  # the bytes before the index
    starts = [len(init) + len(top) + len(sub1), len(init) + len(top) + len(sub1) + sizes[0],
              len(init) + len(top) + len(part1) + len(sub2), len(init) + len(top) + len(part1) + len(sub2) + sizes[2]]
    assert [s.byte_range for s in track.segments] == [(a, a + n - 1) for a, n in zip(starts, sizes, strict=True)]
    assert [(s.start_ms, s.end_ms) for s in track.segments] == [(0, 1000), (1000, 2000), (2000, 3000), (3000, 4000)]
    # the sub-indexes are read, never the media between them
    assert bucket.range_bytes < len(init) + len(top) + len(sub1) + len(sub2) + 64


def test_segment_base_without_index_range_finds_the_sidx_or_is_one_segment():
    init, index, data = ondemand_file()
    mpd = """<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" mediaPresentationDuration="PT8S"><Period>
      <AdaptationSet contentType="video"><Representation id="v" bandwidth="1"><BaseURL>video.mp4</BaseURL>
      <SegmentBase timescale="90000" presentationTimeOffset="90000"/></Representation></AdaptationSet></Period></MPD>"""
    bucket = Bytes({"d/video.mp4": data})
    rec = parse_mpd(mpd, base_dir="d", fetch_range=bucket.fetch_range)
    assert len(rec.tracks[0].segments) == 4 and rec.tracks[0].init == Part("d/video.mp4", (0, len(init) - 1))
    # without a way to read the index: the whole file is one segment of the period (as before)
    rec = parse_mpd(mpd, base_dir="d")
    assert [(s.key, s.byte_range, s.start_ms, s.end_ms) for s in rec.tracks[0].segments] == [
        ("d/video.mp4", None, 0, 8000)]


# --------------------------------------------------------------------------- DASH SegmentList with byte ranges
def test_segment_list_media_ranges_without_media_use_the_base_url_file():
    mpd = """<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" mediaPresentationDuration="PT5S"><Period>
      <BaseURL>media/</BaseURL>
      <AdaptationSet contentType="video"><Representation id="0" bandwidth="1">
        <BaseURL>rec-stream0.mp4</BaseURL>
        <SegmentList timescale="1000000" duration="2000000" startNumber="1">
          <Initialization range="0-809" />
          <SegmentURL mediaRange="810-6875" indexRange="810-861" />
          <SegmentURL mediaRange="6876-12802" indexRange="6876-6927" />
          <SegmentURL mediaRange="12803-18811" />
        </SegmentList></Representation></AdaptationSet></Period></MPD>"""
    rec = parse_mpd(mpd, base_dir="rec/1")
    (video,) = rec.tracks
    assert video.init == Part("rec/1/media/rec-stream0.mp4", (0, 809))
    assert [(s.key, s.byte_range, s.start_ms, s.end_ms) for s in video.segments] == [
        ("rec/1/media/rec-stream0.mp4", (810, 6875), 0, 2000),
        ("rec/1/media/rec-stream0.mp4", (6876, 12802), 2000, 4000),
        ("rec/1/media/rec-stream0.mp4", (12803, 18811), 4000, 5000),
    ]
    sel = select_segments(rec, 2500, 4500)
    assert sel.keys() == ["rec/1/media/rec-stream0.mp4@0-809", "rec/1/media/rec-stream0.mp4@6876-12802",
                          "rec/1/media/rec-stream0.mp4@12803-18811"]
    assert sel.media_bytes() == 810 + (12802 - 6876 + 1) + (18811 - 12803 + 1)


def test_segment_list_media_ranges_with_media_and_initialization_source():
    mpd = """<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" mediaPresentationDuration="PT4S"><Period>
      <AdaptationSet contentType="audio"><BaseURL>https://cdn.example.com/b/audio/</BaseURL>
        <Representation id="a" bandwidth="1" codecs="mp4a.40.2">
        <SegmentList timescale="1" duration="2">
          <Initialization sourceURL="all.mp4" range="0-99"/>
          <SegmentURL media="all.mp4" mediaRange="100-199"/>
          <SegmentURL media="../other/all.mp4" mediaRange="0-99"/>
        </SegmentList></Representation></AdaptationSet></Period></MPD>"""
    rec = parse_mpd(mpd, base_dir="ignored")
    (audio,) = rec.tracks
    assert audio.kind == "audio" and audio.init == Part("b/audio/all.mp4", (0, 99))
    assert [(s.key, s.byte_range) for s in audio.segments] == [("b/audio/all.mp4", (100, 199)),
                                                               ("b/other/all.mp4", (0, 99))]


@pytest.mark.parametrize("bad", ['mediaRange="12-3"', 'mediaRange="a-b"', 'mediaRange="5"'])
def test_invalid_byte_ranges_raise_manifest_error(bad):
    mpd = f"""<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" mediaPresentationDuration="PT2S"><Period>
      <AdaptationSet contentType="video"><Representation id="v" bandwidth="1"><BaseURL>f.mp4</BaseURL>
      <SegmentList timescale="1" duration="2"><SegmentURL {bad}/></SegmentList>
      </Representation></AdaptationSet></Period></MPD>"""
    with pytest.raises(ManifestError):
        parse_mpd(mpd, base_dir="")


# --------------------------------------------------------------------------- DASH multi-period
MULTI_PERIOD_MPD = """<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" mediaPresentationDuration="PT12S">
  <Period id="p0" duration="PT6S"><BaseURL>p0/</BaseURL>
    <AdaptationSet contentType="video"><Representation id="0" bandwidth="2" codecs="avc1.42c00c">
      <SegmentTemplate timescale="12800" initialization="init-$RepresentationID$.m4s" media="v-$Time$.m4s">
        <SegmentTimeline><S t="0" d="25600" r="2"/></SegmentTimeline></SegmentTemplate>
    </Representation></AdaptationSet>
    <AdaptationSet contentType="audio"><Representation id="1" bandwidth="1" codecs="mp4a.40.2">
      <SegmentTemplate timescale="48000" initialization="init-$RepresentationID$.m4s" media="a-$Time$.m4s">
        <SegmentTimeline><S t="0" d="96000" r="2"/></SegmentTimeline></SegmentTemplate>
    </Representation></AdaptationSet>
  </Period>
  <Period id="p1"><BaseURL>p1/</BaseURL>
    <AdaptationSet contentType="video"><Representation id="0" bandwidth="2" codecs="avc1.42c00c">
      <SegmentTemplate timescale="1000000" duration="2000000" presentationTimeOffset="1000000000"
          initialization="init-stream$RepresentationID$.m4s" media="chunk-$RepresentationID$-$Number%05d$.m4s"/>
    </Representation></AdaptationSet>
    <AdaptationSet contentType="audio"><Representation id="1" bandwidth="1" codecs="mp4a.40.2">
      <SegmentTemplate timescale="1000000" duration="2000000" presentationTimeOffset="1000000000"
          initialization="init-stream$RepresentationID$.m4s" media="chunk-$RepresentationID$-$Number%05d$.m4s"/>
    </Representation></AdaptationSet>
  </Period>
</MPD>"""


def test_multi_period_with_own_inits_timescales_templates_and_offsets_is_one_timeline():
    rec = parse_mpd(MULTI_PERIOD_MPD, base_dir="rec")
    video, audio = rec.tracks
    # Period p1 starts where p0's @duration ends; its media time 1000 s is its start (presentationTimeOffset)
    assert [(s.key, s.start_ms, s.end_ms) for s in video.segments] == [
        ("rec/p0/v-0.m4s", 0, 2000), ("rec/p0/v-25600.m4s", 2000, 4000), ("rec/p0/v-51200.m4s", 4000, 6000),
        ("rec/p1/chunk-0-00001.m4s", 6000, 8000), ("rec/p1/chunk-0-00002.m4s", 8000, 10000),
        ("rec/p1/chunk-0-00003.m4s", 10000, 12000)]
    assert [s.media_start_ms for s in video.segments] == [0, 2000, 4000, 1000000, 1002000, 1004000]
    # the periods' initialization segments differ: every segment names its own
    assert video.init_key is None and audio.init_key is None
    assert [video.init_of(s).key for s in video.segments] == ["rec/p0/init-0.m4s"] * 3 + ["rec/p1/init-stream0.m4s"] * 3
    assert rec.duration_ms == 12000
    # a clip across the boundary: each init before the first segment needing it
    sel = select_segments(rec, 5000, 7000)
    assert sel.keys() == ["rec/p0/init-0.m4s", "rec/p0/v-51200.m4s", "rec/p1/init-stream0.m4s",
                          "rec/p1/chunk-0-00001.m4s", "rec/p0/init-1.m4s", "rec/p0/a-192000.m4s",
                          "rec/p1/init-stream1.m4s", "rec/p1/chunk-1-00001.m4s"]
    assert sel.lack_ms == 0
    # without p1's initialization its segments cannot be read: they count as lacking
    assert lack_length(sel, ["rec/p1/init-stream0.m4s"]) == 1000
    assert lack_length(sel, ["rec/p0/init-1.m4s"]) == 0  # (audio does not count)


def test_multi_period_shared_init_stays_on_the_track():
    rec = parse_mpd(MULTI_PERIOD_MPD.replace("init-stream$RepresentationID$", "init-$RepresentationID$")
                    .replace("<BaseURL>p1/</BaseURL>", "<BaseURL>p0/</BaseURL>"), base_dir="rec")
    assert rec.tracks[0].init_key == "rec/p0/init-0.m4s"
    assert all(s.init is None for s in rec.tracks[0].segments)


# --------------------------------------------------------------------------- representation choice
CHOICE_MPD = """<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" mediaPresentationDuration="PT4S"><Period>
  <AdaptationSet id="1" contentType="video" mimeType="video/mp2t">
    <Representation id="video_0" bandwidth="2775" width="320" height="180" codecs="avc1">
      <SegmentTemplate media="video_0_$Number$.ts" duration="2"/></Representation></AdaptationSet>
  <AdaptationSet id="2" contentType="audio">
    <Representation id="audio_0" bandwidth="0" audioSamplingRate="48000" mimeType="video/mp2t" codecs="mp4a">
      <SegmentTemplate media="audio_0_$Number$.ts" duration="2"/></Representation></AdaptationSet>
  <AdaptationSet id="3" contentType="image" mimeType="image/jpeg">
    <EssentialProperty schemeIdUri="http://dashif.org/thumbnail_tile" value="10x1"/>
    <Representation id="thumbs" bandwidth="99999999" width="1600" height="90">
      <SegmentTemplate media="thumb_$Number$.jpg" duration="2"/></Representation></AdaptationSet>
  <AdaptationSet id="4" mimeType="application/mp4" codecs="stpp">
    <Representation id="subs" bandwidth="99999999"><SegmentTemplate media="s_$Number$.mp4" duration="2"/>
    </Representation></AdaptationSet>
  <AdaptationSet id="5" mimeType="video/mp4">
    <EssentialProperty schemeIdUri="http://dashif.org/guidelines/trickmode" value="1"/>
    <Representation id="trick" bandwidth="99999999" width="320" height="180" codecs="avc1.42c00c">
      <SegmentTemplate media="t_$Number$.mp4" duration="2"/></Representation></AdaptationSet>
  <AdaptationSet id="6" mimeType="application/x-emsg">
    <Representation id="meta" bandwidth="99999999"><SegmentTemplate media="m_$Number$" duration="2"/>
    </Representation></AdaptationSet>
</Period></MPD>"""


def test_representation_kind_from_content_type_before_mime_type_and_non_av_sets_ignored():
    rec = parse_mpd(CHOICE_MPD, base_dir="g")
    assert [(t.kind, t.representation_id) for t in rec.tracks] == [("video", "video_0"), ("audio", "audio_0")]
    assert rec.tracks[1].segments[0].key == "g/audio_0_1.ts"
    assert rec.tracks[0].init_key is None  # MPEG-TS segments


def test_representation_kind_from_codecs_then_from_the_media_itself():
    mpd = """<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" mediaPresentationDuration="PT2S"><Period>
      <AdaptationSet mimeType="video/mp4"><Representation id="x" bandwidth="5">
        <SegmentTemplate media="x-$Number$.m4s" initialization="x-init.mp4" duration="2"/></Representation>
      </AdaptationSet>
      <AdaptationSet mimeType="video/mp4"><Representation id="y" bandwidth="9">
        <SegmentTemplate media="y-$Number$.m4s" initialization="y-init.mp4" duration="2"/></Representation>
      </AdaptationSet>
      <AdaptationSet mimeType="video/mp4" codecs="mp4a.40.2"><Representation id="z" bandwidth="7">
        <SegmentTemplate media="z-$Number$.m4s" initialization="z-init.mp4" duration="2"/></Representation>
      </AdaptationSet></Period></MPD>"""
    bucket = Bytes({"x-init.mp4": init_segment(b"soun"), "y-init.mp4": init_segment(b"vide")})
    rec = parse_mpd(mpd, base_dir="", fetch_range=bucket.fetch_range)
    # y: video by its hdlr; z: audio by @codecs (and the highest bandwidth audio, over x: audio by its hdlr)
    assert [(t.kind, t.representation_id) for t in rec.tracks] == [("video", "y"), ("audio", "z")]
    assert {k for k, _, _ in bucket.ranges} == {"x-init.mp4", "y-init.mp4"}  # z needed no probe
    # without the media, the mimeType decides: all three look like video, the highest bandwidth wins
    rec = parse_mpd(mpd, base_dir="")
    assert [(t.kind, t.representation_id) for t in rec.tracks] == [("video", "y"), ("audio", "z")]


def test_representation_kind_of_ts_media_from_its_pmt():
    def ts_packet(pid: int, payload: bytes) -> bytes:
        return (bytes([0x47, 0x40 | (pid >> 8), pid & 0xFF, 0x10, 0x00]) + payload).ljust(188, b"\xff")

    pat = bytes([0x00, 0xB0, 13, 0, 1, 0xC1, 0, 0, 0, 1, 0xE1, 0x00]) + b"\0\0\0\0"
    pmt = bytes([0x02, 0xB0, 18, 0, 1, 0xC1, 0, 0, 0xE1, 0x01, 0xF0, 0x00, 0x0F, 0xE1, 0x01, 0xF0, 0x00]) + b"\0\0\0\0"
    segment = ts_packet(0, pat) + ts_packet(0x100, pmt)
    mpd = """<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" mediaPresentationDuration="PT2S"><Period>
      <AdaptationSet mimeType="video/mp2t"><Representation id="v" bandwidth="2" width="320">
        <SegmentTemplate media="v-$Number$.ts" duration="2"/></Representation></AdaptationSet>
      <AdaptationSet mimeType="video/mp2t"><Representation id="a" bandwidth="1">
        <SegmentTemplate media="a-$Number$.ts" duration="2"/></Representation></AdaptationSet></Period></MPD>"""
    bucket = Bytes({"a-1.ts": segment, "v-1.ts": b"\x47" + b"\0" * 187})
    rec = parse_mpd(mpd, base_dir="", fetch_range=bucket.fetch_range)
    assert [(t.kind, t.representation_id) for t in rec.tracks] == [("video", "v"), ("audio", "a")]


# --------------------------------------------------------------------------- StartTime without an origin
EPOCH_MPD = """<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT6S"{ast}>
  <Period start="PT0S">
    <AdaptationSet contentType="video"><Representation id="0" bandwidth="1" codecs="avc1">
      <SegmentTemplate timescale="12800" media="v-$Time$.m4s" initialization="v.m4s">
        <SegmentTimeline><S t="21760000000269" d="25600" r="2"/></SegmentTimeline></SegmentTemplate>
    </Representation></AdaptationSet>
    <AdaptationSet contentType="audio"><Representation id="1" bandwidth="1" codecs="mp4a.40.2">
      <SegmentTemplate timescale="48000" media="a-$Time$.m4s" initialization="a.m4s">
        <SegmentTimeline><S t="81600000000000" d="96000" r="2"/></SegmentTimeline></SegmentTemplate>
    </Representation></AdaptationSet>
  </Period></MPD>"""


def test_without_origin_recording_time_starts_at_the_first_media_segment():
    rec = parse_mpd(EPOCH_MPD.format(ast=""), base_dir="")
    video, audio = rec.tracks
    assert rec.origin_ms is None
    assert [s.start_ms for s in video.segments] == [0, 2000, 4000]
    # the audio keeps its place relative to the video (it starts 269 / 12800 s before)
    assert abs(audio.segments[0].start_ms - (-269 / 12.8)) < 1e-6
    assert video.segments[0].key == "v-21760000000269.m4s"
    assert rec.duration_ms == 6000
    sel = select_segments(rec, 0, 1000)
    assert [s.key for s in sel.tracks[0].segments] == ["v-21760000000269.m4s"]
    # with a wall-clock origin the manifest's times stand
    rec = parse_mpd(EPOCH_MPD.format(ast=' availabilityStartTime="1970-01-01T00:00:00Z"'), base_dir="")
    assert rec.origin_ms == 0 and rec.tracks[0].segments[0].start_ms == pytest.approx(1.7e12 + 269 / 12.8)


# --------------------------------------------------------------------------- HLS
HLS_BYTERANGES = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:10
#EXT-X-DISCONTINUITY-SEQUENCE:3
#EXT-X-MAP:URI="all.mp4",BYTERANGE="1297@0"
#EXTINF:2.0,
#EXT-X-BYTERANGE:39363@1297
all.mp4
#EXTINF:2.0,
#EXT-X-BYTERANGE:38937
all.mp4
#EXT-X-BYTERANGE:100
#EXTINF:2.0,
all.mp4
#EXTINF:2.0,
#EXT-X-BYTERANGE:500@0
other.mp4
#EXTINF:2.0,
#EXT-X-BYTERANGE:600
other.mp4
#EXT-X-ENDLIST
"""


def test_hls_byte_ranges_with_and_without_offsets_and_map_byterange():
    rec = parse_m3u8(HLS_BYTERANGES, base_dir="h")
    (track,) = rec.tracks
    assert track.init == Part("h/all.mp4", (0, 1296))
    assert [(s.key, s.byte_range, s.number) for s in track.segments] == [
        ("h/all.mp4", (1297, 40659), 10), ("h/all.mp4", (40660, 79596), 11), ("h/all.mp4", (79597, 79696), 12),
        ("h/other.mp4", (0, 499), 13), ("h/other.mp4", (500, 1099), 14)]
    sel = select_segments(rec, 2000, 4000, lookahead_ms=0)  # (exactly the overlap)
    assert sel.keys() == ["h/all.mp4@0-1296", "h/all.mp4@40660-79596"]
    assert sel.media_bytes() == 1297 + 38937
    assert parse_m3u8('#EXTM3U\n#EXT-X-MAP:URI="i.mp4",BYTERANGE="800"\n#EXTINF:2,\n0.m4s\n',
                      base_dir="").tracks[0].init == Part("i.mp4", (0, 799))


@pytest.mark.parametrize("line", ["#EXT-X-BYTERANGE:abc", "#EXT-X-BYTERANGE:0@5", "#EXT-X-BYTERANGE:-5"])
def test_hls_bad_byte_ranges_raise(line):
    with pytest.raises(ManifestError):
        parse_m3u8(f"#EXTM3U\n#EXTINF:2,\n{line}\na.ts\n", base_dir="")


HLS_MIXED = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:2
#EXT-X-DISCONTINUITY-SEQUENCE:7
#EXT-X-PROGRAM-DATE-TIME:2024-03-04T05:06:07.000Z
#EXTINF:2.0,
ts0.ts
#EXTINF:2.0,
ts1.ts
#EXT-X-DISCONTINUITY
#EXT-X-MAP:URI="init-a.mp4"
#EXTINF:2.0,
a0.m4s
#EXT-X-GAP
#EXTINF:2.0,
a1.m4s
#EXTINF:2.0,
a2.m4s
#EXT-X-DISCONTINUITY
#EXT-X-MAP:URI="init-b.mp4"
#EXTINF:2.0,
b0.m4s
#EXT-X-ENDLIST
"""


def test_hls_mixed_ts_and_fmp4_with_changing_map_gap_and_discontinuity_sequence():
    rec = parse_m3u8(HLS_MIXED, base_dir="m")
    (track,) = rec.tracks
    assert rec.origin_ms == epoch_ms("2024-03-04T05:06:07Z") and rec.duration_ms == 12000
    assert track.init_key is None  # not one initialization for all
    assert [(s.key, s.start_ms, track.init_of(s) and track.init_of(s).key) for s in track.segments] == [
        ("m/ts0.ts", 0, None), ("m/ts1.ts", 2000, None), ("m/a0.m4s", 4000, "m/init-a.mp4"),
        # a1.m4s is an EXT-X-GAP: not listed, its time lacking
        ("m/a2.m4s", 8000, "m/init-a.mp4"), ("m/b0.m4s", 10000, "m/init-b.mp4")]
    sel = select_segments(rec, 1000, 11000)
    assert sel.lack_ms == 2000
    assert sel.keys() == ["m/ts0.ts", "m/ts1.ts", "m/init-a.mp4", "m/a0.m4s", "m/a2.m4s", "m/init-b.mp4", "m/b0.m4s"]
    assert lack_length(sel, ["m/init-b.mp4"]) == 3000
    assert lack_length(sel, ["m/ts1.ts"]) == 4000


def test_hls_gap_counts_into_lack_length():
    rec = parse_m3u8("#EXTM3U\n#EXTINF:2,\na.ts\n#EXT-X-GAP\n#EXTINF:2,\nb.ts\n#EXTINF:2,\nc.ts\n#EXT-X-ENDLIST\n",
                     base_dir="")
    sel = select_segments(rec, 1000, 5000)
    assert sel.keys() == ["a.ts", "c.ts"] and sel.lack_ms == 2000 and lack_length(sel, ["c.ts"]) == 3000


# --------------------------------------------------------------------------- HLS AES-128
HLS_AES = """#EXTM3U
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-KEY:METHOD=AES-128,URI="keys/k1.key",IV=0x0102
#EXTINF:2,
a.ts
#EXT-X-KEY:METHOD=AES-128,URI="../shared/k2.key",KEYFORMAT="identity"
#EXTINF:2,
b.ts
#EXT-X-GAP
#EXTINF:2,
gap.ts
#EXTINF:2,
#EXT-X-BYTERANGE:1000@0
all.ts
#EXTINF:2,
#EXT-X-BYTERANGE:1000
all.ts
#EXT-X-KEY:METHOD=NONE
#EXTINF:2,
clear.ts
#EXT-X-KEY:METHOD=AES-128,URI="https://keys.example.com/rec/k3.key",IV=0X000000000000000000000000000000fF
#EXTINF:2,
e.ts
#EXT-X-ENDLIST
"""


def iv(n: int) -> bytes:
    return n.to_bytes(16, "big")


def test_hls_aes_128_keys_and_ivs_per_segment():
    """The key URI is resolved like a segment's; without IV, the IV is the segment's media sequence
    number (EXT-X-GAP segments count, byte ranges too); METHOD=NONE ends the encryption."""
    (track,) = parse_m3u8(HLS_AES, base_dir="rec/hls").tracks
    assert [(s.key, s.number, s.encryption) for s in track.segments] == [
        ("rec/hls/a.ts", 7, Encryption("rec/hls/keys/k1.key", iv(0x0102))),
        ("rec/hls/b.ts", 8, Encryption("rec/shared/k2.key", iv(8))),
        ("rec/hls/all.ts", 10, Encryption("rec/shared/k2.key", iv(10))),
        ("rec/hls/all.ts", 11, Encryption("rec/shared/k2.key", iv(11))),
        ("rec/hls/clear.ts", 12, None),
        ("rec/hls/e.ts", 13, Encryption("rec/k3.key", iv(0xFF))),
    ]
    assert track.segments[3].part == Part("rec/hls/all.ts", (1000, 1999), Encryption("rec/shared/k2.key", iv(11)))


def test_hls_aes_128_keys_are_downloaded_before_what_they_decrypt():
    rec = parse_m3u8(HLS_AES, base_dir="r")
    sel = select_segments(rec, 0, rec.duration_ms)
    assert sel.keys() == ["r/keys/k1.key", "r/a.ts", "shared/k2.key", "r/b.ts", "r/all.ts@0-999", "r/all.ts@1000-1999",
                          "r/clear.ts", "rec/k3.key", "r/e.ts"]
    assert sel.decryption_keys() == ["r/keys/k1.key", "shared/k2.key", "rec/k3.key"]
    ranged = select_segments(rec, 6000, 10000, lookahead_ms=0)  # (exactly the overlap)
    assert ranged.keys() == ["shared/k2.key", "r/all.ts@0-999", "r/all.ts@1000-1999"]
    assert ranged.media_bytes() == 2000  # the media, not the key
    # a segment whose key is missing lacks, as one whose file is missing
    assert lack_length(sel, ["shared/k2.key"]) == 2000 + 2000 + 2000 + 2000  # b, the gap, both ranges
    assert lack_length(ranged, ["r/all.ts@0-999"]) == 2000


def test_hls_aes_128_map_is_encrypted_with_the_key_in_effect():
    rec = parse_m3u8('#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI="k",IV=0x1\n#EXT-X-MAP:URI="init.mp4"\n'
                     '#EXTINF:2,\n0.m4s\n#EXTINF:2,\n1.m4s\n', base_dir="r")
    (track,) = rec.tracks
    assert track.init == Part("r/init.mp4", None, Encryption("r/k", iv(1)))
    assert select_segments(rec, 0, 4000).keys() == ["r/k", "r/init.mp4", "r/0.m4s", "r/1.m4s"]


def test_hls_aes_128_key_of_a_variant_is_relative_to_the_variant():
    files = {
        "rec/master.m3u8": b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\nhi/index.m3u8\n",
        "rec/hi/index.m3u8": b'#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI="key.bin"\n#EXTINF:2,\n0.ts\n#EXT-X-ENDLIST\n',
    }
    rec = load_recording(files.__getitem__, "rec/master.m3u8")
    assert rec.tracks[0].segments[0].encryption == Encryption("rec/hi/key.bin", iv(0))


@pytest.mark.parametrize("tag", [
    '#EXT-X-KEY:METHOD=SAMPLE-AES,URI="k"',
    '#EXT-X-KEY:METHOD=AES-128',
    '#EXT-X-KEY:METHOD=AES-128,URI="k",IV=0xZZ',
    '#EXT-X-KEY:METHOD=AES-128,URI="k",IV=12',
    f'#EXT-X-KEY:METHOD=AES-128,URI="k",IV=0x{"1" * 33}',
    '#EXT-X-KEY:METHOD=AES-128,URI="skd://k",KEYFORMAT="com.apple.streamingkeydelivery"',
    '#EXT-X-KEY:METHOD=AES-128,URI="k"\n#EXT-X-MAP:URI="init.mp4"',  # an encrypted MAP needs an IV
])
def test_hls_unsupported_or_bad_keys_raise(tag):
    with pytest.raises(ManifestError):
        parse_m3u8(f"#EXTM3U\n{tag}\n#EXTINF:2,\na.ts\n", base_dir="")


# --------------------------------------------------------------------------- Part / Segment / Selection
def test_parts_names_and_selection_contract():
    assert part_name("a/b.mp4", None) == "a/b.mp4" and part_name("a/b.mp4", (0, 9)) == "a/b.mp4@0-9"
    assert Part("k", (10, 19)).size == 10 and Part("k").size is None
    seg = Segment(key="k", start_ms=0, end_ms=1, number=1, byte_range=(5, 9))
    assert seg.name == "k@5-9" and seg.part == Part("k", (5, 9))
    # whole objects: keys() is unchanged (the storage keys), media_bytes unknown
    whole = Track(kind="video", init_key="i", segments=(Segment(key="s", start_ms=0, end_ms=2000, number=1),))
    sel = select_segments(rec_of(whole), 0, 1000)
    assert sel.keys() == ["i", "s"] and sel.parts() == [Part("i"), Part("s")] and sel.media_bytes() is None


def rec_of(*tracks):
    return Recording(kind="dash", origin_ms=None, tracks=tracks, duration_ms=tracks[0].segments[-1].end_ms)
