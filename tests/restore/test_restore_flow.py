"""The restore flow end to end: real S3 endpoint (moto server), real worker, real HTTP receivers."""

import hashlib
import json

import pytest
from django.conf import settings

from resourced.storage_info import encode_storage_info
from restore.callbacks import verify_signature
from restore.models import Callback, CallbackDelivery, ReceivedCallback, RestoreFile, RestoreJob
from tests.restore.conftest import RESTORE_TIMEOUT_SECONDS, hold_restores_forever, wait_for

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
    }, in_progress_seconds=2)
    receiver = receiver_factory()

    response = post_restore(
        task_id="job-42", storage_info=encode_storage_info([storage(bucket)]),
        files=["cold/a.ts", "cold/b.mp4", "warm/c.ts"], file_dir="restore/2026-11-22/job-42",
        callback_url=receiver.url, days=3, tier="Bulk",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["code"] == 0 and response.json()["task_id"] == "job-42"

    job = job_done("job-42")
    body = result_callback(receiver)
    assert body == {
        "code": 0, "message": "success", "type": 1, "task_id": "job-42", "file_dir": "restore/2026-11-22/job-42",
        "file_list_status": [{"file_name": "a.ts", "file_code": 0}, {"file_name": "b.mp4", "file_code": 0},
                             {"file_name": "c.ts", "file_code": 0}],
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
    assert "Restore" not in s3.head_object(Bucket=bucket, Key="warm/c.ts")
    assert 'expiry-date' in s3.head_object(Bucket=bucket, Key="cold/a.ts")["Restore"]

    for key, expected in [("a.ts", b"glacier bytes"), ("b.mp4", b"deep archive bytes"), ("c.ts", b"standard bytes")]:
        copied = s3.get_object(Bucket=bucket, Key=f"restore/2026-11-22/job-42/{key}")
        assert copied["Body"].read() == expected
        assert copied.get("StorageClass", "STANDARD") == "STANDARD"
