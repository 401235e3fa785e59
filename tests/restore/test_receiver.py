"""The reference receiver PutRestoreResult: signature verification, idempotent recording; and the
documented client snippet verifies what the service signs."""

import hashlib
import hmac
import json
import re
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from resourced.callbacks.http import signature, verify_signature
from restore.models import ReceivedCallback

pytestmark = pytest.mark.django_db

URL = "/resource/v1/i/PutRestoreResult"
BODY = json.dumps({"code": 0, "message": "success", "type": 1, "task_id": "job-42", "file_dir": "restore/x",
                   "file_list_status": [{"file_name": "a.ts", "file_code": 0}]}, separators=(",", ":")).encode()
DOC = Path(__file__).resolve().parents[2] / "docs" / "client" / "restore.md"


def deliver(client, body: bytes, sig: str | None, delivery_id: str | None = None):
    headers = {}
    if sig is not None:
        headers["HTTP_X_RESOURCED_SIGNATURE"] = sig
    if delivery_id is not False:
        headers["HTTP_X_RESOURCED_DELIVERY"] = delivery_id or str(uuid.uuid4())
    return client.post(URL, body, content_type="application/json", **headers)


def sign(body: bytes, delivery_id: str, *, secret: str | None = None, timestamp: int | None = None) -> str:
    return signature(body, delivery_id=delivery_id, secret=secret or settings.CALLBACK_SECRET,
                     timestamp=int(time.time()) if timestamp is None else timestamp)


def test_a_good_signature_is_accepted_and_recorded_once_per_delivery(client):
    delivery = str(uuid.uuid4())
    sig = sign(BODY, delivery)
    first = deliver(client, BODY, sig, delivery)
    assert first.status_code == 200 and first.json() == {"code": 0, "message": "success"}
    row = ReceivedCallback.objects.get()
    assert (row.delivery_id, row.task_id, row.type, row.code, row.times_received) == (delivery, "job-42", 1, 0, 1)
    assert row.body["file_list_status"] == [{"file_name": "a.ts", "file_code": 0}]

    again = deliver(client, BODY, sign(BODY, delivery), delivery)
    assert again.status_code == 200 and again.json()["code"] == 0
    assert ReceivedCallback.objects.count() == 1 and ReceivedCallback.objects.get().times_received == 2


@pytest.mark.parametrize(
    "make_sig, body, why",
    [
        (lambda b, d, now: None, BODY, "missing"),
        (lambda b, d, now: "garbage", BODY, "expected t=<unix seconds>"),
        (lambda b, d, now: f"t=abc,v1={'0' * 64}", BODY, "t is not a unix time"),
        (lambda b, d, now: sign(b, d, secret="another-secret", timestamp=now), BODY, "does not match"),
        (lambda b, d, now: sign(b, d, timestamp=now), BODY.replace(b'"code":0', b'"code":1', 1), None),
        (lambda b, d, now: sign(b, "another-delivery", timestamp=now), BODY, None),
        (lambda b, d, now: sign(b, d, timestamp=now - 301), BODY, "outside the 300 s window"),
        (lambda b, d, now: sign(b, d, timestamp=now + 301), BODY, "outside the 300 s window"),
    ],
    ids=["missing", "malformed", "bad-t", "wrong-secret", "tampered-body", "replayed-under-another-id", "stale",
         "from-the-future"],
)
def test_missing_bad_and_stale_signatures_are_a_401(client, make_sig, body, why):
    now = int(time.time())
    delivery = str(uuid.uuid4())
    sig = make_sig(BODY, delivery, now)
    response = deliver(client, body, sig, delivery)
    assert response.status_code == 401
    answer = response.json()
    assert answer["code"] == 401 and answer["message"].startswith("X-Resourced-Signature: ")
    assert why is None or why in answer["message"]
    if why is None:
        assert "does not match the body and the delivery id" in answer["message"]
    assert not ReceivedCallback.objects.exists()


def test_a_signature_within_the_window_is_accepted():
    now = time.time()
    sig = signature(BODY, delivery_id="d-1", secret="s", timestamp=int(now) - 299)
    assert verify_signature(BODY, sig, delivery_id="d-1", secret="s", tolerance=300, now=now) == int(now) - 299
    rotated = sig + f",v1={'f' * 64}"  # a sender with two secrets sends two v1 values
    assert verify_signature(BODY, rotated, delivery_id="d-1", secret="s", tolerance=300, now=now)


def test_the_signed_string_is_the_time_the_delivery_id_and_the_body():
    """docs/api.md §3: HMAC-SHA256 of "<t>.<delivery id>.<body>", hex."""
    delivery = str(uuid.uuid4())
    expected = hmac.new(b"s", f"1700000000.{delivery}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert signature(BODY, delivery_id=delivery, secret="s", timestamp=1700000000) == f"t=1700000000,v1={expected}"


def test_a_delivery_id_is_required(client):
    sig = sign(BODY, "")
    response = deliver(client, BODY, sig, delivery_id=False)
    assert response.status_code == 400 and response.json()["message"].startswith("X-Resourced-Delivery")
    assert not ReceivedCallback.objects.exists()


def test_the_documented_client_snippet_verifies_the_services_signature():
    text = DOC.read_text()
    snippet = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(snippet, str(DOC), "exec"), namespace)  # noqa: S102 (our own documentation)
    verify = namespace["verify"]
    now = int(time.time())
    delivery = str(uuid.uuid4())
    good = signature(BODY, delivery_id=delivery, secret="shared", timestamp=now)
    assert verify(BODY, good, delivery, "shared") is True
    assert verify(BODY + b" ", good, delivery, "shared") is False
    assert verify(BODY, good, str(uuid.uuid4()), "shared") is False  # replayed under another delivery id
    assert verify(BODY, good, delivery, "other") is False
    assert verify(BODY, signature(BODY, delivery_id=delivery, secret="shared", timestamp=now - 600), delivery,
                  "shared") is False
    assert verify(BODY, "", delivery, "shared") is False
