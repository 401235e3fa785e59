"""Limits on what a request may send (docs/api.md §1): oversize and over-deep JSON, numbers out of
range and names that are not plain answer a 4xx JSON in the endpoint's shape, never a 5xx, and
store nothing. A JSON body without a Content-Length (chunked) is held to the same limit, against
gunicorn, the server production runs, over raw sockets: the tests send a part of a body that never
ends and show that the answer comes without the rest."""

import json
import socket

import pytest
import requests

from exports.models import Export
from resourced.parsers import UNAUTHENTICATED_BODY_BYTES
from tests.conftest import worker_env
from tests.exports.conftest import export_body
from tests.servers import Gunicorn, read_http_answer

URL = "/resource/v1/i/export-to-s3dir"
LIVE = "mp4/PEER1/rec-1/1/stream.mpd"
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_enqueue(monkeypatch):
    monkeypatch.setattr("exports.services.export_enqueue", lambda *, export: None)


def post_raw(client, url, text: str, **headers):
    return client.generic("POST", url, text, content_type="application/json", **headers)


def test_a_json_body_over_the_limit_is_413_in_the_endpoints_shape(client, session_id, settings):
    settings.API_MAX_JSON_BYTES = 64 * 1024
    body = dict(export_body(LIVE, session_id), padding="x" * (200 * 1024))
    answer = post_raw(client, URL, json.dumps(body))
    assert answer.status_code == 413
    assert answer.json()["ErrorCode"] == -2 and "body" in answer.json()["ErrorMessage"]
    assert not Export.objects.exists()
    restore = post_raw(client, "/resource/v1/i/restore", json.dumps({"padding": "x" * (200 * 1024)}),
                       HTTP_X_SESSION_ID=session_id)
    assert restore.status_code == 413 and restore.json()["code"] == 413  # the contract: code 413


def test_json_nested_deeper_than_the_limit_is_a_400(client, session_id):
    deep = "[" * 3000 + "]" * 3000
    answer = post_raw(client, URL, '{"ServiceCaller": "mma", "x": ' + deep + "}")
    assert answer.status_code == 400
    assert answer.json()["ErrorCode"] == -2 and "nested deeper" in answer.json()["ErrorMessage"]
    # brackets inside strings are text, not nesting
    fine = post_raw(client, URL, json.dumps(dict(export_body(LIVE, session_id), note="[" * 100)))
    assert fine.status_code == 200, fine.json()


@pytest.mark.parametrize("field, value", [
    ("StartTime", "99999999999999999999999:00:00"),
    ("StartTime", 10**30),
    ("StartPos", 10**30),
    ("PeerId", ".."),
    ("PeerId", "a\u202eb"),
    ("FileName", "a\u200bb"),
])
def test_values_out_of_their_fields_rules_are_400s_naming_the_field(client, session_id, field, value):
    answer = post_raw(client, URL, json.dumps(export_body(LIVE, session_id, **{field: value})))
    assert answer.status_code == 400, answer.content
    assert answer.json()["ErrorCode"] == -2 and answer.json()["ErrorMessage"].startswith(field)
    assert not Export.objects.exists()


def test_an_offset_out_of_range_is_a_400(client, session_id):
    answer = client.get("/api/imgbed/v1/list/some/dir", {"offset": "99999999999999999999999"},
                        HTTP_X_SESSION_ID=session_id)
    assert 400 <= answer.status_code < 500
    assert answer["Content-Type"].startswith("application/json")


