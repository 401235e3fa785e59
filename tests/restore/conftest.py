"""Fixtures of the restore tests: a restore worker with short timings and scripted callback
receivers on loopback. How long the S3 endpoint keeps a restore in progress is set with the
fixtures of tests/conftest.py (restore_pace, archived_objects, hold_restores_forever).
"""

import http.server
import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid

import pytest

from tests.conftest import worker_env
from tests.servers import Worker

RESTORE_QUEUES = ("restore", "callbacks")

# The restore worker's settings: loopback receivers allowed, fast polls, short retry windows.
RESTORE_WORKER_SETTINGS = {
    "CALLBACK_ALLOW_PRIVATE": "true",
    "CALLBACK_TIMEOUT": "1",
    "CALLBACK_RETRY_HOURS": str(8 / 3600),  # 8 s of retries
    "CALLBACK_BACKOFF_BASE_SECONDS": "0.5",
    "CALLBACK_BACKOFF_MAX_SECONDS": "2",
    "RESTORE_POLL_SECONDS": "1",
    "RESTORE_TIMEOUT_HOURS": str(10 / 3600),  # 10 s
    "RESTORE_MULTIPART_COPY_THRESHOLD": str(5 * 1024 * 1024),
    "RESTORE_MULTIPART_COPY_CHUNKSIZE": str(5 * 1024 * 1024),
}
RESTORE_TIMEOUT_SECONDS = 10
CALLBACK_RETRY_SECONDS = 8


def _stop_quickly(worker: Worker, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds (a warm shutdown can hang for many seconds)."""
    process = worker.process
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass
    worker.log.close()


@pytest.fixture(scope="session")
def restore_worker(django_db_setup, django_db_blocker, s3_server, log_dir):
    """A worker on the restore and callbacks queues only, with RESTORE_WORKER_SETTINGS.

    Workers already running in this test session (the shared ``celery_worker``) are told to stop
    consuming these two queues while it runs, so that every restore task meets these settings.
    """
    from resourced.celery import app

    paused = _pause_restore_consumers(app)
    worker = Worker(worker_env(**RESTORE_WORKER_SETTINGS), log_dir, hostname="restorehost",
                    queues=",".join(RESTORE_QUEUES), concurrency=4)
    try:
        worker.wait_ready(app)
        yield worker
    finally:
        _stop_quickly(worker)
        for node, queue in paused:
            app.control.add_consumer(queue, destination=[node], reply=True, timeout=5)


def _pause_restore_consumers(app) -> list[tuple[str, str]]:
    """Tell running workers that consume the restore queues to stop; the (node, queue) pairs."""
    replies = app.control.ping(timeout=1.0) or []
    nodes = [name for reply in replies for name in reply]
    if not nodes:
        return []
    active = app.control.inspect(destination=nodes, timeout=2.0).active_queues() or {}
    paused = [(node, q["name"]) for node, queues in active.items() for q in queues if q["name"] in RESTORE_QUEUES]
    for node, queue in paused:
        app.control.cancel_consumer(queue, destination=[node], reply=True, timeout=5)
    return paused


# --- Callback receivers -----------------------------------------------------------------------


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
