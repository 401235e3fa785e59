"""Fixtures shared by the whole suite: the embedded broker, the real S3 endpoint, real Celery
workers, API clients.

The settings module (resourced.settings.test) gives every run its own var/ directory; the broker
(the embedded Redis under that directory), the S3 server and the workers are started once per
session and shared.
"""

import os
import uuid
from pathlib import Path

import pytest
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
    """One real worker process on every queue, shared by the session."""
    from resourced.celery import app

    worker = Worker(worker_env(), log_dir, hostname="testhost")
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
