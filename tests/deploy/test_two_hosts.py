"""Two worker hosts on one machine, started by deploy/start/worker-io and deploy/start/worker-cpu.

After download, the rest of an export runs where its work dir is: on the host that downloaded.
A host that disappears mid-export (SIGKILL, no warm shutdown) leaves the export stale; the
stale-export sweep starts it again from download, and it completes once, on the other host.
"""

import subprocess
import uuid
from pathlib import Path

import pytest
from django.utils import timezone

from exports.models import Export
from exports.tasks import sweep_stale
from exports.queues import QUEUE_MEDIA_IO
from resourced.celery import app
from tests.deploy.conftest import set_consuming
from tests.exports.conftest import ORIGIN_MS, export_body, poll
from tests.servers import ROOT, wait_for

URL = "/resource/v1/i/export-to-s3dir"
STAGES = {"download", "cut", "encode", "thumbnail", "upload"}
pytestmark = pytest.mark.django_db(transaction=True)


def submit(api, body) -> str:
    answer = api.post(URL, body, format="json").json()
    assert answer["ErrorCode"] == 1, answer
    return answer["TaskId"]


def host_queues_declared(consumes: str) -> set[str]:
    """The host queues that a worker consuming `consumes` knows after resourced/celery.py set it up."""
    from types import SimpleNamespace

    from celery import Celery
    from kombu import Queue

    from resourced.celery import QUEUE_DEFAULT, _consume_host_queues, declared_queues

    SHARED_QUEUES = declared_queues()

    probe = Celery("probe", set_as_current=False)
    probe.conf.update(task_queues=[Queue(n, routing_key=n) for n in SHARED_QUEUES], task_default_queue=QUEUE_DEFAULT,
                      task_create_missing_queues=True)
    probe.amqp.queues.select([consumes])
    _consume_host_queues(sender=None, instance=SimpleNamespace(app=probe))
    return {name for name, queue in probe.amqp.queues.items() if "@" in name and "@" not in queue.exchange.name}


def split_workers_supported() -> bool:
    return all(len(host_queues_declared(kind)) == 2 for kind in ("media.io", "media.cpu"))


needs_split_workers = pytest.mark.skipif(
    not split_workers_supported(),
    reason="resourced/celery.py declares only the host queue a worker consumes "
           "(see test_each_worker_declares_both_host_queues_of_its_host)",
)


def test_each_worker_declares_both_host_queues_of_its_host(settings):
    """worker-io sends cut to media.cpu@<host>, worker-cpu sends upload to media.io@<host>: each must
    know the other's host queue, bound to an exchange whose name every broker takes. Otherwise the
    queue is made on the fly with an exchange named after it ('@' in its name), which not every
    broker takes (the filesystem transport used before the embedded Redis refused it): the
    download's chain is not sent and the export waits for the sweep."""
    host = settings.WORKER_HOSTNAME
    expected = {f"media.io@{host}", f"media.cpu@{host}"}
    assert host_queues_declared("media.io") == expected
    assert host_queues_declared("media.cpu") == expected


def test_each_worker_consumes_its_own_host_queue(two_hosts):
    """worker-io takes media.io@<host>, worker-cpu media.cpu@<host>: together, the whole chain. The
    healthcheck of each kind pings the worker of its own host."""
    for host in two_hosts.values():
        replies = app.control.inspect(destination=host.nodenames, timeout=5.0).active_queues() or {}
        queues = {node: {q["name"] for q in replies.get(node, [])} for node in host.nodenames}
        assert queues[host.nodename("io")] == {"default", "media.io", "restore", "callbacks", f"media.io@{host.name}"}
        assert queues[host.nodename("cpu")] == {"media.cpu", f"media.cpu@{host.name}"}
    host = next(iter(two_hosts.values()))
    for kind in ("worker-io", "worker-cpu"):
        assert healthcheck(kind, host.env).returncode == 0
    assert healthcheck("worker-cpu", dict(host.env, RESOURCED_WORKER_HOSTNAME="no-such-host")).returncode != 0


def healthcheck(kind: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "deploy" / "healthcheck"), kind], cwd="/", env=env, capture_output=True,
                          text=True, timeout=60)


