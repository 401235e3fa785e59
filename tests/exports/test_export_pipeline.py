"""export-to-s3dir end to end: the real API, a real Celery worker, the real S3 endpoint, real media."""

import os
import time
from pathlib import Path

import av
import pytest
from django.conf import settings
from PIL import Image

from exports.models import Export
from tests import mediagen
from tests.exports.conftest import (
    ORIGIN_MS,
    export_body,
    poll,
    storage_info,
    submit,
    upload_dir,
)

URL = "/resource/v1/i/export-to-s3dir"
pytestmark = pytest.mark.django_db(transaction=True)


def fetch_clip(s3, answer: dict, tmp_path: Path, bucket: str | None = None) -> str:
    key = answer["VideoPath"].lstrip("/")
    local = tmp_path / Path(key).name
    s3.download_file(bucket or settings.EXPORT_DEFAULT_BUCKET, key, str(local))
    return str(local)


def duration_s(path: str) -> float:
    with av.open(path) as container:
        stream = container.streams.video[0]
        times = [float(f.time) for f in container.decode(stream)]
    return max(times) - min(times)


@pytest.mark.parametrize(
    "export_type, export_format, codec, cut_mode",
    [(0, "ts", "h264", "keyframe"), (0, "mp4", "h264", "keyframe"), (0, "ts", "h264", "accurate"),
     (0, "mp4", "h264", "accurate"), (1, "mp4", "h264", "accurate"), (2, "ts", "hevc", "accurate")],
)
def test_dash_export_in_each_type(api, s3, session_id, celery_worker, uploaded_recordings, tmp_path,
                                  export_type, export_format, codec, cut_mode):
    live_path = uploaded_recordings("dash-timeline", "dash", duration_s=20, template="timeline")
    body = export_body(live_path, session_id, export_type=export_type, ExportFormat=export_format,
                       StartPos=ORIGIN_MS + 6500, Duration=4000, CutMode=cut_mode)
    answer = poll(api, submit(api, body)["TaskId"], session_id)
    assert answer["ErrorCode"] == 5, answer
    assert answer["Stage"] == "done" and answer["Progress"] == 100 and answer["TimeWait"] == 0
    assert answer["LackLength"] == 0

    peer = live_path.split("/")[1]
    assert answer["VideoPath"].startswith(f"/export/{peer}/") and answer["VideoPath"].endswith(f".{export_format}")
    clip = fetch_clip(s3, answer, tmp_path)
    with av.open(clip) as container:
        assert container.streams.video[0].codec_context.name == codec
        assert container.streams.audio, "audio kept"
    first = mediagen.first_stamp(clip)
    if cut_mode == "keyframe":
        assert first == (6, 0)  # stream copy starts on the keyframe at or before 6.5 s
        assert 4.0 <= duration_s(clip) <= 4.6
        assert abs(answer["ClipStart"] - 6000) <= 40 and answer["ClipDuration"] >= 4000
    else:
        assert first == (6, 12) or first == (6, 13)  # frame accurate: 6.5 s at 25 fps
        assert abs(duration_s(clip) - (4.0 - 0.04)) <= 0.08
        assert abs(answer["ClipStart"] - 6500) <= 40 and abs(answer["ClipDuration"] - 4000) <= 40

    # the thumbnail is the first frame of the clip, served by the image bed at ImagePath
    recording = live_path.split("/")[2]
    assert answer["ImagePath"] == f"/{peer}/{peer}_{recording}_{ORIGIN_MS + 6500}_4000.jpg"
    image = api.get(answer["ImagePath"])
    assert image.status_code == 200 and image["Content-Type"] == "image/jpeg"
    picture = Image.open(__import__("io").BytesIO(b"".join(image.streaming_content)))
    assert mediagen.read_second(picture) == first[0]

    export = Export.objects.get(task_id=answer["TaskId"])
    assert set(export.timings) == {"download", "cut", "encode", "thumbnail", "upload"}
    assert export.bytes_downloaded > 0 and export.output_bytes > 0
    assert not (Path(settings.EXPORT_WORK_DIR) / export.task_id).exists(), "work dir removed"
    assert bytes(export.dest_credentials) == b""


def test_hls_export_uses_program_date_time_origin(api, s3, session_id, celery_worker, uploaded_recordings, tmp_path):
    live_path = uploaded_recordings("hls", "hls", duration_s=12)
    body = export_body(live_path, session_id, StartPos=ORIGIN_MS + 3000, StartTime="00:00:09", Duration=3000)
    answer = poll(api, submit(api, body)["TaskId"], session_id)
    assert answer["ErrorCode"] == 5, answer
    clip = fetch_clip(s3, answer, tmp_path)
    assert mediagen.first_second(clip) == 3  # StartPos - origin wins over StartTime
    assert mediagen.has_audio(clip)


