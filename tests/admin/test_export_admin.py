"""The export history in the admin: filters, search, columns, the clip, retry and cancel, and no
secret on any page."""

import base64
import re
import uuid
from html import unescape

import pytest
import requests
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from exports.credentials import decrypt_credentials
from exports.models import Export
from tests.admin.conftest import make_export, make_failed, make_ready

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/exports/export/"


def change_url(export: Export) -> str:
    return reverse("admin:exports_export_change", args=[export.pk])


def result_row(html: str, task_id: str) -> str:
    """The changelist's row of one export."""
    rows = re.findall(r'<tr><td class="action-checkbox">(?:(?!</tr>).)*</tr>', html, re.S)
    return next(row for row in rows if task_id in row)


def listed(response) -> list[str]:
    assert response.status_code == 200
    return [e.task_id for e in response.context["cl"].result_list]


def test_no_page_shows_the_destination_credentials(staff_client, api, session_id):
    access, secret = "AKIAOPSDISTINCT7Q2", f"Zx9-Secret-{uuid.uuid4().hex}"
    body = {"ServiceCaller": "mma", "StartPos": 1_700_000_004_000, "StartTime": "00:00:04", "Duration": 4000,
            "LivePath": "mp4/PEERSECRET/rec-1/1/stream.mpd", "SessionId": session_id, "FileName": "secret-test",
            "ExportS3Bucket": "client-bucket", "ExportS3Key": f"{access}:{secret}"}
    answer = api.post("/resource/v1/i/export-to-s3dir", body, format="json").json()
    assert answer["ErrorCode"] == 1, answer
    export = Export.objects.get(task_id=answer["TaskId"])
    # while it runs, the key is stored, encrypted
    token = bytes(export.dest_credentials)
    assert token and secret.encode() not in token
    assert decrypt_credentials(token).secret_key == secret
    forbidden = {secret, access, token.decode(), token.hex(), base64.b64encode(token).decode(), token.decode()[:24]}

    pages = {
        "list": staff_client.get(CHANGELIST),
        "search": staff_client.get(CHANGELIST, {"q": export.task_id}),
        "change": staff_client.get(change_url(export)),
    }
    staff_client.post(CHANGELIST, {"action": "cancel_exports", "_selected_action": [export.pk]})
    staff_client.post(reverse("admin:exports_export_retry", args=[export.pk]))
    pages["history"] = staff_client.get(reverse("admin:exports_export_history", args=[export.pk]))
    pages["index"] = staff_client.get("/admin/")
    for name, page in pages.items():
        assert page.status_code == 200, name
        text = unescape(page.content.decode())
        for value in forbidden:
            assert value not in text, f"{name} page shows {value[:8]}…"
    assert "dest_credentials" not in pages["change"].content.decode()
    assert "the client&#x27;s own" in pages["change"].content.decode() or "the client's own" in unescape(
        pages["change"].content.decode())
    # the history holds the staff's actions, and no field of the export
    assert [e.change_message for e in LogEntry.objects.filter(object_id=str(export.pk)).order_by("pk")] == [
        "Cancelled", "Retried"]
    # the admin form has no field for it either
    admin = staff_client.get(change_url(export)).context["adminform"]
    assert "dest_credentials" not in admin.form.fields


def test_list_filters_by_status_stage_caller_user_type_and_date(staff_client):
    ready = make_ready(service_caller="search", userid="alice@example.com", export_type=1)
    failed = make_failed(service_caller="mma", userid="bob@example.com")
    running = make_export(status="running", stage="encode", userid="bob@example.com", export_type=2)
    old = make_failed(code=-7, userid="carol@example.com")
    Export.objects.filter(pk=old.pk).update(created_at="2026-01-05T10:00:00Z")

    assert listed(staff_client.get(CHANGELIST, {"status__exact": "failed"})) == [failed.task_id, old.task_id]
    assert listed(staff_client.get(CHANGELIST, {"stage__exact": "encode"})) == [running.task_id]
    assert listed(staff_client.get(CHANGELIST, {"service_caller": "search"})) == [ready.task_id]
    assert set(listed(staff_client.get(CHANGELIST, {"userid": "bob@example.com"}))) == {failed.task_id,
                                                                                       running.task_id}
    assert listed(staff_client.get(CHANGELIST, {"export_type__exact": "2"})) == [running.task_id]
    assert listed(staff_client.get(CHANGELIST, {"error_code": "-7"})) == [old.task_id]
    january = {"created_at__gte": "2026-01-01 00:00:00+00:00", "created_at__lt": "2026-02-01 00:00:00+00:00"}
    assert listed(staff_client.get(CHANGELIST, january)) == [old.task_id]
    combined = staff_client.get(CHANGELIST, {"status__exact": "failed", "userid": "bob@example.com"})
    assert listed(combined) == [failed.task_id]
    # the userid box keeps the other filters when it is submitted
    assert 'type="hidden" name="status__exact" value="failed"' in combined.content.decode()
    page = staff_client.get(CHANGELIST).content.decode()
    for title in ("By status", "By stage", "By service caller", "By userid", "By export type", "By created at"):
        assert title in page


