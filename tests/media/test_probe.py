import pytest

from exports.media import MediaError, probe
from tests import mediagen


def test_probe_ts(ts_file):
    info = probe(ts_file)
    assert (info.video_codec, info.audio_codec, info.width, info.height) == ("h264", "aac", 320, 180)
    assert info.duration_ms == pytest.approx(10000, abs=40)
    assert info.size_bytes > 0 and info.path == ts_file


def test_probe_video_only_mp4(tmp_path):
    path = mediagen.make_file(str(tmp_path / "v.mp4"), duration_s=2, audio=False)
    info = probe(path)
    assert (info.video_codec, info.audio_codec) == ("h264", None)
    assert info.duration_ms == pytest.approx(2000, abs=40)


@pytest.mark.parametrize("content", [b"", b"garbage" * 100, b"\x00" * 5000])
def test_probe_garbage(tmp_path, content):
    p = tmp_path / "x.ts"
    p.write_bytes(content)
    with pytest.raises(MediaError):
        probe(str(p))


def test_probe_missing(tmp_path):
    with pytest.raises(MediaError):
        probe(str(tmp_path / "missing.mp4"))
