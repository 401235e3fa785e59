"""The foundation: sessions, health, the schema, Celery through the broker, error JSON."""

import json
import os
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from resourced.celery import app
from resourced.models import ApiSession
from resourced.sessions import SessionError, session_user
from tests.servers import ROOT, EmbeddedRedis


def test_celery_configuration_is_safe_for_long_media_tasks():
    conf = app.conf
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    visibility = conf.broker_transport_options["visibility_timeout"]
    assert conf.task_soft_time_limit < conf.task_time_limit < visibility
    assert conf.result_backend == "django-db"
    assert conf.beat_scheduler.startswith("django_celery_beat")
    queues = {q.name for q in conf.task_queues}
    assert {"default", "media.io", "media.cpu", "restore", "callbacks"} <= queues


@pytest.mark.django_db
def test_createsession_prints_a_session_that_the_local_backend_accepts(capsys):
    call_command("createsession", "--user", "alice@example.com", "--ttl", "60")
    session_id = capsys.readouterr().out.strip()
    assert len(session_id) == 32
    assert session_user(session_id=session_id) == "alice@example.com"
    # only a hash is stored
    assert not ApiSession.objects.filter(key_hash=session_id).exists()


@pytest.mark.django_db
def test_expired_and_unknown_sessions_are_refused(capsys):
    call_command("createsession", "--user", "bob", "--ttl", "60")
    session_id = capsys.readouterr().out.strip()
    ApiSession.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(SessionError):
        session_user(session_id=session_id)
    with pytest.raises(SessionError):
        session_user(session_id="0" * 32)
    with pytest.raises(SessionError):
        session_user(session_id="")


def test_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    body = json.loads(schema.content)
    assert body["openapi"].startswith("3.")
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()


def test_unknown_url_answers_json_404(client):
    response = client.get("/no/such/endpoint/here.txt")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")


@pytest.mark.django_db(transaction=True)
def test_a_task_runs_on_a_real_worker_through_the_broker(celery_worker):
    from resourced.tasks import ping

    result = ping.delay().get(timeout=60)
    assert result == {"pong": True, "host": "testhost"}


@pytest.mark.django_db(transaction=True)
def test_healthz_is_200_with_a_worker_on_each_media_queue(client, celery_worker):
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok" and body["down"] == []
    assert celery_worker.nodename in body["workers"]["media.io"]
    assert celery_worker.nodename in body["workers"]["media.cpu"]


def test_healthz_is_503_naming_the_media_queues_when_no_worker_answers(log_dir):
    # A separate process with its own empty broker (the embedded Redis of another var dir):
    # nothing consumes its queues.
    with tempfile.TemporaryDirectory(prefix="rs-healthz-") as var_dir:  # short: the socket path has a limit
        broker = EmbeddedRedis(Path(var_dir), log_dir)
        try:
            env = {k: v for k, v in os.environ.items() if k != "CELERY_BROKER_URL"}
            env.update(RESOURCED_VAR_DIR=var_dir, DATABASE_URL=f"sqlite:///{var_dir}/db.sqlite3",
                       DJANGO_SETTINGS_MODULE="resourced.settings.test")
            code = (
                "import django, json; django.setup();"
                "from django.conf import settings; assert settings.CELERY_BROKER_URL.startswith('redis+socket://');"
                "from django.test import Client; r = Client().get('/healthz');"
                "print(json.dumps({'status': r.status_code, 'body': r.json()}))"
            )
            out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                                 timeout=60)
        finally:
            broker.stop()
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == 503
    assert "queue media.io: no worker answers" in result["body"]["down"]
    assert "queue media.cpu: no worker answers" in result["body"]["down"]


@pytest.mark.django_db
def test_a_cached_session_is_refused_once_it_expires():
    import time

    from resourced.sessions import session_create

    _session, session_id = session_create(userid="short@example.com", ttl_seconds=2)
    assert session_user(session_id=session_id) == "short@example.com"  # now cached
    time.sleep(2.1)
    with pytest.raises(SessionError):
        session_user(session_id=session_id)


def test_the_web_process_moves_what_it_loaded_out_of_the_collectors_reach():
    """A full collection walks every tracked object: with the app's ~120 000 of them it stalled a
    request for 25-30 ms about once a thousand requests. The WSGI module, as gunicorn imports it,
    loads the views and freezes what is loaded; a full collection then has little left to scan."""
    probe = ("import gc, resourced.wsgi; frozen = gc.get_freeze_count(); "
             "gc.collect(); print(frozen, len(gc.get_objects()), 'exports.apis' in __import__('sys').modules)")
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="resourced.settings.base")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    frozen, still_tracked, views_loaded = int(out[0]), int(out[1]), out[2] == "True"
    assert views_loaded  # (the URL resolver imported the views before the freeze)
    assert frozen > 50_000
    assert still_tracked < frozen / 10
