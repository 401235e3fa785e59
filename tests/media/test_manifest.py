import datetime as dt

import pytest

from exports.media import ManifestError, MediaError, load_recording, parse_m3u8, parse_mpd
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
    # highest bandwidth video, first audio representation
    assert (video.representation_id, video.bandwidth, video.codecs) == ("high", 3000000, "avc1.640028")
    assert audio.representation_id == "a1" and audio.kind == "audio"
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
    assert [s.key for s in audio.segments][:2] == ["rec/abc/media/a1/0.m4s", "rec/abc/media/a1/96000.m4s"]
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


@pytest.mark.parametrize("text", [b"", b"\x00\x01garbage", b"#EXTM3U\nseg.ts\n", b'#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI="k"\n#EXTINF:2,\na.ts\n'])
def test_garbage_playlists_raise_manifest_error(text):
    with pytest.raises(ManifestError):
        load_recording(lambda k: text, "x/index.m3u8")


def test_fetch_errors_propagate():
    def fetch(key):
        raise FileNotFoundError(key)

    with pytest.raises(FileNotFoundError):
        load_recording(fetch, "nope/index.m3u8")
