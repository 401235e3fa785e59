"""POST and GET /resource/v1/i/restore: validation, authentication, idempotency, storage selection."""

import pytest

from resourced.sessions import session_create
from resourced.storage_info import encode_storage_info
from restore.models import RestoreFile, RestoreJob

pytestmark = pytest.mark.django_db

VALID = {
    "task_id": "job-1",
    "files": ["key/of/archived/object1.ts", "key/of/object2.mp4"],
    "file_dir": "restore/2026-11-22/job-42",
    "callback_url": "https://client.example/resource/v1/i/PutRestoreResult",
    "days": 7,
    "tier": "Standard",
}


def storage(bucket, purpose="archive", root="", enabled=True):
    return {"storage_purpose": purpose, "storage_type": "S3", "storage_enable": enabled, "storage_name": bucket,
            "storage_location": "eu-west-1", "storage_description": "", "storage_root_folder": root}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"files": None}, "files: "),
        ({"files": []}, "files: must be a non-empty list of object keys"),
        ({"files": "a.ts"}, "files: must be a non-empty list of object keys"),
        ({"files": [5]}, "files: item 0 is not a string"),
        ({"files": ["ok.ts", "../etc/passwd"]}, "files: item 1 ('../etc/passwd') must not contain '.' or '..' segments"),
        ({"files": ["a/../b.ts"]}, "files: item 0 ('a/../b.ts') must not contain '.' or '..' segments"),
        ({"files": ["/abs/key.ts"]}, "files: item 0 ('/abs/key.ts') must be relative"),
        ({"files": ["bad\nname.ts"]}, "files: item 0 ('bad\\nname.ts') must not contain control characters"),
        ({"files": ["dir/"]}, "files: item 0 ('dir/') must not contain empty segments"),
        ({"files": ["a\\b.ts"]}, "files: item 0 ('a\\\\b.ts') must not contain backslashes"),
        ({"files": ["x/same.ts", "y/same.ts"]}, "files: items 0 and 1 have the same file name 'same.ts'"),
        ({"file_dir": "../outside"}, "file_dir: must not contain '.' or '..' segments"),
        ({"file_dir": "/root"}, "file_dir: must be relative"),
        ({"file_dir": "a\x07b"}, "file_dir: must not contain control characters"),
        ({"file_dir": None}, "file_dir: "),
        ({"callback_url": "ftp://client.example/x"}, "callback_url: must be an http:// or https:// URL"),
        ({"callback_url": "not a url"}, "callback_url: must be an http:// or https:// URL"),
        ({"days": 0}, "days: must be from 1 to 30"),
        ({"days": 31}, "days: must be from 1 to 30"),
        ({"days": "many"}, "days: "),
        ({"tier": "Fast"}, "tier: must be one of Standard, Bulk, Expedited"),
        ({"task_id": "bad id!"}, "task_id: 1 to 64 of letters"),
        ({"task_id": "x" * 65}, "task_id: 1 to 64 of letters"),
        ({"storage_info": "%%%"}, "storage_info: not base64"),
        ({"storage_info": encode_storage_info([storage("b", enabled=False)])}, "storage_info: no enabled S3 entry"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_nothing_is_stored_or_queued(
    api, session_id, change, message, django_capture_on_commit_callbacks
):
    body = dict(VALID, **change)
    body = {k: v for k, v in body.items() if v is not None}
    with django_capture_on_commit_callbacks() as queued:
        response = api.post("/resource/v1/i/restore", body, format="json", HTTP_X_SESSION_ID=session_id)
    assert response.status_code == 400
    answer = response.json()
    assert answer["code"] != 0 and answer["message"].startswith(message), answer
    assert not RestoreJob.objects.exists() and not RestoreFile.objects.exists()
    assert queued == []


def test_a_session_is_required(api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as queued:
        response = api.post("/resource/v1/i/restore", VALID, format="json")
    assert response.status_code == 401
    assert response.json()["code"] == 401 and response.json()["message"].startswith("SessionId")
    assert not RestoreJob.objects.exists() and queued == []
    bad = api.post("/resource/v1/i/restore", dict(VALID, SessionId="0" * 32), format="json")
    assert bad.status_code == 401


def test_a_valid_post_stores_the_job_and_queues_its_flow_once(api, session_id, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as queued:
        response = api.post("/resource/v1/i/restore", dict(VALID, SessionId=session_id, _ServiceName="x"), format="json")
    assert response.status_code == 200
    answer = response.json()
    assert (answer["code"], answer["message"], answer["task_id"], answer["status"]) == (0, "accepted", "job-1", "queued")
    assert [f["file_name"] for f in answer["file_list_status"]] == ["object1.ts", "object2.mp4"]
    assert len(queued) == 1  # restore.start, after commit
    job = RestoreJob.objects.get()
    assert (job.userid, job.days, job.tier, job.bucket, job.dest_bucket) == (
        "tester@example.com", 7, "Standard", "recordings", "recordings")
    assert list(job.files.values_list("key", flat=True)) == VALID["files"]

    # the same task_id again: the existing job, no second flow (even with other fields)
    with django_capture_on_commit_callbacks() as queued_again:
        again = api.post("/resource/v1/i/restore", dict(VALID, files=["other.ts"]), format="json",
                         HTTP_X_SESSION_ID=session_id)
    assert again.status_code == 200
    assert again.json()["task_id"] == "job-1" and again.json()["message"] == "already accepted"
    assert [f["file_name"] for f in again.json()["file_list_status"]] == ["object1.ts", "object2.mp4"]
    assert queued_again == [] and RestoreJob.objects.count() == 1


def test_task_id_is_generated_and_tier_normalised(api, session_id):
    body = {k: v for k, v in VALID.items() if k not in ("task_id", "days")}
    answer = api.post("/resource/v1/i/restore", dict(body, tier="bulk"), format="json",
                      HTTP_X_SESSION_ID=session_id).json()
    assert len(answer["task_id"]) == 32
    job = RestoreJob.objects.get(task_id=answer["task_id"])
    assert job.tier == "Bulk" and job.days == 7


def test_storage_info_chooses_the_archive_source_and_the_restore_destination(api, session_id):
    info = encode_storage_info([storage("ts-bucket", "ts"), storage("cold-bucket", "archive", "/root/"),
                                storage("out-bucket", "restore", "copies")])
    api.post("/resource/v1/i/restore", dict(VALID, storage_info=info), format="json", HTTP_X_SESSION_ID=session_id)
    job = RestoreJob.objects.get()
    assert (job.bucket, job.region, job.prefix) == ("cold-bucket", "eu-west-1", "root")
    assert (job.dest_bucket, job.dest_prefix) == ("out-bucket", "copies")

    fallback = encode_storage_info([storage("ts-bucket", "ts")])
    api.post("/resource/v1/i/restore", dict(VALID, task_id="job-2", storage_info=fallback), format="json",
             HTTP_X_SESSION_ID=session_id)
    job2 = RestoreJob.objects.get(task_id="job-2")
    assert (job2.bucket, job2.dest_bucket) == ("ts-bucket", "ts-bucket")


def test_get_answers_the_state_of_the_callers_own_job(api, session_id):
    api.post("/resource/v1/i/restore", VALID, format="json", HTTP_X_SESSION_ID=session_id)
    response = api.get("/resource/v1/i/restore/job-1", HTTP_X_SESSION_ID=session_id)
    assert response.status_code == 200
    answer = response.json()
    assert answer["task_id"] == "job-1" and answer["status"] == "queued"
    assert answer["file_list_status"][0] == {"file_name": "object1.ts", "file_code": None, "status": "pending",
                                             "key": "key/of/archived/object1.ts"}

    missing = api.get("/resource/v1/i/restore/nope", HTTP_X_SESSION_ID=session_id)
    assert missing.status_code == 404 and missing.json()["code"] == 404
    assert api.get("/resource/v1/i/restore/job-1").status_code == 401

    _session, other = session_create(userid="someone-else", ttl_seconds=60)
    assert api.get("/resource/v1/i/restore/job-1", HTTP_X_SESSION_ID=other).status_code == 404


def test_errors_are_json_in_the_restore_shape(api, session_id):
    response = api.post("/resource/v1/i/restore", "{not json", content_type="application/json",
                        HTTP_X_SESSION_ID=session_id)
    assert response.status_code == 400 and set(response.json()) == {"code", "message"}
    assert api.delete("/resource/v1/i/restore", HTTP_X_SESSION_ID=session_id).json()["code"] != 0
