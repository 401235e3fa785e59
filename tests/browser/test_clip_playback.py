"""A frame-accurate MP4 clip plays in Chromium's <video> from its first to its last frame: the
re-encoded head and tail and the copied middle switch parameter sets without an error."""

import functools
import http.server
import threading

import pytest

from exports import media
from tests import mediagen
from tests.browser.conftest import ARTIFACTS, browser_needed

pytestmark = browser_needed

PLAY = """
const done = arguments[arguments.length - 1];
const video = document.getElementById('clip');
const errors = [];
video.addEventListener('error', () => errors.push(video.error ? video.error.code + ' ' + video.error.message : 'error'));
video.addEventListener('ended', () => done({ended: true, time: video.currentTime, duration: video.duration,
                                            errors: errors, decoded: video.webkitDecodedFrameCount}));
setTimeout(() => done({ended: false, time: video.currentTime, duration: video.duration, errors: errors}), 30000);
video.play().catch(e => errors.push('play: ' + e));
"""


@pytest.fixture
def served(tmp_path):
    """An HTTP server on loopback for tmp_path (Chromium plays media from http:// reliably)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.mark.parametrize("bframes", [0, 2])
def test_an_accurate_h264_mp4_clip_plays_to_the_end_in_chromium(browser, served, tmp_path, bframes):
    manifest = mediagen.make_dash(str(tmp_path / "rec"), duration_s=8, gop_s=2.0, bframes=bframes)
    root = tmp_path / "rec"
    recording = media.load_recording(lambda key: (root / key).read_bytes(), "manifest.mpd")
    assert manifest.endswith("manifest.mpd")
    # starts one frame after a keyframe and ends mid-GOP: a re-encoded head and tail around a copy
    selection = media.select_segments(recording, 2040.0, 6500.0)
    files = {key: str(root / key) for key in selection.keys() if (root / key).exists()}
    info = media.cut_clip(selection=selection, files=files, out_path=str(tmp_path / "clip.mp4"), container="mp4",
                          mode="accurate")
    (tmp_path / "index.html").write_text('<!doctype html><video id="clip" src="clip.mp4" muted playsinline></video>')

    browser.get(f"{served}/index.html")
    browser.set_script_timeout(40)
    result = browser.execute_async_script(PLAY)
    browser.save_screenshot(str(ARTIFACTS / f"clip-playback-bframes{bframes}.png"))
    assert result["errors"] == [], result
    assert result["ended"], result
    assert abs(result["duration"] - info.duration_ms / 1000) <= 0.1, result
    assert abs(result["time"] - result["duration"]) <= 0.05, result