def test_without_wall_clock_origin_start_time_is_used(api, s3, session_id, celery_worker, uploaded_recordings,
                                                      tmp_path):
    live_path = uploaded_recordings("dash-number-no-origin", "dash", duration_s=12, template="number", origin=None)
    body = export_body(live_path, session_id, StartPos=ORIGIN_MS + 1000, StartTime="00:00:07", Duration=2000)
    answer = poll(api, submit(api, body)["TaskId"], session_id)
    assert answer["ErrorCode"] == 5, answer
    assert mediagen.first_second(fetch_clip(s3, answer, tmp_path)) == 7


def test_tail_past_the_end_and_a_gap_count_into_lack_length(api, s3, session_id, celery_worker,
                                                             uploaded_recordings, tmp_path):
    live_path = uploaded_recordings("dash-gap", "dash", duration_s=16, template="timeline", gaps=[(6, 8)],
                                    missing=[(10, 12)])
    # 4 s .. 20 s: 6-8 not in the timeline, 10-12 listed but missing in storage, 16-20 past the end
    body = export_body(live_path, session_id, StartPos=ORIGIN_MS + 4000, Duration=16000)
    answer = poll(api, submit(api, body)["TaskId"], session_id)
    assert answer["ErrorCode"] == 5, answer
    assert answer["LackLength"] == 2000 + 2000 + 4000
    seconds = mediagen.seconds_in(fetch_clip(s3, answer, tmp_path))
    assert 4 in seconds and 15 in seconds and 7 not in seconds and 11 not in seconds


def test_missing_recording_fails_with_minus_1(api, session_id, celery_worker):
    body = export_body("mp4/NOPEER/none/1/stream.mpd", session_id)
    answer = poll(api, submit(api, body)["TaskId"], session_id)
    assert answer["ErrorCode"] == -1 and "not such dir" in answer["ErrorMessage"]
    assert answer["TimeWait"] == 0 and answer["VideoPath"] == ""

    # the task itself ends in FAILURE (what Flower and the Task results page show), stored with
    # its name and worker, once: no retry, no redelivery
    from django_celery_results.models import TaskResult

    deadline = time.monotonic() + 10
    while not (results := list(TaskResult.objects.filter(task_name="exports.download",
                                                         task_args__contains=answer["TaskId"]))):
        assert time.monotonic() < deadline, "no task result stored"
        time.sleep(0.2)
    assert [(r.status, r.worker.split("@")[-1] if r.worker else "") for r in results] == [("FAILURE", "testhost")]
    assert "failed with -1" in results[0].result


def test_storage_info_selects_the_source_bucket_and_prefix(api, s3, session_id, celery_worker, recordings_dir,
                                                          uploaded_recordings, tmp_path):
    live_path = uploaded_recordings("dash-timeline", "dash", duration_s=20, template="timeline")
    bucket = "archive-" + os.urandom(4).hex()
    s3.create_bucket(Bucket=bucket)
    local = recordings_dir / "dash-timeline"
    from tests.exports.conftest import upload_dir

    upload_dir(s3, bucket, str(local), "root/" + live_path.rsplit("/", 1)[0])
    info = storage_info([
        {"storage_purpose": "ts", "storage_type": "S3", "storage_enable": True, "storage_name": "nope",
         "storage_location": "us-east-1", "storage_description": "", "storage_root_folder": ""},
        {"storage_purpose": "mp4", "storage_type": "S3", "storage_enable": True, "storage_name": bucket,
         "storage_location": "us-east-1", "storage_description": "", "storage_root_folder": "root"},
    ])
    body = export_body(live_path, session_id, storage_info=info, StartPos=ORIGIN_MS + 2000, Duration=2000)
    answer = poll(api, submit(api, body)["TaskId"], session_id)
    assert answer["ErrorCode"] == 5, answer
    assert Export.objects.get(task_id=answer["TaskId"]).source_bucket == bucket


def test_export_to_the_callers_bucket_with_its_key_never_leaks_the_secret(api, s3, session_id, celery_worker,
                                                                         uploaded_recordings, tmp_path):
    from django_celery_results.models import TaskResult

    live_path = uploaded_recordings("dash-timeline", "dash", duration_s=20, template="timeline")
    bucket = "client-" + os.urandom(4).hex()
    s3.create_bucket(Bucket=bucket)
    secret = "ZZsecretQQ" + os.urandom(6).hex()
    body = export_body(live_path, session_id, ExportS3Bucket=bucket, ExportS3Region="us-west-1",
                       ExportS3Key=f"AKIACLIENT:{secret}", StartPos=ORIGIN_MS + 1000, Duration=2000)
    answer = poll(api, submit(api, body)["TaskId"], session_id)
    assert answer["ErrorCode"] == 5, answer
    fetch_clip(s3, answer, tmp_path, bucket=bucket)
    assert secret not in celery_worker.read_log()
    for result in TaskResult.objects.all():
        assert secret not in (result.task_args or "") + (result.task_kwargs or "") + (result.result or "")
    assert bytes(Export.objects.get(task_id=answer["TaskId"]).dest_credentials) == b""
    database = Path(settings.DATABASES["default"]["NAME"])
    for path in (database, database.with_name(database.name + "-wal")):
        if path.exists():
            assert secret.encode() not in path.read_bytes()