def test_search_by_task_id_file_name_and_live_path(staff_client):
    one = make_ready(file_name="meeting-2026-11-22.ts", live_path="mp4/PEERA/rec-meeting/1/stream.mpd")
    two = make_failed(file_name="other.ts", live_path="ts/PEERB/rec-street/1/index.m3u8")
    assert listed(staff_client.get(CHANGELIST, {"q": one.task_id})) == [one.task_id]
    assert listed(staff_client.get(CHANGELIST, {"q": two.task_id[:12]})) == [two.task_id]
    assert listed(staff_client.get(CHANGELIST, {"q": "meeting-2026"})) == [one.task_id]
    assert listed(staff_client.get(CHANGELIST, {"q": "rec-street"})) == [two.task_id]


def test_list_shows_state_clip_lack_total_thumbnail_and_download_in_at_most_nine_columns(staff_client):
    ready = make_ready(duration_ms=12_500, lack_ms=1500)
    failed = make_failed()
    response = staff_client.get(CHANGELIST)
    html = response.content.decode()
    headers = re.findall(r'<div class="text">(?:<a [^>]*>|<span>)([^<]+)<', html)
    for header in ("State", "Caller / userid", "Clip", "Created"):
        assert header in headers, headers
    # a laptop screen: at most 9 with the checkbox; stage timings are on the change page
    head = re.search(r'<table id="result_list">\s*<thead>(.*?)</thead>', html, re.S).group(1)
    assert len(re.findall(r"<th ", head)) <= 9
    row = result_row(html, ready.task_id)
    assert f'<img src="{ready.image_path}"' in row
    assert '<span class="clip-seconds" title="Duration (s)">12.5 s</span>' in row
    assert "lack 1500 ms" in row
    assert "✓ ready" in row and ">in 2.0 s</span>" in row  # and its total time
    assert 'class="download-clip"' in row and "X-Amz-Signature" in row
    failed_row = result_row(html, failed.task_id)
    assert "download-clip" not in failed_row and "<img" not in failed_row


def test_download_link_fetches_the_clip_with_the_service_credentials(staff_client, s3, bucket):
    ready = make_ready(dest_bucket=bucket)
    clip = b"\x47" + uuid.uuid4().bytes * 100
    s3.put_object(Bucket=bucket, Key=ready.video_key, Body=clip)
    page = staff_client.get(change_url(ready))
    match = re.search(r'<a href="([^"]+)" id="export-download">', page.content.decode())
    assert match, "the change page links the clip"
    url = unescape(match.group(1))
    assert url.startswith(settings.RESOURCED_S3_ENDPOINT_URL) and f"/{bucket}/{ready.video_key}" in url
    assert settings.AWS_SECRET_ACCESS_KEY not in url
    response = requests.get(url, timeout=10)
    assert response.status_code == 200 and response.content == clip
    assert "attachment" in response.headers.get("Content-Disposition", "")

    running = make_export(status="running", stage="upload", dest_bucket=bucket)
    page = staff_client.get(change_url(running)).content.decode()
    assert 'id="export-download"' not in page and "when the export is ready" in page


def test_change_page_shows_preview_stage_table_and_no_save_button(staff_client):
    ready = make_ready()
    html = staff_client.get(change_url(ready)).content.decode()
    assert f'<img src="{ready.image_path}" alt="first frame" id="export-preview"' in html
    assert '<table class="stage-timings">' in html and "<td>encode</td><td>0.0</td><td>testhost</td>" in html
    assert 'name="_save"' not in html and 'name="_continue"' not in html
    assert 'id="export-retry"' not in html and 'id="export-cancel"' not in html  # ready: nothing to do


def test_retry_action_requeues_failed_exports_and_leaves_ready_ones(staff_client):
    failed, ready = make_failed(), make_ready()
    response = staff_client.post(CHANGELIST, {"action": "retry_exports", "_selected_action": [failed.pk, ready.pk]},
                                 follow=True)
    failed.refresh_from_db()
    ready.refresh_from_db()
    assert (failed.status, failed.stage, failed.error_code, failed.restarts) == ("queued", "queued", 1, 1)
    assert failed.finished_at is None and failed.timings == {}
    assert ready.status == "ready"
    notes = [str(m) for m in response.context["messages"]]
    assert any("queued again" in n for n in notes)
    assert any("only failed or cancelled exports are retried" in n for n in notes)


