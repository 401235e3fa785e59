"""Fixtures shared by the whole suite: the embedded broker, the real S3 endpoint, real Celery
workers, API clients.

The settings module (resourced.settings.test) gives every run its own var/ directory; the broker
(the embedded Redis under that directory), the S3 server and the workers are started once per
session and shared.
"""

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests
from django.conf import settings

from tests.servers import EmbeddedRedis, S3Server, Worker


@pytest.fixture(scope="session")
def log_dir() -> Path:
    path = Path(os.environ["RESOURCED_VAR_DIR"]) / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session", autouse=True)
def embedded_broker(log_dir):
    """The embedded Redis under this run's var dir, which the settings' default CELERY_BROKER_URL
    names: up before any test enqueues, for the tests and the worker processes they start (which
    inherit RESOURCED_VAR_DIR). Nothing is started when CELERY_BROKER_URL names another broker."""
    from resourced.embedded_broker import broker_url

    var_dir = Path(os.environ["RESOURCED_VAR_DIR"])
    if settings.CELERY_BROKER_URL != broker_url(var_dir):
        yield None
        return
    server = EmbeddedRedis(var_dir, log_dir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_server(log_dir):
    server = S3Server(log_dir)
    previous = settings.RESOURCED_S3_ENDPOINT_URL
    settings.RESOURCED_S3_ENDPOINT_URL = server.url
    os.environ["RESOURCED_S3_ENDPOINT_URL"] = server.url
    from resourced.s3 import ensure_buckets

    ensure_buckets([settings.SOURCE_DEFAULT_BUCKET, settings.EXPORT_DEFAULT_BUCKET, settings.IMGBED_BUCKET])
    yield server
    settings.RESOURCED_S3_ENDPOINT_URL = previous
    server.stop()


@pytest.fixture
def s3(s3_server):
    """A boto3 client on the test endpoint with the service's credentials."""
    from resourced.s3 import default_client

    return default_client()


@pytest.fixture
def bucket(s3):
    """A fresh, empty bucket for one test."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def worker_env(**extra) -> dict:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="resourced.settings.test",
        DATABASE_URL=f"sqlite:///{settings.DATABASES['default']['TEST']['NAME']}",
        RESOURCED_S3_ENDPOINT_URL=settings.RESOURCED_S3_ENDPOINT_URL,
        PYTHONUNBUFFERED="1",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, s3_server, log_dir):
    """One real worker process on the media queues, shared by the session. The restore and
    callbacks queues are restore_worker's (its settings let callbacks reach loopback receivers):
    whichever of the two starts first, no callback is delivered with the other's settings."""
    from resourced.celery import app

    worker = Worker(worker_env(), log_dir, hostname="testhost", queues="default,media.io,media.cpu")
    try:
        worker.wait_ready(app)
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def api():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def session_id(db):
    from resourced.sessions import session_create

    _session, sid = session_create(userid="tester@example.com", ttl_seconds=3600)
    return sid


def debian_tool(command: str, package: str, *, sbin: bool = False) -> str:
    """The path of a command that scripts/test-services.sh installs from Debian's `package`: the
    test fails when it is missing although this runs as root (the install did not happen), and
    is skipped, saying what to install, when it is missing otherwise."""
    found = shutil.which(command)
    if not found and sbin and os.access(f"/usr/sbin/{command}", os.X_OK):
        found = f"/usr/sbin/{command}"  # not on a non-root PATH
    if found:
        return found
    if os.geteuid() == 0:
        pytest.fail(f"{command} is missing although this runs as root: scripts/test-services.sh installs it "
                    f"(apt-get install {package})")
    pytest.skip(f"{command} is not installed and this is not root: apt-get install {package} (Debian), "
                "or run `make test` as root, which installs it")


# --- moto's restore state machine -------------------------------------------------------------
#
# In-progress restores: moto's server models a restore as a per-object state machine
# (``s3::keyrestore``: not started → IN_PROGRESS → RESTORED) whose pace is set through its own
# state-manager API (``POST /moto-api/state-manager/set-transition``). By default it is
# "immediate": ``ongoing-request="false"`` at the first HEAD. With ``{"progression": "time",
# "seconds": S}`` an object moves one state per S seconds, counted from its creation; one quirk: an
# object whose restore was asked for while it is still in the first state reads as
# ``ongoing-request="false"``. ``archived_objects`` therefore waits S seconds after putting the
# objects, so that the restore the service asks for reads ``ongoing-request="true"`` for at least
# another S seconds before it completes. ``hold_restores_forever`` switches to a manual progression
# that never advances, for restores that never finish (the timeout).


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


# --- the worker that delivers callbacks (restore results, export callbacks) ---------------------

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
RESTORE_WORKER_TIMEOUT_SECONDS = 10
CALLBACK_WORKER_RETRY_SECONDS = 8


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
