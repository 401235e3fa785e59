"""Limits on what an upload may send (docs/api.md): over IMGBED_MAX_UPLOAD_BYTES is a 413 before
the body is read (or one byte past the limit when chunked), and a request without a valid session
never has more than 64 kB of its body read. Against gunicorn, the server production runs, over raw
sockets: the tests send a part of a body and show that the answer comes without the rest."""

import socket
import threading
import uuid

import pytest
import requests

from imgbed.models import Image
from imgbed.uploads import UNAUTHENTICATED_BODY_BYTES
from tests.conftest import worker_env
from tests.imgbed.images import png
from tests.servers import Gunicorn, read_http_answer

LIMIT = 1024 * 1024
BOUNDARY = "----resourced-limits-7d3f"
pytestmark = pytest.mark.django_db(transaction=True)  # the server reads the sessions the tests write


@pytest.fixture(scope="module")
def server(django_db_setup, s3_server, log_dir):
    web = Gunicorn(worker_env(IMGBED_MAX_UPLOAD_BYTES=LIMIT), log_dir, workers=1, threads=4)
    try:
        yield web
    finally:
        web.stop()


@pytest.fixture
def prefix() -> str:
    """A path of this test's own in the image bed's bucket."""
    return f"limits-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def stored(s3, prefix):
    """The keys under this test's path, and its Image rows."""
    from django.conf import settings

    def stored() -> tuple[list[str], int]:
        listed = s3.list_objects_v2(Bucket=settings.IMGBED_BUCKET, Prefix=prefix + "/")
        return [item["Key"] for item in listed.get("Contents", [])], Image.objects.filter(path=prefix).count()

    return stored


