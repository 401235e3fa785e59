"""Session-wide generated recordings for the media engine tests (real PyAV files)."""
import os

import pytest

from tests import mediagen


class Store:
    """A directory playing the role of the storage bucket: keys are relative paths."""

    def __init__(self, root: str):
        self.root = root

    def fetch(self, key: str) -> bytes:
        with open(os.path.join(self.root, key), "rb") as f:
            return f.read()

    def files(self, keys) -> dict[str, str]:
        """key -> local path for the keys that exist (what the Django side downloads)."""
        out = {}
        for k in keys:
            p = os.path.join(self.root, k)
            if os.path.isfile(p):
                out[k] = p
        return out


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("bucket")
    return Store(str(root))


def _gen(store, name, fn, **kw):
    path = fn(os.path.join(store.root, name), **kw)
    return os.path.relpath(path, store.root)


@pytest.fixture(scope="session")
def dash_timeline(store):
    """20 s DASH, SegmentTimeline, 2 s segments, separate audio; returns the MPD key."""
    return _gen(store, "dash-tl", mediagen.make_dash, template="timeline")


@pytest.fixture(scope="session")
def dash_number(store):
    return _gen(store, "dash-num", mediagen.make_dash, template="number")


@pytest.fixture(scope="session")
def dash_gaps(store):
    """Timeline with [6 s, 10 s) removed (S@t jump) and the 14-16 s segment files deleted."""
    return _gen(store, "dash-gap", mediagen.make_dash, template="time", gaps=[(6, 10)], missing=[(14, 16)])


@pytest.fixture(scope="session")
def hls(store):
    return _gen(store, "hls", mediagen.make_hls)


@pytest.fixture(scope="session")
def hls_master(store):
    return _gen(store, "hls-master", mediagen.make_hls_master)


@pytest.fixture(scope="session")
def ts_file(tmp_path_factory):
    """10 s plain MPEG-TS file, h264 + aac."""
    return mediagen.make_file(str(tmp_path_factory.mktemp("files") / "clip.ts"), duration_s=10)


@pytest.fixture(scope="session")
def mp2_ts_file(tmp_path_factory):
    """6 s MPEG-TS with MP2 audio (needs re-encoding to AAC)."""
    return mediagen.make_file(str(tmp_path_factory.mktemp("files") / "mp2.ts"), duration_s=6, acodec="mp2")


@pytest.fixture(scope="session")
def hls_bframes(store):
    """8 s HLS whose H.264 uses B-frames (pts != dts)."""
    return _gen(store, "hls-bf", mediagen.make_hls, duration_s=8, bframes=2)


@pytest.fixture(scope="session")
def hevc_hls(store):
    return _gen(store, "hevc-hls", mediagen.make_hls, duration_s=6, vcodec="libx265")


@pytest.fixture(scope="session")
def hevc_dash(store):
    return _gen(store, "hevc-dash", mediagen.make_dash, duration_s=6, vcodec="libx265")


@pytest.fixture(scope="session")
def hls_mp2(store):
    """6 s HLS with MP2 audio (re-encoded to AAC when encoding)."""
    return _gen(store, "hls-mp2", mediagen.make_hls, duration_s=6, acodec="mp2")


# --------------------------------------------------------------------------- accurate cuts
# 8 s, 320x180, 1 s GOPs (keyframes at whole seconds), a hole in [4 s, 6 s): removed from the
# DASH timeline, or HLS segment files missing.  Open-GOP sources are HLS (FFmpeg's DASH muxer
# mis-stamps the first picture of a fragment that has leading pictures); bframes=4 with 25-frame
# GOPs puts each keyframe at the end of a B run, so it has leading pictures.
ACCURATE_SOURCES = {
    "h264-closed": {"kind": "dash", "vcodec": "libx264"},
    "h264-bframes": {"kind": "dash", "vcodec": "libx264", "bframes": 3, "b_pyramid": True, "b_adapt": 0},
    "h264-open": {"kind": "hls", "vcodec": "libx264", "bframes": 4, "b_pyramid": True, "b_adapt": 0,
                  "open_gop": True},
    "hevc-closed": {"kind": "dash", "vcodec": "libx265", "open_gop": False},
    "hevc-bframes": {"kind": "hls", "vcodec": "libx265", "bframes": 3, "b_adapt": 0, "open_gop": False},
    "hevc-open": {"kind": "hls", "vcodec": "libx265", "bframes": 4, "b_adapt": 0, "open_gop": True},
}


@pytest.fixture(scope="session")
def accurate_source(store):
    """name -> manifest key of that ACCURATE_SOURCES recording (made once per session)."""
    made: dict[str, str] = {}

    def get(name: str) -> str:
        if name not in made:
            kw = dict(ACCURATE_SOURCES[name])
            kind = kw.pop("kind")
            directory = os.path.join(store.root, "acc-" + name)
            if kind == "dash":
                path = mediagen.make_dash(directory, duration_s=8, template="timeline", gaps=[(4, 6)], **kw)
            else:
                path = mediagen.make_hls(directory, duration_s=8, missing=[(4, 6)], **kw)
            made[name] = os.path.relpath(path, store.root)
        return made[name]

    return get
