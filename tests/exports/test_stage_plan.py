"""How the stage table runs an export's stages: the upload task makes the thumbnail and uploads the
clip at the same time (stages.UPLOAD runs beside THUMBNAIL), records both, and a failed thumbnail
takes back the clip it uploaded (the task runs in this process, services.export_run as the worker
calls it, on a real clip, against the real S3 endpoint and image bed); a stream copy from
keyframes is made by the task that downloads it alone (through the API and a real worker)."""

import threading
import time

import pytest
from django.conf import settings

from exports import services, steps
from exports.errors import ErrorCode, ExportError, ExportFailed
from exports.models import Export
from exports.paths import ExportPaths
from exports.stages import BY_NAME, STAGES, THUMBNAIL, UPLOAD, task_stages, tasks_after
from tests import mediagen
from tests.admin.conftest import make_export
from tests.exports.conftest import ORIGIN_MS, export_body, poll, submit

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE_UPLOAD = ("download", "cut", "encode")


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    return mediagen.make_file(str(tmp_path_factory.mktemp("clip") / "clip.ts"), duration_s=2)


def export_at_upload(bucket: str, clip_file: str) -> Export:
    """An export whose cut and encode are recorded and whose clip is in its work dir."""
    export = make_export(status=Export.Status.RUNNING, stage="encode", progress=85, dest_bucket=bucket,
                         dest_region="us-east-1", host=settings.WORKER_HOSTNAME, file_name="clip",
                         timings={s: 0.1 for s in BEFORE_UPLOAD}, attempts={s: 1 for s in BEFORE_UPLOAD},
                         step_hosts={s: settings.WORKER_HOSTNAME for s in BEFORE_UPLOAD})
    paths = ExportPaths.of(export)
    paths.output.parent.mkdir(parents=True, exist_ok=True)
    paths.output.write_bytes(open(clip_file, "rb").read())
    return export


def run_upload_task(export: Export) -> None:
    services.export_run(delivery=services.Delivery(task="exports.upload", task_id=export.task_id, generation=0,
                                                   is_retry=False, retries_left=False))


def test_the_stage_table_runs_the_upload_beside_the_thumbnail():
    assert [s.name for s in task_stages("exports.upload")] == ["thumbnail", "upload"]
    assert UPLOAD.beside == "thumbnail" and THUMBNAIL.beside is None
    assert BY_NAME["thumbnail"].queue == BY_NAME["upload"].queue


def test_thumbnail_and_upload_run_at_once_and_both_are_recorded(s3, bucket, clip_file, settings):
    # each stage held for 0.6 s: both are seen running together (attempt counted, no time recorded)
    settings.FAULT_INJECTION = {"delay": {"thumbnail": 0.6, "upload": 0.6}}
    export = export_at_upload(bucket, clip_file)
    seen: list[tuple] = []
    stop = threading.Event()

    def watch():
        from django.db import connections
        try:
            while not stop.is_set():
                row = Export.objects.values("attempts", "timings", "progress").get(pk=export.pk)
                seen.append((set(row["attempts"]), set(row["timings"]), row["progress"]))
                stop.wait(0.05)
        finally:
            connections.close_all()

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        run_upload_task(export)
    finally:
        stop.set()
        watcher.join()

    export.refresh_from_db()
    assert export.status == Export.Status.READY, (export.error_code, export.error_message)
    assert {"thumbnail", "upload"} <= set(export.timings)
    both_running = [s for s in seen if {"thumbnail", "upload"} <= s[0] and not {"thumbnail", "upload"} & s[1]]
    assert both_running, seen
    progress = [p for _, _, p in seen]
    assert progress == sorted(progress), "Progress never goes down"
    assert s3.head_object(Bucket=bucket, Key=export.video_key)["ContentLength"] > 0
    assert export.image_path


def test_a_failed_thumbnail_takes_back_the_clip_uploaded_beside_it(s3, bucket, clip_file, settings, monkeypatch):
    # the upload is quick and the thumbnail fails after it: the export fails with the thumbnail's
    # code and the clip it uploaded is removed; an object of someone else is never touched
    settings.FAULT_INJECTION = {"delay": {"thumbnail": 0.5}}
    export = export_at_upload(bucket, clip_file)
    other_key = f"export/{export.peer_id}/someone-else.ts"
    s3.put_object(Bucket=bucket, Key=other_key, Body=b"not ours")

    def broken_thumbnail(**_kwargs):
        # (a fault the suite cannot cause with a clip that decodes: the thumbnail step failing for good)
        raise ExportError(ErrorCode.MEDIA, "media: the first frame does not decode")

    monkeypatch.setattr(steps, "thumbnail", broken_thumbnail)
    with pytest.raises(ExportFailed):
        run_upload_task(export)

    export.refresh_from_db()
    assert export.status == Export.Status.FAILED and export.error_code == ErrorCode.MEDIA
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == [other_key], "the clip uploaded beside the failed thumbnail was removed, nothing else"


# --- a remux (stream copy from keyframes) is made by the task that downloads it ----------------------

def test_a_remux_is_made_by_its_download_task_alone():
    assert [s.name for s in task_stages("exports.download", remux=True)] == [
        "download", "cut", "encode", "thumbnail", "upload"]
    everything = {s.name for s in STAGES}
    assert tasks_after("exports.download", done=everything) == []
    assert tasks_after("exports.download", done={"download"}) == ["exports.process", "exports.upload"]
    # a process message of a remux sent before an upgrade still runs what is left, then the upload
    assert [s.name for s in task_stages("exports.process", remux=True)] == ["cut", "encode"]
    assert tasks_after("exports.process", done={"download", "cut", "encode"}) == ["exports.upload"]


@pytest.mark.parametrize("cut_mode, tasks", [
    ("keyframe", {"exports.download"}),
    ("accurate", {"exports.download", "exports.process", "exports.upload"}),
])
def test_the_tasks_an_export_of_each_cut_mode_is_made_by(api, s3, session_id, celery_worker, uploaded_recordings,
                                                         cut_mode, tasks):
    from django_celery_results.models import TaskResult

    live_path = uploaded_recordings("dash-timeline", "dash", duration_s=20, template="timeline")
    body = export_body(live_path, session_id, export_type=0, StartPos=ORIGIN_MS + 6500, Duration=4000,
                       CutMode=cut_mode)
    answer = poll(api, submit(api, body)["TaskId"], session_id)
    assert answer["ErrorCode"] == 5, answer
    export = Export.objects.get(task_id=answer["TaskId"])
    assert set(export.timings) == {"download", "cut", "encode", "thumbnail", "upload"}
    deadline = time.monotonic() + 10
    while {r.task_name for r in TaskResult.objects.filter(task_args__contains=export.task_id)} != tasks:
        assert time.monotonic() < deadline, [r.task_name for r in TaskResult.objects.filter(
            task_args__contains=export.task_id)]
        time.sleep(0.1)
    results = {r.task_name: r for r in TaskResult.objects.filter(task_args__contains=export.task_id)}
    assert {r.status for r in results.values()} == {"SUCCESS"}
    # each result says what became of the export (what Flower shows beside SUCCESS)
    if cut_mode == "keyframe":
        assert results["exports.download"].result == (
            f'"download, cut, encode, thumbnail, upload done; ready at {answer["VideoPath"]}"')
    else:
        assert results["exports.download"].result == f'"download done; exports.process sent to media.cpu@{export.host}"'
        assert results["exports.upload"].result == f'"thumbnail, upload done; ready at {answer["VideoPath"]}"'

