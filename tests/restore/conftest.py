"""Fixtures of the restore tests: a restore worker with short timings, scripted callback
receivers on loopback, and control over how long the S3 endpoint keeps a restore in progress.

**In-progress restores.** moto's server models a restore as a per-object state machine
(``s3::keyrestore``: not started → IN_PROGRESS → RESTORED) whose pace is set through its own
state-manager API (``POST /moto-api/state-manager/set-transition``). By default it is
"immediate": ``ongoing-request="false"`` at the first HEAD. With ``{"progression": "time",
"seconds": S}`` an object moves one state per S seconds, counted from its creation; one quirk: an
object whose restore was asked for while it is still in the first state reads as
``ongoing-request="false"``. ``archived_objects`` therefore waits S seconds after putting the
objects, so that the restore the service asks for reads ``ongoing-request="true"`` for at least
another S seconds before it completes. ``hold_restores_forever`` switches to a manual progression
that never advances, for restores that never finish (the timeout).
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
import requests

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


# --- moto's restore state machine -------------------------------------------------------------


class RestorePace:
    def __init__(self, url: str):
        self.url = url

    def set(self, transition: dict) -> None:
        response = requests.post(f"{self.url}/moto-api/state-manager/set-transition",
                                 data=json.dumps({"model_name": "s3::keyrestore", "transition": transition}), timeout=5)
        assert response.status_code == 201, response.text

    def reset(self) -> None:
        requests.post(f"{self.url}/moto-api/state-manager/unset-transition",
                      data=json.dumps({"model_name": "s3::keyrestore"}), timeout=5)


@pytest.fixture
def restore_pace(s3_server):
    pace = RestorePace(s3_server.url)
    yield pace
    pace.reset()


@pytest.fixture
def archived_objects(s3, restore_pace):
    """put(bucket, {key: (body, storage_class)}, in_progress_seconds=S): objects whose restores
    stay in progress for at least S seconds (0: moto's default, restored at once)."""

    def put(bucket: str, objects: dict, in_progress_seconds: float = 0) -> None:
        if in_progress_seconds:
            restore_pace.set({"progression": "time", "seconds": in_progress_seconds})
        for key, (body, storage_class) in objects.items():
            s3.put_object(Bucket=bucket, Key=key, Body=body, StorageClass=storage_class)
        if in_progress_seconds:
            time.sleep(in_progress_seconds + 0.2)  # past moto's first state: see the module doc

    return put


def hold_restores_forever(pace: RestorePace, s3, bucket: str, key: str) -> None:
    """Make the restore of `key` (asked for already) stay in progress until the test ends."""
    head = s3.head_object(Bucket=bucket, Key=key)  # moves it into IN_PROGRESS
    assert head.get("Restore") == 'ongoing-request="true"', head.get("Restore")
    pace.set({"progression": "manual", "times": 10**9})


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
