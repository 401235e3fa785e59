"""The restore flow end to end: real S3 endpoint (moto server), real worker, real HTTP receivers."""

import hashlib

import pytest

from resourced.storage_info import encode_storage_info
from restore.models import (
    Callback,
    CallbackDelivery,
    ReceivedCallback,
    RestoreFile,
    RestoreJob,
)
from tests.conftest import hold_restores_forever
from tests.restore.conftest import RESTORE_TIMEOUT_SECONDS
from tests.servers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def storage(bucket: str, purpose: str = "archive", root: str = "") -> dict:
    return {"storage_purpose": purpose, "storage_type": "S3", "storage_enable": True, "storage_name": bucket,
            "storage_location": "us-east-1", "storage_description": "", "storage_root_folder": root}


def job_done(task_id: str, timeout: float = 40) -> RestoreJob:
    return wait_for(lambda: RestoreJob.objects.filter(task_id=task_id, status=RestoreJob.Status.DONE).first(),
                    timeout, what=f"job {task_id} done")


def result_callback(receiver, timeout: float = 20) -> dict:
    return wait_for(lambda: next((b for b in receiver.bodies() if b.get("type") == 1), None), timeout,
                    what="type 1 callback received")


def test_archived_objects_are_restored_watched_and_copied_then_the_client_is_told(
    restore_worker, s3, bucket, archived_objects, receiver_factory, post_restore
):
    archived_objects(bucket, {
        "cold/a.ts": (b"glacier bytes", "GLACIER"),
        "cold/b.mp4": (b"deep archive bytes", "DEEP_ARCHIVE"),
        "warm/c.ts": (b"standard bytes", "STANDARD"),
        "warm/d.ts": (b"instant retrieval bytes", "GLACIER_IR"),
    }, in_progress_seconds=2)
    receiver = receiver_factory()

    response = post_restore(
        task_id="job-42", storage_info=encode_storage_info([storage(bucket)]),
        files=["cold/a.ts", "cold/b.mp4", "warm/c.ts", "warm/d.ts"], file_dir="restore/2026-11-22/job-42",
        callback_url=receiver.url, days=3, tier="Bulk",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["code"] == 0 and response.json()["task_id"] == "job-42"

    job = job_done("job-42")
    body = result_callback(receiver)
    assert body == {
        "code": 0, "message": "success", "type": 1, "task_id": "job-42", "file_dir": "restore/2026-11-22/job-42",
        "file_list_status": [{"file_name": "a.ts", "file_code": 0}, {"file_name": "b.mp4", "file_code": 0},
                             {"file_name": "c.ts", "file_code": 0}, {"file_name": "d.ts", "file_code": 0}],
    }
    # the type 0 network test came first
    bodies = receiver.bodies()
    assert bodies[0]["type"] == 0 and bodies[0]["task_id"] == "job-42"
    assert [b["type"] for b in bodies] == [0, 1]

    # the restores stayed in progress for a while: several checks before the copy
    assert job.checks >= 3
    files = {f.key: f for f in job.files.all()}
    assert files["cold/a.ts"].restore_requested and files["cold/b.mp4"].restore_requested
    assert not files["warm/c.ts"].restore_requested  # readable objects are not restored
    assert not files["warm/d.ts"].restore_requested and files["warm/d.ts"].storage_class == "GLACIER_IR"
    assert "Restore" not in s3.head_object(Bucket=bucket, Key="warm/c.ts")
    assert 'expiry-date' in s3.head_object(Bucket=bucket, Key="cold/a.ts")["Restore"]

    for key, expected in [("a.ts", b"glacier bytes"), ("b.mp4", b"deep archive bytes"), ("c.ts", b"standard bytes"),
                          ("d.ts", b"instant retrieval bytes")]:
        copied = s3.get_object(Bucket=bucket, Key=f"restore/2026-11-22/job-42/{key}")
        assert copied["Body"].read() == expected
        assert copied.get("StorageClass", "STANDARD") == "STANDARD"
    assert "-" not in copied["ETag"]  # small objects: one CopyObject


def test_a_missing_object_is_file_code_1_and_the_others_still_succeed(
    restore_worker, s3, bucket, receiver_factory, post_restore
):
    s3.put_object(Bucket=bucket, Key="there.ts", Body=b"here", StorageClass="GLACIER")
    receiver = receiver_factory()
    post_restore(task_id="missing-1", storage_info=encode_storage_info([storage(bucket)]),
                 files=["there.ts", "not/gone.ts"], file_dir="out", callback_url=receiver.url)

    body = result_callback(receiver)
    assert (body["code"], body["message"]) == (1, "1 of 2 files failed")
    assert body["file_list_status"] == [{"file_name": "there.ts", "file_code": 0}, {"file_name": "gone.ts", "file_code": 1}]
    missing = RestoreFile.objects.get(job__task_id="missing-1", key="not/gone.ts")
    assert missing.restore_requested is False and "not found" in missing.error
    assert s3.get_object(Bucket=bucket, Key="out/there.ts")["Body"].read() == b"here"


def test_a_copy_that_fails_is_file_code_3(restore_worker, s3, bucket, receiver_factory, post_restore):
    s3.put_object(Bucket=bucket, Key="src/a.ts", Body=b"a", StorageClass="DEEP_ARCHIVE")
    receiver = receiver_factory()
    info = encode_storage_info([storage(bucket), storage("no-such-destination-bucket", purpose="restore")])
    post_restore(task_id="copyfail-1", storage_info=info, files=["src/a.ts"], file_dir="out", callback_url=receiver.url)

    body = result_callback(receiver)
    assert body["code"] == 1 and body["file_list_status"] == [{"file_name": "a.ts", "file_code": 3}]
    failed = RestoreFile.objects.get(job__task_id="copyfail-1")
    assert failed.restore_requested and "NoSuchBucket" in failed.error
    assert "no-such-destination-bucket" in failed.error


def test_a_restore_that_never_completes_times_out_with_file_code_4(
    restore_worker, s3, bucket, archived_objects, restore_pace, receiver_factory, post_restore
):
    archived_objects(bucket, {"frozen.ts": (b"cold", "GLACIER"), "warm.ts": (b"warm", "STANDARD")},
                     in_progress_seconds=3)
    receiver = receiver_factory()
    post_restore(task_id="timeout-1", storage_info=encode_storage_info([storage(bucket)]),
                 files=["frozen.ts", "warm.ts"], file_dir="out", callback_url=receiver.url)
    wait_for(lambda: RestoreFile.objects.filter(job__task_id="timeout-1", key="frozen.ts", restore_requested=True).exists(),
             20, what="restore requested")
    hold_restores_forever(restore_pace, s3, bucket, "frozen.ts")

    body = result_callback(receiver, timeout=RESTORE_TIMEOUT_SECONDS + 20)
    assert body["code"] == 1
    assert body["file_list_status"] == [{"file_name": "frozen.ts", "file_code": 4}, {"file_name": "warm.ts", "file_code": 0}]
    job = RestoreJob.objects.get(task_id="timeout-1")
    assert job.checks >= RESTORE_TIMEOUT_SECONDS // 3  # a check every second or so, no worker held in between
    assert s3.head_object(Bucket=bucket, Key="frozen.ts")["Restore"] == 'ongoing-request="true"'
    frozen = job.files.get(key="frozen.ts")
    assert "restore not complete after" in frozen.error and not frozen.dest_key
    assert (job.finished_at - job.started_at).total_seconds() >= RESTORE_TIMEOUT_SECONDS


def test_an_object_already_restored_is_copied_without_a_new_restore(
    restore_worker, s3, bucket, receiver_factory, post_restore
):
    s3.put_object(Bucket=bucket, Key="thawed.ts", Body=b"thawed", StorageClass="GLACIER")
    s3.restore_object(Bucket=bucket, Key="thawed.ts", RestoreRequest={"Days": 1})
    assert 'ongoing-request="false"' in s3.head_object(Bucket=bucket, Key="thawed.ts")["Restore"]
    receiver = receiver_factory()
    post_restore(task_id="thawed-1", storage_info=encode_storage_info([storage(bucket)]), files=["thawed.ts"],
                 file_dir="out", callback_url=receiver.url)

    assert result_callback(receiver)["file_list_status"] == [{"file_name": "thawed.ts", "file_code": 0}]
    file = RestoreFile.objects.get(job__task_id="thawed-1")
    assert file.restore_requested is False and file.storage_class == "GLACIER"
    assert s3.get_object(Bucket=bucket, Key="out/thawed.ts")["Body"].read() == b"thawed"


def test_large_objects_are_copied_with_a_multipart_copy(restore_worker, s3, bucket, receiver_factory, post_restore):
    # The restore worker's RESTORE_MULTIPART_COPY_THRESHOLD and _CHUNKSIZE are 5 MiB.
    data = bytes(range(256)) * (11 * 1024 * 1024 // 256)  # 11 MiB: three parts
    s3.put_object(Bucket=bucket, Key="big/recording.mp4", Body=data, StorageClass="GLACIER")
    receiver = receiver_factory()
    post_restore(task_id="big-1", storage_info=encode_storage_info([storage(bucket, root="")]),
                 files=["big/recording.mp4"], file_dir="out/big", callback_url=receiver.url)

    assert result_callback(receiver)["file_list_status"] == [{"file_name": "recording.mp4", "file_code": 0}]
    copied = s3.get_object(Bucket=bucket, Key="out/big/recording.mp4")
    assert copied["ETag"].strip('"').endswith("-3")  # UploadPartCopy, three parts
    assert hashlib.sha256(copied["Body"].read()).digest() == hashlib.sha256(data).digest()


def test_the_reference_receiver_closes_the_loop_with_a_storage_root_folder(
    restore_worker, s3, bucket, live_server, post_restore
):
    s3.put_object(Bucket=bucket, Key="tenant/cold/x.ts", Body=b"x", StorageClass="GLACIER")
    url = f"{live_server.url}/resource/v1/i/PutRestoreResult"
    post_restore(task_id="loop-1", storage_info=encode_storage_info([storage(bucket, root="tenant")]),
                 files=["cold/x.ts"], file_dir="back", callback_url=url)

    received = wait_for(lambda: list(ReceivedCallback.objects.filter(task_id="loop-1").order_by("received_at"))
                        if ReceivedCallback.objects.filter(task_id="loop-1").count() == 2 else None, 40,
                        what="both callbacks received")
    assert [r.type for r in received] == [0, 1]
    assert received[1].body["file_list_status"] == [{"file_name": "x.ts", "file_code": 0}]
    sent = {str(cb.delivery_id) for cb in Callback.objects.filter(job__task_id="loop-1")}
    assert {r.delivery_id for r in received} == sent
    assert all(d.outcome == "delivered" for d in CallbackDelivery.objects.filter(callback__job__task_id="loop-1"))
    assert s3.get_object(Bucket=bucket, Key="tenant/back/x.ts")["Body"].read() == b"x"
