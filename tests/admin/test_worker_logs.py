"""Structured logs: with LOG_JSON=true a real worker writes one JSON object per line, and every line
of an export's pipeline carries the export's TaskId."""

import json

import pytest
from kombu import Queue

from exports import services
from exports.models import Export
from exports.queues import QUEUE_MEDIA_IO
from resourced.celery import app, host_queue
from tests.conftest import worker_env
from tests.exports.conftest import ORIGIN_MS, export_body, poll, recordings_dir, uploaded_recordings  # noqa: F401
from tests.servers import Worker

pytestmark = pytest.mark.django_db(transaction=True)
HOST = "logjson"


@pytest.fixture
def json_worker(django_db_setup, django_db_blocker, s3_server, log_dir, monkeypatch):
    """A worker of its own logging JSON; the export is sent to its host queue, so that no other
    worker of the session (logging plain text) takes a step of it."""
    from exports.tasks import download

    own_queue = Queue(host_queue(QUEUE_MEDIA_IO, HOST), routing_key=host_queue(QUEUE_MEDIA_IO, HOST))
    worker = Worker(worker_env(LOG_JSON="true", LOG_LEVEL="INFO"), log_dir, hostname=HOST)
    monkeypatch.setattr(services, "export_enqueue", lambda *, export: download.apply_async(
        args=[export.task_id, export.restarts], queue=own_queue))
    try:
        worker.wait_ready(app)
        yield worker
    finally:
        worker.stop()


def test_every_log_line_of_an_export_carries_its_task_id(api, session_id, json_worker, uploaded_recordings):
    live_path = uploaded_recordings("dash-logs", "dash", duration_s=12, template="timeline")
    body = export_body(live_path, session_id, export_type=1, StartPos=ORIGIN_MS + 2000, Duration=3000,
                       FileName="log-test")
    answer = api.post("/resource/v1/i/export-to-s3dir", body, format="json").json()
    task_id = answer["TaskId"]
    assert poll(api, task_id, session_id)["ErrorCode"] == 5
    json_worker.stop()  # every line written

    records, other = [], []
    for line in json_worker.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
        elif line.strip():
            other.append(line)
    assert records, "the worker logs JSON"
    assert {"asctime", "levelname", "name", "task_id", "message"} <= set(records[0])
    # Celery's own lines go through the same handler: JSON too (only its start banner is not logging)
    assert any(r["name"].startswith("celery") for r in records)

    about_it = [r for r in records if task_id in r["message"]]
    pipeline = [r for r in records if r["name"].startswith("exports")]
    assert about_it and pipeline
    assert all(r["task_id"] == task_id for r in about_it), [r for r in about_it if r["task_id"] != task_id]
    assert all(r["task_id"] == task_id for r in pipeline), [r for r in pipeline if r["task_id"] != task_id]
    done = {r["message"].split(": ", 1)[1].split(" ")[0] for r in pipeline if " done on " in r["message"]}
    assert done == {"download", "cut", "encode", "thumbnail", "upload"}
    # the download's worker threads log with the TaskId too
    assert any("downloaded" in r["message"] for r in pipeline)
    assert Export.objects.get(task_id=task_id).step_hosts["upload"] == HOST
