"""export-to-s3dir input rules, authentication, quotas and idempotency (no worker needed: these
requests must not reach one)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from exports.models import Export, Quota
from exports.services import parse_start_time
from tests.exports.conftest import export_body, storage_info

URL = "/resource/v1/i/export-to-s3dir"
FIELDS = {"ErrorCode", "ErrorMessage", "TimeWait", "ImagePath", "VideoPath", "Version", "S3Dir", "LackLength",
          "TaskId", "Progress", "Stage", "ClipStart", "ClipDuration"}
LIVE = "mp4/PEER1/rec-1/1/stream.mpd"


@pytest.fixture
def no_enqueue(monkeypatch):
    """Records enqueues instead of sending them: these tests check what is (not) queued."""
    sent = []
    monkeypatch.setattr("exports.services.export_enqueue", lambda *, export: sent.append(export.task_id))
    return sent


@pytest.mark.parametrize(
    "text, ms",
    [("00:13:12", 792_000), ("00:13:12.5", 792_500), ("01:00:00.123", 3_600_123), ("13:12", 792_000),
     ("792000", 792_000), (792000, 792_000)],
)
def test_start_time_formats(text, ms):
    assert parse_start_time(text) == ms


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("ServiceCaller", "other", "ServiceCaller"),
        ("ServiceCaller", None, "ServiceCaller: This field is required"),
        ("StartPos", "abc", "StartPos"),
        ("StartPos", -1, "StartPos"),
        ("StartPos", True, "StartPos"),
        ("StartTime", "12 minutes", "StartTime: must be HH:MM:SS"),
        ("StartTime", "00:61:00", "StartTime"),
        ("Duration", 0, "Duration"),
        ("Duration", 2 * 3600 * 1000 + 1, "Duration: must be at most"),
        ("LivePath", "../etc/passwd.mpd", "LivePath"),
        ("LivePath", "/abs/x/y/stream.mpd", "LivePath: must be a relative key"),
        ("LivePath", "mp4/p/r/stream.mp4", "LivePath: must be a DASH manifest"),
        ("LivePath", "stream.mpd", "PeerId: required when LivePath has no peer"),
        ("FileName", "a/b", "FileName"),
        ("FileName", "..", "FileName"),
        ("export_type", 3, "export_type"),
        ("ExportFormat", "avi", "ExportFormat"),
        ("ExportS3Bucket", "Bad_Bucket", "ExportS3Bucket"),
        ("ExportS3Key", "no-colon", "ExportS3Key: must be ACCESS_KEY_ID:SECRET_ACCESS_KEY"),
        ("storage_info", "%%%not-base64", "storage_info"),
        ("storage_info", "bm90IGpzb24=", "storage_info"),
    ],
)
@pytest.mark.django_db
def test_each_invalid_field_is_a_400_naming_it_and_nothing_is_stored(api, session_id, no_enqueue, field, value, words):
    body = export_body(LIVE, session_id)
    if value is None:
        body.pop(field)
    else:
        body[field] = value
    response = api.post(URL, body, format="json")
    answer = response.json()
    assert response.status_code == 400, answer
    assert answer["ErrorCode"] == -2
    assert words in answer["ErrorMessage"]
    assert FIELDS <= set(answer)
    assert Export.objects.count() == 0 and no_enqueue == []


@pytest.mark.django_db
def test_storage_info_without_an_entry_for_the_purpose_says_so(api, session_id, no_enqueue):
    info = storage_info([{"storage_purpose": "ts", "storage_type": "S3", "storage_enable": True,
                          "storage_name": "b", "storage_location": "us-west-1", "storage_root_folder": ""}])
    response = api.post(URL, export_body(LIVE, session_id, storage_info=info), format="json")
    assert response.status_code == 400
    assert "storage_info" in response.json()["ErrorMessage"] and "mp4" in response.json()["ErrorMessage"]
    assert Export.objects.count() == 0


@pytest.mark.django_db
def test_malformed_json_is_a_400_json_body(api, no_enqueue):
    response = api.generic("POST", URL, "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["ErrorCode"] == -2 and FIELDS <= set(response.json())
    assert Export.objects.count() == 0


@pytest.mark.django_db
def test_bad_session_is_401_with_minus_3(api, no_enqueue):
    response = api.post(URL, export_body(LIVE, "F" * 32), format="json")
    assert response.status_code == 401
    assert response.json()["ErrorCode"] == -3
    response = api.post(URL, export_body(LIVE, None), format="json")
    assert response.status_code == 401
    assert Export.objects.count() == 0 and no_enqueue == []


@pytest.mark.django_db
def test_session_in_header_is_accepted_and_is_the_default_userid(api, session_id, no_enqueue):
    response = api.post(URL, export_body(LIVE, None, userid=None), format="json", HTTP_X_SESSION_ID=session_id)
    assert response.status_code == 200, response.json()
    export = Export.objects.get()
    assert export.userid == "tester@example.com"


@pytest.mark.django_db(transaction=True)
def test_repost_of_queued_export_returns_same_task_and_queues_once(api, session_id, no_enqueue):
    body = export_body(LIVE, session_id)
    first = api.post(URL, body, format="json").json()
    second = api.post("/export-to-s3dir", body, format="json").json()
    assert first["ErrorCode"] == 1 and first["Stage"] == "queued" and first["TimeWait"] > 0
    assert FIELDS <= set(first)
    assert first["Version"] == "v1" and first["S3Dir"] == "export"
    assert second["TaskId"] == first["TaskId"]
    assert Export.objects.count() == 1 and no_enqueue == [first["TaskId"]]


@pytest.mark.django_db(transaction=True)
def test_failure_is_answered_for_the_ttl_then_a_new_attempt_starts(api, session_id, no_enqueue, settings):
    settings.EXPORT_FAILURE_TTL = 60
    body = export_body(LIVE, session_id)
    first = api.post(URL, body, format="json").json()
    Export.objects.filter(task_id=first["TaskId"]).update(status="failed", stage="failed", error_code=-1,
                                                         error_message="not such dir", finished_at=timezone.now())
    again = api.post(URL, body, format="json").json()
    assert again["TaskId"] == first["TaskId"] and again["ErrorCode"] == -1 and again["TimeWait"] == 0
    Export.objects.filter(task_id=first["TaskId"]).update(finished_at=timezone.now() - timedelta(seconds=61))
    fresh = api.post(URL, body, format="json").json()
    assert fresh["TaskId"] != first["TaskId"] and fresh["ErrorCode"] == 1
    assert no_enqueue == [first["TaskId"], fresh["TaskId"]]


@pytest.mark.django_db(transaction=True)
def test_over_quota_is_429_with_minus_4_and_nothing_queued(api, session_id, no_enqueue):
    Quota.objects.create(scope="user", subject="limited@example.com", max_active_exports=1)
    ok = api.post(URL, export_body(LIVE, session_id, userid="limited@example.com"), format="json")
    assert ok.status_code == 200
    refused = api.post(URL, export_body(LIVE, session_id, userid="limited@example.com", Duration=5000), format="json")
    assert refused.status_code == 429
    answer = refused.json()
    assert answer["ErrorCode"] == -4 and answer["TimeWait"] > 0 and FIELDS <= set(answer)
    assert Export.objects.count() == 1 and len(no_enqueue) == 1


@pytest.mark.django_db
def test_quota_on_clip_length_and_minutes_per_day(api, session_id, no_enqueue):
    Quota.objects.create(scope="caller", subject="search", max_clip_ms=10_000, max_minutes_per_day=1,
                         max_active_exports=10)
    long_clip = api.post(URL, export_body(LIVE, session_id, ServiceCaller="search", userid="", Duration=20_000),
                         format="json")
    assert long_clip.status_code == 429 and "Duration" in long_clip.json()["ErrorMessage"]
    for start in range(6):
        response = api.post(URL, export_body(LIVE, session_id, ServiceCaller="search", userid="",
                                             StartPos=1000 * start, Duration=10_000), format="json")
        assert response.status_code == 200
    over = api.post(URL, export_body(LIVE, session_id, ServiceCaller="search", userid="", StartPos=99, Duration=10_000),
                    format="json")
    assert over.status_code == 429 and "minutes" in over.json()["ErrorMessage"]
    assert Export.objects.count() == 6


@pytest.mark.django_db
def test_export_s3_key_is_encrypted_at_rest(api, session_id, no_enqueue):
    secret = "SECRETzz9QwJeOobv82932fksfel"
    api.post(URL, export_body(LIVE, session_id, ExportS3Key=f"AKIATESTKEY:{secret}"), format="json")
    export = Export.objects.get()
    assert export.dest_credentials and secret.encode() not in bytes(export.dest_credentials)
    from exports.credentials import decrypt_credentials

    assert decrypt_credentials(export.dest_credentials).secret_key == secret


@pytest.mark.django_db
def test_unknown_task_is_404_json(api, session_id):
    response = api.get(f"{URL}/doesnotexist", HTTP_X_SESSION_ID=session_id)
    assert response.status_code == 404 and FIELDS <= set(response.json())
