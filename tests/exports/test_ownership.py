"""An export belongs to the user of the session that created it (docs/api.md, "Whose export it
is"): another user's session can neither read, cancel nor take over it by posting the same body,
and no clip replaces an object that its export did not write."""

import pytest
from django.conf import settings

from exports.models import Export
from resourced.sessions import session_create
from tests.exports.conftest import ORIGIN_MS, export_body, poll

URL = "/resource/v1/i/export-to-s3dir"
LIVE = "mp4/PEER1/rec-1/1/stream.mpd"
pytestmark = pytest.mark.django_db


@pytest.fixture
def sessions(db):
    return {user: session_create(userid=f"{user}@example.com", ttl_seconds=3600)[1] for user in ("alice", "bob")}


@pytest.fixture
def no_enqueue(monkeypatch):
    sent = []
    monkeypatch.setattr("exports.services.export_enqueue", lambda *, export: sent.append(export.task_id))
    return sent


def test_another_users_session_neither_reads_nor_cancels_an_export(api, sessions, no_enqueue):
    body = export_body(LIVE, sessions["alice"], userid=None)
    task_id = api.post(URL, body, format="json").json()["TaskId"]

    for method in (api.get, api.delete):
        answer = method(f"{URL}/{task_id}", HTTP_X_SESSION_ID=sessions["bob"])
        assert answer.status_code == 404
        assert answer.json()["ErrorCode"] == -1 and "no such export" in answer.json()["ErrorMessage"]
    export = Export.objects.get(task_id=task_id)
    assert export.status == Export.Status.QUEUED and export.owner == "alice@example.com"

    mine = api.get(f"{URL}/{task_id}", HTTP_X_SESSION_ID=sessions["alice"])
    assert mine.status_code == 200 and mine.json()["TaskId"] == task_id


def test_the_same_body_posted_by_another_user_is_another_export(api, sessions, no_enqueue,
                                                                django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        alice = api.post(URL, export_body(LIVE, sessions["alice"], userid="shared@example.com"), format="json").json()
        bob = api.post(URL, export_body(LIVE, sessions["bob"], userid="shared@example.com"), format="json").json()
    assert alice["ErrorCode"] == bob["ErrorCode"] == 1
    assert alice["TaskId"] != bob["TaskId"], "bob must not be answered alice's export"
    again = api.post(URL, export_body(LIVE, sessions["alice"], userid="shared@example.com"), format="json").json()
    assert again["TaskId"] == alice["TaskId"], "alice's re-post is still answered her export"
    assert no_enqueue == [alice["TaskId"], bob["TaskId"]]


@pytest.mark.django_db(transaction=True)
def test_a_clip_never_replaces_an_object_this_export_did_not_write(api, s3, sessions, celery_worker,
                                                                   uploaded_recordings):
    live_path = uploaded_recordings("dash-own", "dash", duration_s=8, template="timeline")
    peer = live_path.split("/")[1]
    name = f"highlight-{sessions['alice'][:6]}"
    answers = {}
    for user in ("alice", "bob"):
        body = export_body(live_path, sessions[user], StartPos=ORIGIN_MS + 2000, Duration=2000, FileName=name)
        task_id = api.post(URL, body, format="json").json()["TaskId"]
        answers[user] = poll(api, task_id, sessions[user])
        assert answers[user]["ErrorCode"] == 5, answers[user]
        if user == "alice":
            first = s3.head_object(Bucket=settings.EXPORT_DEFAULT_BUCKET, Key=f"export/{peer}/{name}.ts")
    assert answers["alice"]["VideoPath"] == f"/export/{peer}/{name}.ts"
    assert answers["bob"]["VideoPath"] == f"/export/{peer}/{name}_1.ts"
    after = s3.head_object(Bucket=settings.EXPORT_DEFAULT_BUCKET, Key=f"export/{peer}/{name}.ts")
    assert after["ETag"] == first["ETag"], "alice's clip is untouched"
    assert after["Metadata"]["resourced-export"] == answers["alice"]["TaskId"]


@pytest.mark.django_db(transaction=True)
def test_getthumbnail_of_the_same_frame_is_each_users_own(api, sessions, celery_worker, uploaded_recordings):
    from exports.models import Thumbnail
    from imgbed.models import Image
    from tests.exports.test_getthumbnail import poll_thumbnail

    live_path = uploaded_recordings("dash-own", "dash", duration_s=8, template="timeline")
    answers = {}
    for user in ("alice", "bob"):
        body = {"StartPos": ORIGIN_MS + 2000, "StartTime": "0", "LivePath": live_path, "SessionId": sessions[user]}
        answers[user] = poll_thumbnail(api, body)
        assert answers[user]["ErrorCode"] == 0, answers[user]
    assert answers["alice"]["ImagePath"] != answers["bob"]["ImagePath"], "bob is not answered alice's image"
    assert answers["bob"]["ImagePath"].endswith(f"_{ORIGIN_MS + 2000}_1.jpg")  # the next free name
    assert sorted(Thumbnail.objects.values_list("userid", flat=True)) == ["alice@example.com", "bob@example.com"]
    for user, answer in answers.items():
        path, name = answer["ImagePath"].strip("/").rsplit("/", 1)
        assert Image.objects.get(path=path, filename=name).owner == f"{user}@example.com"
