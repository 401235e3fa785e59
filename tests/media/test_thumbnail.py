import os

import pytest
from PIL import Image

from exports.media import MediaError, load_recording, select_segments, thumbnail, thumbnail_from_selection
from tests import mediagen


def jpeg(path):
    with open(path, "rb") as f:
        assert f.read(3) == b"\xff\xd8\xff"
    img = Image.open(path)
    assert img.format == "JPEG"
    return img


def test_thumbnail_default_size_and_first_frame(ts_file, tmp_path):
    out = str(tmp_path / "t.jpg")
    assert thumbnail(src_path=ts_file, out_path=out) == (320, 180)
    img = jpeg(out)
    assert img.size == (320, 180)
    assert mediagen.read_stamp(img) == (0, 0)
    assert not os.path.exists(out + ".part")


@pytest.mark.parametrize("at_ms,stamp", [(2000, (2, 0)), (3490, (3, 13)), (7320, (7, 8)), (60000, (9, 24))])
def test_thumbnail_at(ts_file, tmp_path, at_ms, stamp):
    out = str(tmp_path / "t.jpg")
    size = thumbnail(src_path=ts_file, out_path=out, at_ms=at_ms, max_size=100, quality=70)
    assert size == (100, 56)
    img = jpeg(out)
    assert img.size == size
    assert mediagen.read_stamp(img) == stamp


def test_thumbnail_never_upscales(ts_file, tmp_path):
    out = str(tmp_path / "t.jpg")
    assert thumbnail(src_path=ts_file, out_path=out, max_size=4000) == (320, 180)


def test_thumbnail_from_selection(store, dash_timeline, hls, tmp_path):
    for key, start, stamp in [(dash_timeline, 11480, (11, 12)), (hls, 5000, (5, 0)), (hls, 19990, (19, 24))]:
        rec = load_recording(store.fetch, key)
        sel = select_segments(rec, start, start + 5000)
        out = str(tmp_path / "s.jpg")
        assert thumbnail_from_selection(selection=sel, files=store.files(sel.keys()), out_path=out, max_size=160) == (160, 90)
        assert mediagen.read_stamp(jpeg(out)) == stamp


def test_thumbnail_from_selection_nothing_available(store, hls, tmp_path):
    rec = load_recording(store.fetch, hls)
    sel = select_segments(rec, 5000, 6000)
    with pytest.raises(MediaError):
        thumbnail_from_selection(selection=sel, files={}, out_path=str(tmp_path / "s.jpg"))
    assert os.listdir(tmp_path) == []


def test_thumbnail_errors(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"nothing to see" * 50)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(MediaError):
        thumbnail(src_path=str(junk), out_path=str(out_dir / "t.jpg"))
    with pytest.raises(MediaError):
        thumbnail(src_path=str(tmp_path / "missing.ts"), out_path=str(out_dir / "t.jpg"))
    assert os.listdir(out_dir) == []
