"""imgbed.paths: the rules that keep every key inside the image bed."""

import posixpath
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imgbed.errors import ImagePathInvalid
from imgbed.paths import clean_filename, clean_path, image_key, url_path_prefix


@pytest.mark.parametrize(
    "value,expected",
    [("peer", "peer"), ("/peer", "peer"), ("peer/", "peer"), ("/a/b/c/", "a/b/c"), ("a..b/c.d", "a..b/c.d"),
     ("日本/相机", "日本/相机"), ("with space", "with space")],
)
def test_good_paths(value, expected):
    assert clean_path(value) == expected


@pytest.mark.parametrize(
    "value",
    ["", "/", "//", "//a", "a//b", "a/", "../a", "a/../b", "a/..", "..", ".", "a/./b", "a\\b", "a\x00b", "a\tb",
     "a\nb", "a\x7fb", "a\x85b", "a\u202eb", "a\u2028b", "a\ud800b", "x" * 256, "/".join(["y" * 255] * 5), None, 5],
)
def test_bad_paths(value):
    if value == "a/":  # a single trailing slash is read as relative too
        assert clean_path(value) == "a"
        return
    with pytest.raises(ImagePathInvalid):
        clean_path(value)


@pytest.mark.parametrize("value", ["a.jpg", "a.JPEG", "b.png", "c.gif", "d.webp", "e.f.jpg", "x" * 251 + ".png"])
def test_good_filenames(value):
    assert clean_filename(value) == value


@pytest.mark.parametrize(
    "value",
    ["", ".", "..", "../a.png", "a/b.png", "a\\b.png", "a\x00.png", "a\x1f.png", "a.txt", "a", ".png",
     "x" * 252 + ".png", "é" * 126 + ".png", "a.png\x00.txt", None],
)
def test_bad_filenames(value):
    with pytest.raises(ImagePathInvalid):
        clean_filename(value)


def test_keys_are_limited_to_1024_bytes():
    path = "/".join(["p" * 200] * 5)  # 1004 bytes
    assert image_key(path, "a" * 15 + ".png") == path + "/" + "a" * 15 + ".png"  # 1024
    with pytest.raises(ImagePathInvalid):
        image_key(path, "a" * 16 + ".png")


@pytest.mark.parametrize(
    "prefix,expected", [("/", "/"), ("", "/"), ("/img", "/img/"), ("img/", "/img/"), ("https://cdn.example/i/", "/i/")]
)
def test_url_path_prefix(prefix, expected):
    assert url_path_prefix(prefix) == expected


_pieces = st.text(alphabet=st.sampled_from(list("ab./\\\x00\x1f\u202e é")) | st.characters(), max_size=40)


@given(_pieces, st.tuples(_pieces, st.sampled_from([".png", ".jpg", ".txt", ""])).map("".join))
def test_any_accepted_key_stays_inside_the_bucket(path, filename):
    """Whatever is accepted is already normal: no '..', no backslash, no control character, no
    leading slash, and S3/posix normalisation leaves the key unchanged."""
    try:
        key = image_key(clean_path(path), clean_filename(filename))
    except ImagePathInvalid:
        return
    assert posixpath.normpath(key) == key and not key.startswith("/")
    assert ".." not in key.split("/") and "\\" not in key
    assert all(unicodedata.category(c) not in {"Cc", "Cf", "Cs"} for c in key)
    assert len(key.encode()) <= 1024