@needs_split_workers
def test_after_download_every_step_runs_on_the_host_that_downloaded(api, s3, bucket, session_id, two_hosts,
                                                                     uploaded_recordings):
    live_path = uploaded_recordings("dash-timeline", "dash", duration_s=20, template="timeline")
    io_nodes = [host.nodename("io") for host in two_hosts.values()]
    # queue every export before either host takes one, so that both hosts get some
    set_consuming(app, io_nodes, QUEUE_MEDIA_IO, consume=False)
    try:
        task_ids = [
            submit(api, export_body(live_path, session_id, ExportS3Bucket=bucket, export_type=i % 2,
                                    ExportFormat="mp4", StartPos=ORIGIN_MS + 1000 * i, Duration=3000))
            for i in range(6)
        ]
    finally:
        set_consuming(app, io_nodes, QUEUE_MEDIA_IO, consume=True)

    for task_id in task_ids:
        answer = poll(api, task_id, session_id, timeout=180)
        assert answer["ErrorCode"] == 5, answer
    exports = list(Export.objects.filter(task_id__in=task_ids))
    for export in exports:
        assert export.host in two_hosts, (export.task_id, export.host)
        assert set(export.step_hosts) == STAGES, export.step_hosts
        assert set(export.step_hosts.values()) == {export.host}, export.step_hosts
        assert not (two_hosts[export.host].work_dir / export.task_id).exists(), "work dir removed after upload"
    assert {export.host for export in exports} == set(two_hosts), "both hosts exported"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert len(keys) == len(task_ids) == len(set(keys))


@needs_split_workers
def test_a_host_lost_mid_export_is_recovered_by_the_sweep_on_the_other_host(api, s3, bucket, session_id, settings,
                                                                            two_hosts, uploaded_recordings):
    # an H.265 encode of 40 s: a window of seconds between the end of download and the upload
    live_path = uploaded_recordings("dash-60s", "dash", duration_s=60, template="timeline")
    userid = f"lost-host-{uuid.uuid4().hex[:8]}@example.com"
    task_id = submit(api, export_body(live_path, session_id, ExportS3Bucket=bucket, export_type=2, ExportFormat="ts",
                                      StartPos=ORIGIN_MS + 10_000, Duration=40_000, userid=userid))

    def past_download():
        export = Export.objects.get(task_id=task_id)
        assert export.status != Export.Status.READY, "the export finished before its host could be stopped"
        return export if export.host and export.stage in ("cut", "encode", "thumbnail") else None

    export = wait_for(past_download, 120, "export past its download", interval=0.05)
    lost = two_hosts[export.host]
    (survivor,) = (host for name, host in two_hosts.items() if name != lost.name)
    lost.kill()
    assert (lost.work_dir / task_id).is_dir(), "the lost host held the work dir"

    # the sweep (beat runs it every minute) reads EXPORT_STALE_SECONDS in the process that runs it
    settings.EXPORT_STALE_SECONDS = 3

    def stale():
        export = Export.objects.get(task_id=task_id)
        return (timezone.now() - export.heartbeat_at).total_seconds() > 4 and export

    stale_export = wait_for(stale, 60, "no heartbeat from the lost host", interval=0.2)
    assert stale_export.status == Export.Status.RUNNING and stale_export.host == lost.name
    assert sweep_stale() == 1
    assert sweep_stale() == 0, "restarted once"

    answer = poll(api, task_id, session_id, timeout=180)
    assert answer["ErrorCode"] == 5, answer
    export = Export.objects.get(task_id=task_id)
    assert export.restarts == 1
    assert export.host == survivor.name
    assert set(export.step_hosts) == STAGES and set(export.step_hosts.values()) == {survivor.name}, export.step_hosts
    assert Export.objects.filter(userid=userid).count() == 1
    assert Export.objects.filter(userid=userid, status=Export.Status.READY).count() == 1
    objects = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert [o["Key"] for o in objects] == [answer["VideoPath"].lstrip("/")]
    assert not (survivor.work_dir / task_id).exists()
    # what the lost host had made stays on its disk: nothing crossed to the survivor
    assert any(Path(lost.work_dir / task_id).rglob("*.m4s"))
