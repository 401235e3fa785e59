"""The media engine on recordings made by real packagers (tests/corpus.py): every recording is
read, a clip is selected, "downloaded" as the export pipeline does (each Part of the selection,
byte ranges and AES-128 keys included, into its own file), cut (keyframe and accurate modes)
and encoded (H.264), to MPEG-TS and to MP4, and the result is checked the way a viewer would see
it: which frame comes first (the stamps of tests/mediagen.py), how long it lasts, audio and video
both there, starting and ending together, and every frame decoding."""
import inspect
import itertools
import os
from pathlib import Path

import av
import pytest

from exports.media import (
    KeyUnavailable,
    MediaError,
    cut_clip,
    encode_selection,
    lack_length,
    load_recording,
    select_segments,
)
from exports.media._decrypt import EncryptedFile
from tests import corpus, mediagen

NAMES = list(corpus.ENTRIES)
GOP_MS = corpus.PARAMS["gop_s"] * 1000.0
FRAME_MS = corpus.FRAME_MS
AUDIO_FRAME_MS = 1024 / 48.0
CLIP_MS = 3000
# a start inside a GOP (the clip also crosses a segment boundary, and the Period boundary of the
# multi-period recording at 6 s), and a start on a GOP boundary
STARTS = {"mid-gop": 5080.0, "gop-boundary": 4000.0}
CONTAINERS = ["ts", "mp4"]
KEYFRAME_MODE = "mode" in inspect.signature(cut_clip).parameters
# recordings that change packaging at 6 s (MPEG-TS / fMP4), and recordings encrypted with AES-128
SWITCHING = ["edited-hls-mixed", "edited-hls-mixed-fmp4-first", "edited-hls-mixed-stale-map"]
ENCRYPTED = ["ffmpeg-hls-aes", "edited-hls-aes-iv-none", "ffmpeg-hls-aes-single", "edited-hls-aes-ranges",
             "ffmpeg-hls-aes-rekey"]
# the recording in the clear packaged like each encrypted one: the same segments or byte ranges
CLEAR_TWIN = {"ffmpeg-hls-aes": "ffmpeg-hls-ts", "edited-hls-aes-iv-none": "ffmpeg-hls-ts",
              "ffmpeg-hls-aes-single": "ffmpeg-hls-single", "edited-hls-aes-ranges": "ffmpeg-hls-ts",
              "ffmpeg-hls-aes-rekey": "ffmpeg-hls-ts"}

# what still fails, and why: (name, test) -> reason
KNOWN_FAILURES: dict[tuple[str, str], str] = {}


def names_for(test: str) -> list:
    return [pytest.param(n, marks=pytest.mark.xfail(reason=KNOWN_FAILURES[(n, test)], strict=False))
            if (n, test) in KNOWN_FAILURES else n for n in NAMES]


