"""Slow clients, with and without nginx in front of gunicorn (issue 16: "50 slow clients stall the
API").

gunicorn answers with 2 processes x 4 threads, and a thread reads its request itself: a client that
sends one byte every 100 ms holds a thread for as long as it takes. nginx, run here from Debian's
package with the shipped deploy/nginx/ configuration (only the listen and upstream addresses
changed), reads every request whole before passing it on. The test holds 50 such clients for
about 20 s through nginx while /healthz and an export poll answer within a second, then shows
gunicorn alone stalled by the same 50.
"""

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.production.conftest import export_body
from tests.conftest import debian_tool
from tests.servers import ROOT, free_port, wait_for, wait_for_port

pytestmark = pytest.mark.production

NGINX_DIR = ROOT / "deploy" / "nginx"
SLOW_CLIENTS = 50
BYTE_INTERVAL = 0.1  # one byte every 100 ms
EXPORT_URL = "/resource/v1/i/export-to-s3dir"


def nginx_binary() -> str:
    return debian_tool("nginx", "nginx", sbin=True)


class Nginx:
    """Debian's nginx with deploy/nginx/nginx.conf and resourced.conf as shipped, but for the
    listen and upstream addresses, as the user running the tests, with its own prefix (pid, temp
    dirs) and its log in a file."""

    def __init__(self, base: Path, upstream_port: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = base / f"nginx-{self.port}"
        self.dir.mkdir(parents=True)
        shutil.copy(NGINX_DIR / "nginx.conf", self.dir / "nginx.conf")
        site = (NGINX_DIR / "resourced.conf").read_text()
        for shipped, here in (("server web:8000;", f"server 127.0.0.1:{upstream_port};"),
                              ("listen 8080;", f"listen 127.0.0.1:{self.port};")):
            assert site.count(shipped) == 1, f"resourced.conf: {shipped!r} is the line this test replaces"
            site = site.replace(shipped, here)
        (self.dir / "resourced.conf").write_text(site)
        directives = "daemon off;"
        if os.geteuid() == 0:
            directives += " user root;"  # its workers, as the test user: the prefix is private to it
        self.log_path = self.dir / "nginx.log"
        # append mode: the access log (opened by nginx, O_APPEND) and stderr share this file
        self.log = open(self.log_path, "ab")
        import subprocess

        self.process = subprocess.Popen(
            [nginx_binary(), "-p", f"{self.dir}/", "-c", str(self.dir / "nginx.conf"), "-e", "stderr", "-g", directives],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            wait_for_port(self.port, 15, self.process)
        except BaseException:
            self.stop()
            raise

    def read_log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        from tests.servers import stop_process

        stop_process(self.process, timeout=10)
        self.log.close()


class SlowClient(threading.Thread):
    """Sends `request` one byte every BYTE_INTERVAL on a raw socket, then reads the status line."""

    def __init__(self, port: int, request: bytes, stop: threading.Event):
        super().__init__(daemon=True)
        self.port, self.request, self.stop = port, request, stop
        self.sent_all = threading.Event()
        self.status_line = ""
        self.error = ""

    def run(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
                for index in range(len(self.request)):
                    if self.stop.is_set():
                        return
                    sock.sendall(self.request[index:index + 1])
                    self.stop.wait(BYTE_INTERVAL)
                self.sent_all.set()
                answer = b""
                while b"\r\n" not in answer:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    answer += chunk
                self.status_line = answer.split(b"\r\n", 1)[0].decode(errors="replace")
        except OSError as exc:
            self.error = repr(exc)
        finally:
            self.sent_all.set()


def slow_request(number: int) -> bytes:
    """An export request with an unknown session: 117 bytes of header (12 s at one byte per
    100 ms), then 80 bytes of JSON body (8 s). Once it has arrived whole, the app answers 401 at
    once and writes nothing."""
    body = json.dumps({"SessionId": f"slow-client-{number:02d}", "FileName": "x" * 33}).encode()
    head = (f"POST {EXPORT_URL} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def start_slow_clients(port: int, stop: threading.Event) -> list[SlowClient]:
    clients = [SlowClient(port, slow_request(number), stop) for number in range(SLOW_CLIENTS)]
    for client in clients:
        client.start()
    return clients


def timed(call) -> tuple[float, requests.Response]:
    started = time.monotonic()
    answer = call()
    return time.monotonic() - started, answer


@pytest.fixture(scope="module")
def nginx(prod_stack):
    server = Nginx(prod_stack.base, prod_stack.web.port)
    yield server
    server.stop()


@pytest.fixture
def polled_export(prod_stack):
    """An export of this test's session, posted once; the test polls it by posting it again. It is
    cancelled afterwards, so that no later test's worker runs it."""
    session_id = prod_stack.session_id()
    body = export_body("mp4/PSLOWCLIENT/rec-slow/1/manifest.mpd", session_id)
    first = prod_stack.post_export(body)
    assert first.status_code == 200, first.text
    task_id = first.json()["TaskId"]
    assert task_id, first.text
    yield body, task_id
    answer = requests.delete(f"{prod_stack.web.url}{EXPORT_URL}/{task_id}", headers={"X-Session-Id": session_id},
                             timeout=10)
    assert answer.status_code == 200, answer.text
    assert prod_stack.export_state(task_id)["status"] == "cancelled"


def test_fifty_slow_clients_stall_gunicorn_alone_but_not_behind_nginx(prod_stack, nginx, polled_export):
    body, task_id = polled_export

    # --- through nginx: the API answers while 50 clients trickle their requests in ---------------
    stop = threading.Event()
    clients = start_slow_clients(nginx.port, stop)
    health, polls = [], []
    started = time.monotonic()
    try:
        time.sleep(1.0)  # every client connected and sending
        while not any(client.sent_all.is_set() for client in clients):
            took, answer = timed(lambda: requests.get(f"{nginx.url}/healthz", timeout=10))
            assert answer.status_code in (200, 503), answer.text  # 503: no worker in this test
            # /healthz itself waits up to 1 s for the workers' replies (elapsed_ms): what nginx and
            # the queue add comes on top
            health.append(round(took - answer.json()["elapsed_ms"] / 1000, 3))
            took, answer = timed(lambda: requests.post(f"{nginx.url}{EXPORT_URL}", json=body, timeout=10))
            assert answer.status_code == 200 and answer.json()["TaskId"] == task_id, answer.text
            polls.append(round(took, 3))
            time.sleep(0.25)
        held = time.monotonic() - started
        for client in clients:
            client.join(timeout=30)
    finally:
        stop.set()
    assert max(health) < 1.0, f"/healthz through nginx waited {max(health)} s beyond its own checks: {health}"
    assert max(polls) < 1.0, f"export polls through nginx took up to {max(polls)} s: {polls}"
    assert held > 15 and len(polls) >= 8, f"the slow clients were held {held:.1f} s, {len(polls)} polls"
    # nginx did not drop them: each slow request reached the app once whole, and got its answer
    assert [c.error for c in clients if c.error] == []
    assert {c.status_line for c in clients} == {"HTTP/1.1 401 Unauthorized"}, [c.status_line for c in clients]

    # --- gunicorn alone: the same 50 clients take its 8 threads, /healthz waits behind them -------
    stop = threading.Event()
    clients = start_slow_clients(prod_stack.web.port, stop)
    try:
        time.sleep(1.5)
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.get(f"{prod_stack.web.url}/healthz", timeout=(2, 5))
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=10)
    # and it recovers once they are gone
    wait_for(lambda: requests.get(f"{prod_stack.web.url}/healthz", timeout=5).status_code in (200, 503), 30,
             "gunicorn answers again after the slow clients left")


def declare_only(port: int, path: str, content_length: int, **headers: str) -> tuple[int, dict, dict]:
    """POST with a declared Content-Length, sending no byte of the body: (status, headers, JSON body)
    of the answer that comes anyway."""
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {content_length}",
             *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items())]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        sock.settimeout(5)
        answer = b""
        while True:
            head, _, payload = answer.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), None)
            if length is not None and len(payload) >= length:
                break
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    status_line, *header_lines = head.decode().split("\r\n")
    answer_headers = {name.strip().lower(): value.strip() for name, _, value in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), answer_headers, json.loads(payload)