def part(name: str, value: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    kind = "Content-Type: application/octet-stream\r\n" if filename else ""
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n{kind}\r\n".encode() + value + b"\r\n"


def form(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def head(server, path: str, *, length: int | None = None, **headers) -> bytes:
    lines = [f"POST /api/imgbed/v1/upload/{path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}",
             f"Content-Type: multipart/form-data; boundary={BOUNDARY}"]
    lines.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def send_part_then_answer(server, request_head: bytes, sent: bytes) -> tuple[int, dict]:
    """Send the head and `sent`, nothing more: the answer must come on that alone."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request_head + sent)
        return read_http_answer(sock)


def send_chunked(server, request_head: bytes, body: bytes) -> tuple[int, dict]:
    """Send `body` in chunks of 16 kB from a thread while the answer is read: a server that
    answers early closes the connection under the sender, which then stops."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request_head)

        def send():
            try:
                for start in range(0, len(body), 16384):
                    piece = body[start:start + 16384]
                    sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                sock.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # refused and closed before the end

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        answer = read_http_answer(sock)
        sender.join(10)
        return answer


# --- over the limit ------------------------------------------------------------------------------

def test_a_declared_length_over_the_limit_is_413_before_the_body_is_read(server, session_id, prefix, stored):
    body = form(part("f", b"x" * (LIMIT + 1), "big.png"))
    request_head = head(server, prefix, length=len(body), X_Session_Id=session_id)
    status, answer = send_part_then_answer(server, request_head, b"")  # not one byte of the body
    assert status == 413
    assert answer["ErrorCode"] == 2 and answer["FailedFiles"] == []
    assert f"{len(body)} bytes" in answer["ErrorMessage"] and str(LIMIT) in answer["ErrorMessage"]
    assert stored() == ([], 0)


def test_a_declared_length_over_the_limit_is_413_with_or_without_a_session(server, prefix, stored):
    """Without a session header there is no session to check before the body: the size is."""
    request_head = head(server, prefix, length=300 * 1024 * 1024)
    status, answer = send_part_then_answer(server, request_head, b"")
    assert status == 413 and answer["ErrorCode"] == 2 and str(LIMIT) in answer["ErrorMessage"]
    assert stored() == ([], 0)


def test_a_chunked_body_is_counted_and_refused_past_the_limit(server, session_id, prefix, stored):
    body = form(part("f", b"\x89PNG" + b"x" * (LIMIT + 256 * 1024), "big.png"))
    status, answer = send_chunked(server, head(server, prefix, X_Session_Id=session_id), body)
    assert status == 413
    assert answer["ErrorCode"] == 2 and f"over the upload limit of {LIMIT} bytes" in answer["ErrorMessage"]
    assert stored() == ([], 0)


# --- no valid session ----------------------------------------------------------------------------

def test_a_bad_session_header_is_refused_before_the_body(server, prefix, stored):
    request_head = head(server, prefix, length=300 * 1024 * 1024, X_Session_Id="not-a-session")
    status, answer = send_part_then_answer(server, request_head, b"x" * 16384)
    assert status == 401
    assert answer == {"ErrorCode": 3, "ErrorMessage": "SessionId: unknown or expired", "FailedFiles": [], "Failures": []}
    assert stored() == ([], 0)


@pytest.mark.parametrize("fields", [[], [part("SessionId", b"not-a-session")]], ids=["none", "bad"])
def test_without_a_valid_session_at_most_64_kb_of_the_body_is_read(server, prefix, stored, fields):
    """The body declares almost the limit; only its first 64 kB are sent, and they are enough for
    the answer."""
    body = b"".join(fields) + part("f", b"\x89PNG" + b"x" * (LIMIT - 4096), "a.png")
    request_head = head(server, prefix, length=LIMIT - 1)
    status, answer = send_part_then_answer(server, request_head, body[:UNAUTHENTICATED_BODY_BYTES])
    assert status == 401 and answer["ErrorCode"] == 3 and answer["FailedFiles"] == []
    assert ("unknown or expired" if fields else "within the first 65536 bytes") in answer["ErrorMessage"]
    assert stored() == ([], 0)


# --- under the limit -----------------------------------------------------------------------------

def test_uploads_under_the_limit_are_stored(server, session_id, prefix, stored):
    image = png(size=(160, 160), noise=True)  # over 64 kB: read past the window of a form session
    assert UNAUTHENTICATED_BODY_BYTES < len(image) < LIMIT
    url = f"{server.url}/api/imgbed/v1/upload/{prefix}"

    by_header = requests.post(url, files={"f": ("a.png", image)}, headers={"X-Session-Id": session_id}, timeout=30)
    assert by_header.status_code == 200 and by_header.json()["ErrorCode"] == 0, by_header.text

    # the session as the form's first field, and a chunked body (requests streams a generator)
    body = form(part("SessionId", session_id.encode()), part("f", image, "b.png"))
    chunked = requests.post(url, data=(body[i:i + 16384] for i in range(0, len(body), 16384)), timeout=30,
                            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert chunked.status_code == 200 and chunked.json()["ErrorCode"] == 0, chunked.text

    keys, rows = stored()
    assert keys == [f"{prefix}/a.png", f"{prefix}/b.png"] and rows == 2
    assert set(Image.objects.filter(path=prefix).values_list("size", flat=True)) == {len(image)}


def test_a_form_without_files_is_refused_unread(client, session_id):
    answer = client.post("/api/imgbed/v1/upload/p", "a=" + "x" * 100_000,
                         content_type="application/x-www-form-urlencoded", HTTP_X_SESSION_ID=session_id)
    assert answer.status_code == 415 and answer.json()["ErrorCode"] == 2


def test_form_fields_over_djangos_memory_bound_are_413_not_500(client, session_id, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = form(part("note", b"x" * 20_000), part("f", png(), "a.png"))
    answer = client.generic("POST", "/api/imgbed/v1/upload/p", body,
                            content_type=f"multipart/form-data; boundary={BOUNDARY}", HTTP_X_SESSION_ID=session_id)
    assert answer.status_code == 413 and answer.json()["ErrorCode"] == 2