def test_submits_beyond_the_sessions_rate_are_429_with_a_time_wait(client, session_id, settings):
    from django.core.cache import cache

    settings.API_SUBMIT_RATE = "3/min"
    cache.clear()
    body = json.dumps(export_body(LIVE, session_id))
    answers = [post_raw(client, URL, body) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    refused = answers[-1].json()
    assert refused["ErrorCode"] == -4 and 0 < refused["TimeWait"] <= 60_000
    assert Export.objects.count() == 1  # the three accepted posts were one export and its polls


# --- bodies without a Content-Length, against gunicorn -------------------------------------------

CHUNKED_LIMIT = 256 * 1024  # API_MAX_JSON_BYTES of the server below: well over the 64 kB window
JSON_ENDPOINTS = [
    ("/resource/v1/i/export-to-s3dir", "ErrorCode", -2),
    ("/resource/v1/i/restore", "code", 413),
    ("/api/imgbed/v1/delete", "errCode", 2),
]


@pytest.fixture(scope="module")
def json_server(django_db_setup, s3_server, log_dir):
    web = Gunicorn(worker_env(API_MAX_JSON_BYTES=CHUNKED_LIMIT), log_dir, workers=1, threads=4)
    try:
        yield web
    finally:
        web.stop()


def chunked_head(server, url: str, **headers) -> bytes:
    lines = [f"POST {url} HTTP/1.1", f"Host: 127.0.0.1:{server.port}", "Content-Type: application/json",
             "Transfer-Encoding: chunked"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def send_unended_then_answer(server, request_head: bytes, size: int) -> tuple[int, dict]:
    """Send the head and `size` bytes of a JSON body in 16 kB chunks, never its last chunk: the
    answer must come on that alone, so the server read no more than `size` bytes of the body."""
    body = b'{"padding": "' + b"x" * size
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request_head)
        for start in range(0, size, 16384):
            piece = body[start:min(start + 16384, size)]
            sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        return read_http_answer(sock)


@pytest.mark.django_db(transaction=True)  # the server reads the session the test writes
@pytest.mark.parametrize("url, code_key, code", JSON_ENDPOINTS)
def test_a_chunked_json_body_over_the_limit_is_413_one_byte_past_it(json_server, session_id, url, code_key, code):
    """Fewer than limit + 64 kB bytes are sent, and the body never ends: the 413 comes on them."""
    sent = CHUNKED_LIMIT + 16 * 1024
    status, answer = send_unended_then_answer(json_server, chunked_head(json_server, url, X_Session_Id=session_id), sent)
    assert status == 413, answer
    message = answer.get("ErrorMessage", answer.get("message"))
    assert answer[code_key] == code and f"over the limit of {CHUNKED_LIMIT} bytes" in message, answer
    assert not Export.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("url, code_key, code", JSON_ENDPOINTS)
def test_without_a_session_header_at_most_64_kb_of_a_chunked_json_body_is_read(json_server, url, code_key, code):
    """The session of a body without Content-Length is not known before the body is parsed: with
    no X-Session-Id header, its first 64 kB (of a body that never ends) are enough for a 401."""
    status, answer = send_unended_then_answer(json_server, chunked_head(json_server, url), UNAUTHENTICATED_BODY_BYTES)
    assert status == 401, answer
    message = answer.get("ErrorMessage", answer.get("message"))
    assert "X-Session-Id" in message and str(UNAUTHENTICATED_BODY_BYTES) in message, answer


@pytest.mark.django_db(transaction=True)
def test_a_chunked_json_body_under_the_limit_is_read(json_server, session_id):
    """A chunked body is the request's body, not an empty one (requests streams a generator)."""
    url = f"{json_server.url}/api/imgbed/v1/delete"
    body = json.dumps({"path": "chunked/test", "filename": "absent.png", "note": "x" * (100 * 1024)}).encode()
    assert UNAUTHENTICATED_BODY_BYTES < len(body) < CHUNKED_LIMIT
    pieces = (body[i:i + 16384] for i in range(0, len(body), 16384))
    by_header = requests.post(url, data=pieces, headers={"Content-Type": "application/json", "X-Session-Id": session_id},
                              timeout=30)
    assert by_header.status_code == 404 and by_header.json() == {"errCode": 1, "message": by_header.json()["message"]}
    assert "no such image" in by_header.json()["message"]

    # the session in a small body (under 64 kB) is read from it, as with a Content-Length
    small = json.dumps({"path": "chunked/test", "filename": "absent.png", "SessionId": session_id}).encode()
    in_body = requests.post(url, data=iter([small[:20], small[20:]]), headers={"Content-Type": "application/json"},
                            timeout=30)
    assert in_body.status_code == 404 and in_body.json()["errCode"] == 1, in_body.text
