"""Bad input at scale: property-based requests to every endpoint.

Whatever arrives, the answer is never a 5xx, always JSON in its endpoint's shape, and a refused
request (4xx) stores nothing.
"""

import json

import pytest
from django.apps import apps
from hypothesis import HealthCheck, given, settings, strategies as st

EXPORT_FIELDS = {"ErrorCode", "ErrorMessage", "TimeWait", "ImagePath", "VideoPath", "Version", "S3Dir",
                 "LackLength", "TaskId", "Progress", "Stage"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=6,
)
text_ish = st.text(max_size=60) | st.sampled_from(["", "..", "../x", "/abs", "a\\b", "a\x00b", "mp4/p/r/1/s.mpd",
                                                  "ts/p/r/i.m3u8", "00:00:01", "-5", "1e309", "\u202e", "a" * 300])


def field(valid) -> st.SearchStrategy:
    return st.one_of(st.just(valid), json_values, text_ish)


def export_bodies(session_id: str) -> st.SearchStrategy:
    return st.fixed_dictionaries(
        {},
        optional={
            "ServiceCaller": field("mma"),
            "StartPos": field(1_700_000_000_000),
            "StartTime": field("00:00:02"),
            "Duration": field(3000),
            "LivePath": field("mp4/PEER/rec/1/stream.mpd"),
            "PeerId": field("PEER"),
            "FileName": field("clip"),
            "SessionId": st.just(session_id),
            "export_type": field(1),
            "ExportFormat": field("mp4"),
            "storage_info": field("W10="),
            "userid": field("u@example.com"),
            "ExportS3Region": field("us-west-1"),
            "ExportS3Bucket": field("export"),
            "ExportS3Key": field("AK:SK"),
        },
    )


def row_counts() -> dict:
    return {model._meta.label: model.objects.count() for app in ("exports", "imgbed", "restore")
            if apps.is_installed(app) for model in apps.get_app_config(app).get_models()}


def post_json(client, url, body, **headers):
    return client.generic("POST", url, json.dumps(body), content_type="application/json", **headers)


def check(response, shape: set[str], before: dict) -> None:
    assert response.status_code < 500, response.content[:500]
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    body = response.json()
    assert shape <= set(body), (shape, body)
    if response.status_code >= 400:
        assert row_counts() == before, "a refused request stored something"


FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])


@pytest.fixture
def no_enqueue(monkeypatch):
    monkeypatch.setattr("exports.services.export_enqueue", lambda *, export: None)


@pytest.mark.django_db
@FUZZ
@given(data=st.data())
def test_export_endpoint_never_fails_on_any_body(client, session_id, no_enqueue, data):
    body = data.draw(export_bodies(session_id) | json_values)
    before = row_counts()
    response = post_json(client, "/resource/v1/i/export-to-s3dir", body)
    check(response, EXPORT_FIELDS, before)
    assert response.status_code in (200, 400, 401, 429)


@pytest.mark.django_db
@FUZZ
@given(raw=st.binary(max_size=200))
def test_export_endpoint_answers_json_to_any_bytes(client, session_id, raw):
    before = row_counts()
    response = client.generic("POST", "/resource/v1/i/export-to-s3dir", raw, content_type="application/json")
    check(response, EXPORT_FIELDS, before)


@pytest.mark.django_db
@FUZZ
@given(task_id=st.text(max_size=80).filter(lambda t: "/" not in t and "?" not in t and "#" not in t))
def test_export_detail_with_any_task_id(client, session_id, task_id):
    from urllib.parse import quote

    before = row_counts()
    for method in ("GET", "DELETE"):
        response = client.generic(method, f"/resource/v1/i/export-to-s3dir/{quote(task_id)}",
                                  HTTP_X_SESSION_ID=session_id)
        if response.status_code != 404 or response["Content-Type"].startswith("application/json"):
            check(response, {"ErrorCode", "ErrorMessage"}, before)


@pytest.mark.django_db
@FUZZ
@given(body=st.fixed_dictionaries({}, optional={"path": field("a/b"), "filename": field("x.jpg")}) | json_values)
def test_imgbed_delete_never_fails_on_any_body(client, session_id, s3_server, body):
    before = row_counts()
    response = post_json(client, "/api/imgbed/v1/delete", body, HTTP_X_SESSION_ID=session_id)
    check(response, {"errCode", "message"}, before)


@pytest.mark.django_db
@FUZZ
@given(body=st.fixed_dictionaries({}, optional={
    "task_id": field("job-1"), "storage_info": field("W10="), "files": field(["a/b.ts"]),
    "file_dir": field("restore/x"), "callback_url": field("https://client.example/cb"), "days": field(3),
    "tier": field("Standard"), "SessionId": text_ish}) | json_values)
def test_restore_endpoint_never_fails_on_any_body(client, session_id, s3_server, body):
    if isinstance(body, dict) and "SessionId" not in body:
        body["SessionId"] = session_id
    before = row_counts()
    response = post_json(client, "/resource/v1/i/restore", body)
    check(response, {"code", "message"}, before)


@pytest.mark.django_db
@FUZZ
@given(body=json_values, signature=text_ish)
def test_reference_receiver_refuses_anything_unsigned(client, body, signature):
    before = row_counts()
    response = post_json(client, "/resource/v1/i/PutRestoreResult", body, HTTP_X_RESOURCED_SIGNATURE=signature)
    check(response, {"code", "message"}, before)
    assert response.status_code in (400, 401)
