"""CallbackUrl (docs/api.md §1): the poll body of a finished export, signed and retried like the
restore callbacks (one implementation: resourced.callbacks), delivered to a real HTTP receiver
on loopback by the worker of the callbacks queue (tests/conftest.py restore_worker)."""

import json
import time

import pytest
from django.conf import settings

from exports.models import Export, ExportCallback, ExportCallbackDelivery
from resourced.callbacks.http import DELIVERY_HEADER, SIGNATURE_HEADER, verify_signature
from tests.exports.conftest import ORIGIN_MS, export_body
from tests.restore.conftest import Receiver

URL = "/resource/v1/i/export-to-s3dir"
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def receiver():
    made = []

    def make(script=None) -> Receiver:
        made.append(Receiver(script))
        return made[-1]

    yield make
    for one in made:
        one.stop()


def submit(api, body) -> dict:
    response = api.post(URL, body, format="json")
    assert response.status_code == 200, response.json()
    return response.json()


def delivered(receiver: Receiver, count: int, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while len(receiver.requests) < count:
        assert time.monotonic() < deadline, f"{len(receiver.requests)} of {count} callbacks arrived"
        time.sleep(0.2)
    return receiver.requests


def poll_body(api, task_id: str, session_id: str) -> dict:
    return api.get(f"{URL}/{task_id}", HTTP_X_SESSION_ID=session_id).json()


def test_a_ready_export_calls_back_with_its_poll_body_signed(api, session_id, celery_worker, restore_worker,
                                                            uploaded_recordings, receiver):
    client = receiver()
    live_path = uploaded_recordings("dash-timeline", "dash", duration_s=20, template="timeline")
    body = export_body(live_path, session_id, StartPos=ORIGIN_MS + 4000, Duration=2000, CallbackUrl=client.url)
    task_id = submit(api, body)["TaskId"]
    [request] = delivered(client, 1)
    sent = json.loads(request["body"])
    assert sent["ErrorCode"] == 5 and sent["TaskId"] == task_id and sent["VideoPath"].endswith(".ts")
    assert sent == poll_body(api, task_id, session_id) | {"TimeWait": 0}
    headers = request["headers"]
    verify_signature(request["body"], headers[SIGNATURE_HEADER], delivery_id=headers[DELIVERY_HEADER],
                     secret=settings.CALLBACK_SECRET, tolerance=300)
    callback = ExportCallback.objects.get(export__task_id=task_id)
    assert callback.state == ExportCallback.State.DELIVERED and str(callback.delivery_id) == headers[DELIVERY_HEADER]
    assert [(d.attempt, d.outcome) for d in callback.deliveries.all()] == [(1, "delivered")]
    time.sleep(1)
    assert len(client.requests) == 1, "once"


def test_a_failed_export_calls_back_and_retries_a_failing_receiver(api, session_id, celery_worker, restore_worker,
                                                                   receiver):
    client = receiver([(503, {"code": 1}), (200, {"code": 0})])
    body = export_body("mp4/NOPEER/none/1/stream.mpd", session_id, CallbackUrl=client.url)
    task_id = submit(api, body)["TaskId"]
    first, second = delivered(client, 2)
    assert first["body"] == second["body"] and json.loads(first["body"])["ErrorCode"] == -1
    assert first["headers"][DELIVERY_HEADER] == second["headers"][DELIVERY_HEADER]
    assert (first["headers"]["X-Resourced-Attempt"], second["headers"]["X-Resourced-Attempt"]) == ("1", "2")
    callback = ExportCallback.objects.get(export__task_id=task_id)
    deadline = time.monotonic() + 10
    while callback.state != ExportCallback.State.DELIVERED:
        assert time.monotonic() < deadline
        time.sleep(0.1)
        callback.refresh_from_db()
    assert [(d.attempt, d.outcome, d.http_status) for d in callback.deliveries.all()] == [
        (1, "http_error", 503), (2, "delivered", 200)]


def test_a_cancelled_export_calls_back_and_an_operator_can_redeliver(api, session_id, restore_worker, receiver,
                                                                     uploaded_recordings):
    from exports.services import export_callback_redeliver

    client = receiver()
    live_path = uploaded_recordings("dash-timeline", "dash", duration_s=20, template="timeline")
    body = export_body(live_path, session_id, StartPos=ORIGIN_MS + 1000, Duration=3000, CallbackUrl=client.url)
    task_id = submit(api, body)["TaskId"]  # cancelled while queued or running (an export takes seconds)
    cancelled = api.delete(f"{URL}/{task_id}", HTTP_X_SESSION_ID=session_id).json()
    assert cancelled["ErrorCode"] == -8
    [request] = delivered(client, 1)
    assert json.loads(request["body"])["ErrorCode"] == -8
    callback = ExportCallback.objects.get(export__task_id=task_id)
    export_callback_redeliver(callback=callback)
    first, again = delivered(client, 2)
    assert again["body"] == first["body"] and again["headers"][DELIVERY_HEADER] == first["headers"][DELIVERY_HEADER]
    assert again["headers"]["X-Resourced-Attempt"] == "2"


def test_callback_url_is_validated_before_anything_is_written(api, session_id):
    for bad in ("ftp://client.example/cb", "not a url", "https://" + "a" * 2050 + ".example/"):
        response = api.post(URL, export_body("mp4/P/r/1/stream.mpd", session_id, CallbackUrl=bad), format="json")
        assert response.status_code == 400, response.json()
        answer = response.json()
        assert answer["ErrorCode"] == -2 and "CallbackUrl" in answer["ErrorMessage"]
    assert not Export.objects.exists()


def test_the_ssrf_guard_refuses_a_loopback_callback_without_connecting(settings, receiver):
    from exports.services import export_callback_deliver

    settings.CALLBACK_ALLOW_PRIVATE = False
    client = receiver()
    export = Export.objects.create(idempotency_key="k", service_caller="mma", live_path="x.mpd", peer_id="p",
                                   file_name="", start_pos=0, start_time_ms=0, duration_ms=1000,
                                   source_bucket="recordings", dest_bucket="export", status=Export.Status.FAILED,
                                   callback_url=client.url)
    callback = ExportCallback.objects.create(export=export, url=client.url, body="{}")
    assert export_callback_deliver(callback_id=callback.id, attempt=1) is None
    callback.refresh_from_db()
    assert callback.state == ExportCallback.State.REFUSED and "loopback" in callback.last_error
    assert ExportCallbackDelivery.objects.get(callback=callback).outcome == "refused"
    assert client.requests == []
