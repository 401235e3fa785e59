"""Limits on what a request may send (docs/api.md §1): oversize and over-deep JSON, numbers out of
range and names that are not plain answer a 4xx JSON in the endpoint's shape, never a 5xx, and
store nothing."""

import json

import pytest

from exports.models import Export
from tests.exports.conftest import export_body

URL = "/resource/v1/i/export-to-s3dir"
LIVE = "mp4/PEER1/rec-1/1/stream.mpd"
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_enqueue(monkeypatch):
    monkeypatch.setattr("exports.services.export_enqueue", lambda *, export: None)


def post_raw(client, url, text: str, **headers):
    return client.generic("POST", url, text, content_type="application/json", **headers)


def test_a_json_body_over_the_limit_is_413_in_the_endpoints_shape(client, session_id, settings):
    settings.API_MAX_JSON_BYTES = 64 * 1024
    body = dict(export_body(LIVE, session_id), padding="x" * (200 * 1024))
    answer = post_raw(client, URL, json.dumps(body))
    assert answer.status_code == 413
    assert answer.json()["ErrorCode"] == -2 and "body" in answer.json()["ErrorMessage"]
    assert not Export.objects.exists()
    restore = post_raw(client, "/resource/v1/i/restore", json.dumps({"padding": "x" * (200 * 1024)}),
                       HTTP_X_SESSION_ID=session_id)
    assert restore.status_code == 413 and restore.json()["code"] == 413  # the contract: code 413


def test_json_nested_deeper_than_the_limit_is_a_400(client, session_id):
    deep = "[" * 3000 + "]" * 3000
    answer = post_raw(client, URL, '{"ServiceCaller": "mma", "x": ' + deep + "}")
    assert answer.status_code == 400
    assert answer.json()["ErrorCode"] == -2 and "nested deeper" in answer.json()["ErrorMessage"]
    # brackets inside strings are text, not nesting
    fine = post_raw(client, URL, json.dumps(dict(export_body(LIVE, session_id), note="[" * 100)))
    assert fine.status_code == 200, fine.json()


@pytest.mark.parametrize("field, value", [
    ("StartTime", "99999999999999999999999:00:00"),
    ("StartTime", 10**30),
    ("StartPos", 10**30),
    ("PeerId", ".."),
    ("PeerId", "a\u202eb"),
    ("FileName", "a\u200bb"),
])
def test_values_out_of_their_fields_rules_are_400s_naming_the_field(client, session_id, field, value):
    answer = post_raw(client, URL, json.dumps(export_body(LIVE, session_id, **{field: value})))
    assert answer.status_code == 400, answer.content
    assert answer.json()["ErrorCode"] == -2 and answer.json()["ErrorMessage"].startswith(field)
    assert not Export.objects.exists()


def test_an_offset_out_of_range_is_a_400(client, session_id):
    answer = client.get("/api/imgbed/v1/list/some/dir", {"offset": "99999999999999999999999"},
                        HTTP_X_SESSION_ID=session_id)
    assert 400 <= answer.status_code < 500
    assert answer["Content-Type"].startswith("application/json")


def test_submits_beyond_the_sessions_rate_are_429_with_a_time_wait(client, session_id, settings):
    from django.core.cache import cache

    settings.API_SUBMIT_RATE = "3/min"
    cache.clear()
    body = json.dumps(export_body(LIVE, session_id))
    answers = [post_raw(client, URL, body) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    refused = answers[-1].json()
    assert refused["ErrorCode"] == -4 and 0 < refused["TimeWait"] <= 60_000
    assert Export.objects.count() == 1  # the three accepted posts were one export and its polls