def test_image_upload_is_not_buffered_so_the_apps_early_answers_come_first(nginx):
    """The upload location streams: a request with a bad session gets the app's 401 before it has
    sent any of its declared 10 MB (buffered, nginx would wait for all of it first)."""
    status, _, answer = declare_only(nginx.port, "/api/imgbed/v1/upload/slow/test", 10_000_000,
                                     X_Session_Id="not-a-session", Content_Type="multipart/form-data; boundary=x")
    assert status == 401, answer
    assert answer["ErrorCode"] == 3 and answer["FailedFiles"] == [], answer


def test_nginx_refuses_oversize_bodies_in_the_endpoints_json_shape(nginx):
    """Bodies over client_max_body_size are refused by their Content-Length before nginx reads them,
    in the shape the app itself answers 413 with."""
    cases = [
        (EXPORT_URL, 1024 * 1024 + 1, {"ErrorCode": -2}),
        ("/export-to-s3dir", 1024 * 1024 + 1, {"ErrorCode": -2}),
        ("/resource/v1/i/restore", 1024 * 1024 + 1, {"code": 413}),
        ("/api/imgbed/v1/delete", 1024 * 1024 + 1, {"errCode": 2}),
        ("/api/imgbed/v1/upload/big/test", 64 * 1024 * 1024 + 1, {"ErrorCode": 2, "FailedFiles": []}),
    ]
    for path, size, expected in cases:
        status, headers, answer = declare_only(nginx.port, path, size, Content_Type="application/json")
        assert status == 413, (path, answer)
        assert headers["content-type"] == "application/json"
        assert expected.items() <= answer.items(), (path, answer)
