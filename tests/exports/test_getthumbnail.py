"""getthumbnail: the frame at a position of a recording, stored in the image bed."""

import io
import time

import pytest
from PIL import Image

from exports.models import Thumbnail
from tests import mediagen
from tests.exports.conftest import ORIGIN_MS

URL = "/resource/v1/i/getthumbnail"


def poll_thumbnail(api, body, timeout=60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = api.post(URL, body, format="json").json()
        if answer["ErrorCode"] != 1:
            return answer
        time.sleep(0.3)
    raise AssertionError(f"thumbnail still processing: {answer}")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("name, kind, options", [
    ("dash-timeline", "dash", {"duration_s": 20, "template": "timeline"}),
    ("hls", "hls", {"duration_s": 12}),
])
def test_the_frame_at_the_position_is_stored_and_served(api, session_id, celery_worker, uploaded_recordings,
                                                        name, kind, options):
    live_path = uploaded_recordings(name, kind, **options)
    body = {"StartPos": ORIGIN_MS + 5200, "StartTime": "00:00:01", "LivePath": live_path, "SessionId": session_id}
    first = api.post(URL, body, format="json").json()
    assert first["ErrorCode"] == 1 and first["TimeWait"] > 0
    answer = poll_thumbnail(api, body)
    assert answer["ErrorCode"] == 0 and answer["ErrorMessage"] == "Success", answer
    peer = live_path.split("/")[1]
    assert answer["ImagePath"].startswith(f"/{peer}/") and answer["ImagePath"].endswith(f"_{ORIGIN_MS + 5200}.jpg")
    image = api.get(answer["ImagePath"])
    assert image.status_code == 200
    assert mediagen.read_second(Image.open(io.BytesIO(b"".join(image.streaming_content)))) == 5
    assert Thumbnail.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_position_outside_the_recording_fails_with_minus_1(api, session_id, celery_worker, uploaded_recordings):
    live_path = uploaded_recordings("dash-timeline", "dash", duration_s=20, template="timeline")
    body = {"StartPos": ORIGIN_MS + 500_000, "StartTime": "0", "LivePath": live_path, "SessionId": session_id}
    assert poll_thumbnail(api, body)["ErrorCode"] == -1


@pytest.mark.django_db
def test_bad_input_is_400_and_nothing_stored(api, session_id):
    response = api.post(URL, {"StartPos": "x", "StartTime": "00:00:01", "LivePath": "a/b/c/s.mpd",
                              "SessionId": session_id}, format="json")
    assert response.status_code == 400 and response.json()["ErrorCode"] == -2
    assert "StartPos" in response.json()["ErrorMessage"]
    assert api.post(URL, {"StartPos": 1, "StartTime": "1", "LivePath": "a/b/c/s.mpd"}, format="json").status_code == 401
    assert Thumbnail.objects.count() == 0