def test_cancel_action_and_buttons(staff_client):
    queued = make_export()
    staff_client.post(CHANGELIST, {"action": "cancel_exports", "_selected_action": [queued.pk]})
    queued.refresh_from_db()
    assert (queued.status, queued.error_code) == ("cancelled", -8)

    running = make_export(status="running", stage="cut")
    html = staff_client.get(change_url(running)).content.decode()
    assert 'id="export-cancel"' in html and 'id="export-retry"' not in html
    assert staff_client.get(reverse("admin:exports_export_cancel", args=[running.pk])).status_code == 405
    response = staff_client.post(reverse("admin:exports_export_cancel", args=[running.pk]))
    assert response.status_code == 302 and response.url == change_url(running)
    running.refresh_from_db()
    assert running.status == "cancelled"
    html = staff_client.get(change_url(running)).content.decode()
    assert 'id="export-retry"' in html
    staff_client.post(reverse("admin:exports_export_retry", args=[running.pk]))
    running.refresh_from_db()
    assert running.status == "queued" and running.restarts == 1


def test_staff_without_change_permission_cannot_retry(client, django_user_model):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_export"))
    client.force_login(viewer)
    failed = make_failed()
    page = client.get(CHANGELIST).content.decode()
    assert "retry_exports" not in page
    assert client.post(reverse("admin:exports_export_retry", args=[failed.pk])).status_code == 403
    failed.refresh_from_db()
    assert failed.status == "failed"


def test_quota_admin_edits_quotas(staff_client):
    from exports.models import Quota

    response = staff_client.post("/admin/exports/quota/add/", {
        "scope": "user", "subject": "heavy@example.com", "max_active_exports": 9, "max_waiting": 3,
        "max_clip_ms": 60_000, "max_minutes_per_day": 30, "note": "from the admin"})
    assert response.status_code == 302
    quota = Quota.objects.get(subject="heavy@example.com")
    assert (quota.max_active_exports, quota.max_waiting) == (9, 3)
    assert "heavy@example.com" in staff_client.get("/admin/exports/quota/").content.decode()


def test_celery_results_and_periodic_tasks_show_in_the_admin(staff_client):
    from django_celery_beat.models import IntervalSchedule, PeriodicTask
    from django_celery_results.models import TaskResult

    TaskResult.objects.create(task_id="celery-task-1", task_name="exports.download", status="SUCCESS")
    every = IntervalSchedule.objects.create(every=60, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="sweep stale exports", task="exports.sweep_stale", interval=every)
    index = staff_client.get("/admin/").content.decode()
    assert "/admin/django_celery_results/taskresult/" in index
    assert "/admin/django_celery_beat/periodictask/" in index
    assert "celery-task-1" in staff_client.get("/admin/django_celery_results/taskresult/").content.decode()
    assert "sweep stale exports" in staff_client.get("/admin/django_celery_beat/periodictask/").content.decode()


def test_the_change_page_shows_every_field_but_the_credentials(staff_client):
    ready = make_ready()
    form = staff_client.get(change_url(ready)).context["adminform"]
    shown = {name for fieldset in form for line in fieldset for field in line for name in [field.field["name"]]}
    # Progress is shown through "state" (a failed export's Progress never is)
    expected = {f.name for f in Export._meta.fields} - {"id", "dest_credentials", "progress"} | {"state"}
    assert expected <= shown and "dest_credentials" not in shown


def test_an_export_callback_is_redelivered_from_the_admin(staff_client):
    from django.utils import timezone

    from exports.models import ExportCallback, ExportCallbackDelivery

    export = make_failed(callback_url="https://client.example/done")
    callback = ExportCallback.objects.create(export=export, url=export.callback_url, body='{"ErrorCode": -6}',
                                             state=ExportCallback.State.FAILED, attempts=3,
                                             deadline=timezone.now(), last_error="HTTP 503")
    ExportCallbackDelivery.objects.create(callback=callback, delivery_id=callback.delivery_id, attempt=3,
                                          outcome="http_error", http_status=503, started_at=timezone.now())
    page = staff_client.get(reverse("admin:exports_exportcallback_change", args=[callback.pk])).content.decode()
    assert "<p>Http Error</p>" in page and "<p>503</p>" in page  # every attempt shown
    assert 'name="_save"' not in page  # read-only
    response = staff_client.post(reverse("admin:exports_exportcallback_changelist"),
                                 {"action": "redeliver", "_selected_action": [callback.pk]})
    assert response.status_code == 302
    callback.refresh_from_db()
    assert callback.state == ExportCallback.State.PENDING and callback.deadline > timezone.now()
    assert callback.attempts == 3  # the next attempt is number 4, under the same delivery id
