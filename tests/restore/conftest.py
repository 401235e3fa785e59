"""Fixtures of the restore tests: a restore worker with short timings and scripted callback
receivers on loopback. How long the S3 endpoint keeps a restore in progress is set with the
fixtures of tests/conftest.py (restore_pace, archived_objects, hold_restores_forever).
"""

import http.server
import json
import socket
import threading
import time
import uuid

import pytest

from tests.conftest import CALLBACK_WORKER_RETRY_SECONDS, RESTORE_WORKER_TIMEOUT_SECONDS

# The worker of the restore tests (the restore and callbacks queues, short timings) is
# tests/conftest.py's restore_worker: the export callback tests use it too.
RESTORE_TIMEOUT_SECONDS = RESTORE_WORKER_TIMEOUT_SECONDS
CALLBACK_RETRY_SECONDS = CALLBACK_WORKER_RETRY_SECONDS


class _V6Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


class Receiver:
    """A real HTTP server on loopback that answers callbacks from a script.

    `script` is a list of (status, body) answers used in order, the last one repeated; a body of
    None means never answer (the connection is held open until the server stops).
    """

    def __init__(self, script=None, host: str = "127.0.0.1"):
        self.script = list(script or [(200, {"code": 0, "message": "success"})])
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver.lock:
                    index = len(receiver.requests)
                    receiver.requests.append({"time": time.time(), "path": self.path,
                                              "headers": dict(self.headers.items()), "body": body})
                    status, answer = receiver.script[min(index, len(receiver.script) - 1)]
                if answer is None:
                    receiver.stopping.wait(60)
                    return
                data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", receiver.redirect_to)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        server_class = _V6Server if ":" in host else http.server.ThreadingHTTPServer
        self.server = server_class((host, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://{'[' + host + ']' if ':' in host else host}:{self.port}/resource/v1/i/PutRestoreResult"
        self.redirect_to = ""
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def bodies(self) -> list[dict]:
        with self.lock:
            return [json.loads(r["body"]) for r in self.requests]

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver_factory():
    made = []

    def make(script=None, host="127.0.0.1") -> Receiver:
        receiver = Receiver(script, host)
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        receiver.stop()


@pytest.fixture
def post_restore(api, session_id):
    def post(**fields):
        fields.setdefault("task_id", f"job-{uuid.uuid4().hex[:10]}")
        fields.setdefault("days", 2)
        fields.setdefault("tier", "Standard")
        return api.post("/resource/v1/i/restore", fields, format="json", HTTP_X_SESSION_ID=session_id)

    return post


@pytest.fixture
def get_restore(api, session_id):
    def get(task_id: str):
        return api.get(f"/resource/v1/i/restore/{task_id}", HTTP_X_SESSION_ID=session_id)

    return get