class Bucket:
    """The corpus directory playing the storage bucket; counts the bytes read from it."""

    def __init__(self, root: str):
        self.root = root
        self.bytes = 0

    def fetch(self, key: str) -> bytes:
        with open(os.path.join(self.root, key), "rb") as f:
            data = f.read()
        self.bytes += len(data)
        return data

    def fetch_range(self, key: str, first: int, last: int) -> bytes:
        with open(os.path.join(self.root, key), "rb") as f:
            f.seek(first)
            data = f.read(last - first + 1)
        self.bytes += len(data)
        return data

    def download(self, selection, dest: str) -> dict[str, str]:
        """What exports/steps.py download() does: each part (object or byte range) into its own file."""
        files = {}
        for part in selection.parts():
            path = os.path.join(dest, part.name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            data = self.fetch_range(part.key, *part.byte_range) if part.byte_range else self.fetch(part.key)
            with open(path, "wb") as f:
                f.write(data)
            files[part.name] = path
        return files


def built(name: str) -> corpus.Built:
    reason = corpus.missing_tool(name)
    if reason:
        pytest.skip(reason)
    return corpus.build(name)


def load(name: str):
    b = built(name)
    bucket = Bucket(b.root)
    rec = load_recording(bucket.fetch, b.manifest_key, now_ms=b.now_ms, fetch_range=bucket.fetch_range)
    return b, bucket, rec


def cut_keyframe(selection, files, out_path, container="ts"):
    if KEYFRAME_MODE:
        return cut_clip(selection=selection, files=files, out_path=out_path, container=container, mode="keyframe")
    return cut_clip(selection=selection, files=files, out_path=out_path, container=container, accurate=False)


# --------------------------------------------------------------------------- what a viewer sees
def frame_index(stamp: tuple[int, int]) -> int:
    return stamp[0] * corpus.PARAMS["fps"] + stamp[1]


def viewed(path: str) -> dict:
    """Decode everything: stamps of the video frames (presentation order), where both streams start
    and end (the frames presented: an MP4 edit list hides the audio pre-roll) and how long the
    audio lasts."""
    out = {"stamps": [], "video_start": None, "audio_start": None, "video_end": None, "audio_end": None,
           "audio_ms": 0.0, "audio_frames": 0}
    with av.open(path) as c:
        assert c.streams.video, "no video stream"
        assert c.streams.audio, "no audio stream"
        vs, as_ = c.streams.video[0], c.streams.audio[0]
        frames = []
        for packet in c.demux(vs, as_):
            for frame in packet.decode():  # raises on a frame that does not decode
                start = float(frame.pts * frame.time_base) * 1000.0
                if packet.stream is vs:
                    frames.append((frame.pts, mediagen.read_stamp(frame)))
                    kind, end = "video", start + FRAME_MS
                else:
                    out["audio_frames"] += 1
                    out["audio_ms"] += frame.samples * 1000.0 / frame.sample_rate
                    kind, end = "audio", start + frame.samples * 1000.0 / frame.sample_rate
                out[f"{kind}_start"] = min(start, out[f"{kind}_start"] if out[f"{kind}_start"] is not None else start)
                out[f"{kind}_end"] = max(end, out[f"{kind}_end"] if out[f"{kind}_end"] is not None else end)
        out["stamps"] = [s for _, s in sorted(frames)]
    return out


def check_viewable(v: dict, *, frames: int) -> None:
    stamps = v["stamps"]
    assert abs(len(stamps) - frames) <= 1, f"{len(stamps)} frames, expected {frames}"
    idx = [frame_index(s) for s in stamps]
    assert idx == list(range(idx[0], idx[0] + len(idx))), f"frames are not consecutive: {stamps}"
    assert v["audio_frames"] and abs(v["audio_ms"] - len(stamps) * FRAME_MS) <= 2.5 * AUDIO_FRAME_MS + FRAME_MS
    assert abs(v["audio_start"] - v["video_start"]) <= AUDIO_FRAME_MS + 1, (v["audio_start"], v["video_start"])
    assert abs(v["audio_end"] - v["video_end"]) <= AUDIO_FRAME_MS + 1, (v["audio_end"], v["video_end"])


# --------------------------------------------------------------------------- tests
@pytest.mark.parametrize("name", NAMES)
def test_recording_is_read(name):
    b, _bucket, rec = load(name)
    assert rec.tracks[0].kind in ("video", "muxed")
    assert rec.tracks[0].kind == "muxed" or [t.kind for t in rec.tracks] == ["video", "audio"]
    assert rec.dynamic == b.entry.dynamic
    if not b.entry.dynamic:
        assert abs(rec.duration_ms - corpus.PARAMS["duration_s"] * 1000) <= 200
    for t in rec.tracks:
        segs = t.segments
        assert segs[0].start_ms <= 25 and len(segs) >= 5
        # one timeline: no holes, no overlaps (beyond an audio frame)
        assert all(abs(a.end_ms - b_.start_ms) <= AUDIO_FRAME_MS for a, b_ in itertools.pairwise(segs))
        if b.entry.byte_ranges:
            assert all(s.byte_range is not None for s in segs)


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("where", list(STARTS))
@pytest.mark.parametrize("name", names_for("keyframe"))
def test_keyframe_cut(name, where, container, tmp_path):
    _b, bucket, rec = load(name)
    start = STARTS[where]
    sel = select_segments(rec, start, start + CLIP_MS)
    assert sel.lack_ms == 0
    files = bucket.download(sel, str(tmp_path / "files"))
    clip = str(tmp_path / f"clip.{container}")
    info = cut_keyframe(sel, files, clip, container)
    v = viewed(clip)
    first = v["stamps"][0]
    # the keyframe at or before the start (GOPs start on even seconds; the recording's first
    # frame may sit up to a frame after recording time 0)
    assert first[1] == 0 and first[0] % 2 == 0, first
    keyframe_at = corpus.frame_ms(*first)
    assert start - GOP_MS - FRAME_MS < keyframe_at <= start + FRAME_MS
    assert 0 <= info.lead_ms < GOP_MS
    assert abs((start - info.lead_ms) - keyframe_at) <= FRAME_MS  # the lead it reports is the one seen
    expected_frames = round((CLIP_MS + info.lead_ms) / FRAME_MS)
    check_viewable(v, frames=expected_frames)
    assert abs(info.duration_ms - expected_frames * FRAME_MS) <= FRAME_MS


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("where", list(STARTS))
@pytest.mark.parametrize("name", names_for("encode"))
def test_encode_selection(name, where, container, tmp_path):
    _b, bucket, rec = load(name)
    start = STARTS[where]
    sel = select_segments(rec, start, start + CLIP_MS)
    files = bucket.download(sel, str(tmp_path / "files"))
    clip = str(tmp_path / f"clip.{container}")
    info = encode_selection(selection=sel, files=files, out_path=clip, codec="h264", container=container,
                            preset="ultrafast")
    v = viewed(clip)
    # exactly the frame presented at the start
    n = int(start // FRAME_MS)
    assert v["stamps"][0] == (n // corpus.PARAMS["fps"], n % corpus.PARAMS["fps"])
    check_viewable(v, frames=round(CLIP_MS / FRAME_MS))
    assert abs(info.duration_ms - CLIP_MS) <= FRAME_MS
    assert info.video_codec == "h264" and info.audio_codec == "aac"


@pytest.mark.skipif(not KEYFRAME_MODE, reason="cut_clip has no mode parameter yet")
@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("name", names_for("accurate"))
def test_accurate_cut(name, container, tmp_path):
    """The default copy export: exact first frame, partial GOPs re-encoded."""
    _b, bucket, rec = load(name)
    start = STARTS["mid-gop"]
    sel = select_segments(rec, start, start + CLIP_MS)
    files = bucket.download(sel, str(tmp_path / "files"))
    clip = str(tmp_path / f"clip.{container}")
    info = cut_clip(selection=sel, files=files, out_path=clip, container=container, mode="accurate")
    v = viewed(clip)
    n = int(start // FRAME_MS)
    assert v["stamps"][0] == (n // corpus.PARAMS["fps"], n % corpus.PARAMS["fps"])
    check_viewable(v, frames=round(CLIP_MS / FRAME_MS))
    assert info.lead_ms == 0 and abs(info.duration_ms - CLIP_MS) <= FRAME_MS


BYTE_RANGE_NAMES = [n for n in NAMES if corpus.ENTRIES[n].byte_ranges]


@pytest.mark.parametrize("name", BYTE_RANGE_NAMES)
def test_byte_ranges_fetch_only_the_clip(name, tmp_path):
    """Loading the manifest (and the segment index) plus downloading the clip's parts reads at most
    5 % more than the bytes of the media overlapping the clip, far less than the files."""
    b, bucket, rec = load(name)
    sel = select_segments(rec, STARTS["mid-gop"], STARTS["mid-gop"] + CLIP_MS)
    manifest_bytes = os.path.getsize(os.path.join(b.root, b.manifest_key))
    before = bucket.bytes - manifest_bytes  # the segment index, read while loading
    bucket.download(sel, str(tmp_path / "files"))
    fetched = bucket.bytes - manifest_bytes
    media = sel.media_bytes()
    keys = sum(os.path.getsize(os.path.join(b.root, k)) for k in sel.decryption_keys())  # AES-128: 16 B each
    assert media is not None and fetched - before == media + keys
    assert fetched <= 1.05 * media, (fetched, media)
    whole = sum(os.path.getsize(os.path.join(b.root, k)) for k in {p.key for p in sel.parts()})
    assert fetched < 0.6 * whole, (fetched, whole)
    print(f"{name}: fetched {fetched} B for {media} B of overlapping media "
          f"(ratio {fetched / media:.4f}; the files hold {whole} B)")


def test_multiperiod_clip_joins_the_periods(tmp_path):
    """A clip across the Period boundary (6 s) reads both periods' inits and segments."""
    _b, bucket, rec = load("edited-multiperiod")
    video = rec.tracks[0]
    assert video.init_key is None  # each period names its own initialization
    assert {video.init_of(s).key.split("/")[-2] for s in video.segments} == {"p0", "p1"}
    sel = select_segments(rec, 5000, 7000)
    names = sel.keys()
    assert [n.split("/", 1)[1] for n in names if "init" in n] == [
        "p0/init-stream0.m4s", "p1/init-stream0.m4s", "p0/init-stream1.m4s", "p1/init-stream1.m4s"]
    files = bucket.download(sel, str(tmp_path / "files"))
    encode_selection(selection=sel, files=files, out_path=str(tmp_path / "clip.ts"), codec="h264", preset="ultrafast")
    v = viewed(str(tmp_path / "clip.ts"))
    assert v["stamps"][0] == (5, 0) and v["stamps"][-1] == (6, 24)
    check_viewable(v, frames=50)


def test_corpus_is_cached():
    name = "ffmpeg-hls-ts"
    first = built(name)
    marker = os.path.join(first.dir, ".meta.json")
    mtime = os.stat(marker).st_mtime_ns
    again = corpus.build(name)
    assert again.root == first.root and os.stat(marker).st_mtime_ns == mtime
    assert str(corpus.corpus_root()) == first.root


def test_missing_tools_give_the_install_command(monkeypatch):
    monkeypatch.setattr(corpus, "_gst_version", lambda: None)
    assert corpus.missing_tool("gst-hlssink2") == f"GStreamer is not installed (on Debian: {corpus.GST_INSTALL})"
    assert "gstreamer1.0-plugins-bad" in corpus.GST_INSTALL
    monkeypatch.setattr(corpus, "_ffmpeg_version", lambda: None)
    assert corpus.missing_tool("ffmpeg-hls-ts") == "ffmpeg is not installed (on Debian: apt-get install -y ffmpeg)"
    with pytest.raises(RuntimeError, match="ffmpeg is not installed"):
        corpus.build("ffmpeg-hls-ts")


def test_epoch_timeline_starts_at_zero():
    """No availabilityStartTime: StartTime counts from the first media segment although the media
    time starts at 1.7e9 s."""
    _b, _bucket, rec = load("ffmpeg-dash-epoch")
    assert rec.origin_ms is None
    assert rec.tracks[0].segments[0].start_ms == 0
    assert rec.tracks[0].segments[0].media_start_ms > 1.7e12


def test_gstreamer_audio_in_video_mp2t_is_audio():
    """dashsink writes the audio AdaptationSet with mimeType="video/mp2t": contentType wins."""
    _b, _bucket, rec = load("gst-dashsink")
    assert [t.kind for t in rec.tracks] == ["video", "audio"]
    assert rec.tracks[1].segments[0].key.endswith("audio_0_1.ts")



# --------------------------------------------------------------------------- packaging switches
@pytest.mark.parametrize("name", SWITCHING + ENCRYPTED)
def test_whole_recording_is_one_timeline(name, tmp_path):
    """Every frame of the recording, in order, once: timestamps continue across the switch of
    packaging (a discontinuity: the two sides' media times are 1000 s apart), across keys and
    across the segments in the clear."""
    _b, bucket, rec = load(name)
    sel = select_segments(rec, 0, rec.duration_ms)
    files = bucket.download(sel, str(tmp_path / "files"))
    info = cut_clip(selection=sel, files=files, out_path=str(tmp_path / "clip.mp4"), container="mp4")
    v = viewed(str(tmp_path / "clip.mp4"))
    assert v["stamps"][0] == (0, 0)
    check_viewable(v, frames=round(rec.duration_ms / FRAME_MS))
    assert abs(info.duration_ms - rec.duration_ms) <= FRAME_MS


@pytest.mark.parametrize("name", SWITCHING)
def test_clips_cross_the_packaging_switch(name):
    """The clips of the tests above take segments of both packagings."""
    _b, _bucket, rec = load(name)
    for start in STARTS.values():
        segments = select_segments(rec, start, start + CLIP_MS).tracks[0].segments
        assert {s.key.rsplit(".", 1)[1] for s in segments} == {"ts", "m4s"}


# --------------------------------------------------------------------------- AES-128
@pytest.mark.parametrize("name", ENCRYPTED)
def test_encrypted_parts_follow_their_keys(name):
    """Each encrypted part is downloaded after its key."""
    _b, _bucket, rec = load(name)
    sel = select_segments(rec, 0, rec.duration_ms)
    names = sel.keys()
    encrypted = [p for p in sel.parts() if p.encryption is not None]
    assert encrypted and sel.decryption_keys()
    for part in encrypted:
        assert names.index(part.encryption.key) < names.index(part.name)
    clear = [s.start_ms for s in rec.tracks[0].segments if s.encryption is None]
    assert clear == ([6000.0, 8000.0, 10000.0] if name == "edited-hls-aes-iv-none" else [])


@pytest.mark.parametrize("name", ENCRYPTED)
def test_decrypted_parts_are_the_clear_recordings(name, tmp_path):
    """Decrypted with the key and IV the playlist gives (the IV attribute, else the segment's media
    sequence number), each segment or byte range holds the bytes of the same segment of the clear
    recording packaged alike: a wrong IV, which only changes the first 16 bytes, shows."""
    _b, bucket, rec = load(name)
    _c, clear_bucket, clear_rec = load(CLEAR_TWIN[name])
    files = bucket.download(select_segments(rec, 0, rec.duration_ms), str(tmp_path / "files"))
    clear = {s.number: s for s in clear_rec.tracks[0].segments}
    for s in rec.tracks[0].segments:
        twin = clear[s.number]
        expected = clear_bucket.fetch_range(twin.key, *twin.byte_range) if twin.byte_range else clear_bucket.fetch(twin.key)
        if s.encryption is None:
            assert bucket.fetch(s.key) == expected
            continue
        key = bucket.fetch(s.encryption.key)
        with EncryptedFile(files[s.name], key, s.encryption.iv, s.name).open() as f:
            assert f.read() == expected, s.name


def test_keys_rotated_while_packaging_are_each_used():
    _b, bucket, rec = load("ffmpeg-hls-aes-rekey")
    keys = select_segments(rec, 0, rec.duration_ms).decryption_keys()
    assert len(keys) >= 2, keys
    assert all(bucket.fetch(k) != bucket.fetch(keys[0]) for k in keys[1:])


def test_encrypted_segment_reads_like_its_plaintext():
    """Decrypted as it is read, from anywhere: the same bytes as decrypting the whole segment."""
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    b, bucket, rec = load("ffmpeg-hls-aes")
    segment = rec.tracks[0].segments[1]
    key = bucket.fetch(segment.encryption.key)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(segment.encryption.iv)).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    plain = unpadder.update(decryptor.update(bucket.fetch(segment.key)) + decryptor.finalize()) + unpadder.finalize()
    assert all(plain[i] == 0x47 for i in range(0, len(plain), 188))  # MPEG-TS packets
    encrypted = EncryptedFile(os.path.join(b.root, segment.key), key, segment.encryption.iv, segment.name)
    assert encrypted.size == len(plain)
    with encrypted.open() as f:
        assert f.read() == plain
        for at, n in ((0, 5), (15, 2), (16, 16), (1000, 3000), (len(plain) - 7, 100), (len(plain), 10)):
            f.seek(at)
            assert f.read(n) == plain[at:at + n], (at, n)


@pytest.mark.parametrize("how", ["keyframe", "accurate", "encode"])
def test_a_missing_key_is_named(how, tmp_path):
    """A key object that is not there: the engine names it (the export answers -5 with its name);
    every segment it decrypts lacks."""
    _b, bucket, rec = load("ffmpeg-hls-aes")
    sel = select_segments(rec, STARTS["mid-gop"], STARTS["mid-gop"] + CLIP_MS)
    files = bucket.download(sel, str(tmp_path / "files"))
    key = "ffmpeg-hls-aes/aes.key"
    assert sel.decryption_keys() == [key]
    os.remove(files.pop(key))
    out = str(tmp_path / "clip.ts")
    with pytest.raises(KeyUnavailable, match=key) as raised:
        if how == "encode":
            encode_selection(selection=sel, files=files, out_path=out, codec="h264", preset="ultrafast")
        else:
            cut_clip(selection=sel, files=files, out_path=out, mode=how)
    assert raised.value.key == key
    assert not os.path.exists(out)
    assert lack_length(sel, [key]) == CLIP_MS


def test_a_wrong_key_is_refused(tmp_path):
    _b, bucket, rec = load("ffmpeg-hls-aes")
    sel = select_segments(rec, STARTS["mid-gop"], STARTS["mid-gop"] + CLIP_MS)
    files = bucket.download(sel, str(tmp_path / "files"))
    with open(files["ffmpeg-hls-aes/aes.key"], "wb") as f:
        f.write(bytes(range(16)))
    with pytest.raises(MediaError, match="does not decrypt with its AES-128 key"):
        cut_clip(selection=sel, files=files, out_path=str(tmp_path / "clip.ts"))


def test_encrypted_fmp4_and_its_map(tmp_path):
    """fMP4 segments and their EXT-X-MAP encrypted with AES-128 (the MAP with the IV its EXT-X-KEY
    gives), made here from ffmpeg's fMP4 recording: ffmpeg 5 does not encrypt fMP4."""
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    source = built("ffmpeg-hls-fmp4")
    root = tmp_path / "bucket"
    (root / "rec").mkdir(parents=True)
    key, iv = bytes(range(16)), (42).to_bytes(16, "big")
    (root / "rec/k.key").write_bytes(key)
    for name in os.listdir(source.dir):
        if name.endswith((".mp4", ".m4s")):
            padder = padding.PKCS7(128).padder()
            plain = padder.update(Path(source.dir, name).read_bytes()) + padder.finalize()
            encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
            (root / "rec" / name).write_bytes(encryptor.update(plain) + encryptor.finalize())
    playlist = Path(source.dir, "index.m3u8").read_text().replace(
        "#EXTM3U\n", '#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI="k.key",IV=0x2A\n', 1)
    (root / "rec/index.m3u8").write_text(playlist)

    bucket = Bucket(str(root))
    rec = load_recording(bucket.fetch, "rec/index.m3u8")
    assert rec.tracks[0].init.encryption is not None
    start = STARTS["mid-gop"]
    sel = select_segments(rec, start, start + CLIP_MS)
    files = bucket.download(sel, str(tmp_path / "files"))
    cut_clip(selection=sel, files=files, out_path=str(tmp_path / "clip.mp4"), container="mp4")
    v = viewed(str(tmp_path / "clip.mp4"))
    n = int(start // FRAME_MS)
    assert v["stamps"][0] == (n // corpus.PARAMS["fps"], n % corpus.PARAMS["fps"])
    check_viewable(v, frames=round(CLIP_MS / FRAME_MS))