def test_missing_destination_bucket_fails_with_minus_6(api, session_id, celery_worker, uploaded_recordings):
    live_path = uploaded_recordings("dash-timeline", "dash", duration_s=20, template="timeline")
    body = export_body(live_path, session_id, ExportS3Bucket="no-such-bucket-here", StartPos=ORIGIN_MS + 1000,
                       Duration=2000)
    answer = poll(api, submit(api, body)["TaskId"], session_id)
    assert answer["ErrorCode"] == -6, answer
    assert not (Path(settings.EXPORT_WORK_DIR) / answer["TaskId"]).exists()


def test_cancel_a_queued_export(api, session_id, uploaded_recordings):
    live_path = uploaded_recordings("dash-timeline", "dash", duration_s=20, template="timeline")
    body = export_body(live_path, session_id, StartPos=ORIGIN_MS + 1000, Duration=3000)
    task_id = submit(api, body)["TaskId"]
    cancelled = api.delete(f"{URL}/{task_id}", HTTP_X_SESSION_ID=session_id).json()
    assert cancelled["ErrorCode"] == -8 and cancelled["Stage"] == "cancelled"
    assert api.post(URL, body, format="json").json()["TaskId"] == task_id  # answered for the failure TTL


def test_a_copy_export_starts_on_the_exact_frame_by_default(api, s3, session_id, uploaded_recordings, tmp_path,
                                                            celery_worker):
    live_path = uploaded_recordings("dash-timeline", "dash", duration_s=20, template="timeline")
    body = export_body(live_path, session_id, StartPos=ORIGIN_MS + 6500, Duration=3000)
    answer = poll(api, submit(api, body)["TaskId"], session_id)
    assert answer["ErrorCode"] == 5, answer
    clip = fetch_clip(s3, answer, tmp_path)
    assert mediagen.first_stamp(clip) in ((6, 12), (6, 13))
    assert 2.9 <= duration_s(clip) <= 3.1


def test_an_export_whose_message_was_lost_is_sent_again_by_the_sweep(api, s3, session_id, celery_worker,
                                                                     uploaded_recordings, monkeypatch, settings):
    from django.utils import timezone

    from exports.tasks import sweep_stale

    live_path = uploaded_recordings("dash-timeline", "dash", duration_s=20, template="timeline")
    lost = []
    monkeypatch.setattr("exports.services.export_enqueue", lambda *, export: lost.append(export.task_id))
    task_id = submit(api, export_body(live_path, session_id, StartPos=ORIGIN_MS + 3000, Duration=2000))["TaskId"]
    monkeypatch.undo()
    assert lost == [task_id]  # the message never reached the broker
    settings.EXPORT_QUEUED_RESEND_SECONDS = 30
    assert sweep_stale() == 0  # not yet: queued for less than the threshold
    Export.objects.filter(task_id=task_id).update(updated_at=timezone.now() - timezone.timedelta(seconds=31))
    assert sweep_stale() == 1
    answer = poll(api, task_id, session_id)
    assert answer["ErrorCode"] == 5, answer
    assert Export.objects.get(task_id=task_id).restarts == 1


@pytest.mark.parametrize("export_type", [0, 1])
def test_a_damaged_segment_is_skipped_named_and_counted(api, s3, session_id, celery_worker, recordings_dir, tmp_path,
                                                        export_type):
    """A segment in the middle of the range is cut short (half its bytes): the clip is made without
    it, LackLength holds its time and ErrorMessage names it (issue 14 item 9)."""
    local = recordings_dir / "dash-damaged"
    if not local.exists():
        mediagen.make_dash(str(local), duration_s=12, template="timeline")
    prefix = f"mp4/PEERDMG{export_type}/rec-damaged/1"
    upload_dir(s3, settings.SOURCE_DEFAULT_BUCKET, str(local), prefix)
    damaged = f"{prefix}/chunk-0-00004.m4s"  # video of 6–8 s
    data = (local / "chunk-0-00004.m4s").read_bytes()
    s3.put_object(Bucket=settings.SOURCE_DEFAULT_BUCKET, Key=damaged, Body=data[: len(data) // 2])
    body = export_body(f"{prefix}/manifest.mpd", session_id, export_type=export_type, StartPos=ORIGIN_MS + 4000,
                       Duration=6000)
    answer = poll(api, submit(api, body)["TaskId"], session_id)
    assert answer["ErrorCode"] == 5, answer
    assert damaged in answer["ErrorMessage"] and answer["ErrorMessage"].startswith("ready to download; skipped")
    assert abs(answer["LackLength"] - 2000) <= 40, answer
    clip = fetch_clip(s3, answer, tmp_path)
    assert mediagen.first_stamp(clip) == (4, 0)
    with av.open(clip) as container:
        seconds = sorted({mediagen.read_second(frame) for frame in container.decode(video=0)})
    assert seconds == [4, 5, 8, 9], "the damaged 6–8 s are left out, the rest is there"
