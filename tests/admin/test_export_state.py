"""What an operator reads of an export's state in the admin: the progress endpoint behind the
self-refreshing bar, the stage a failed export ended in (and never Progress 100), waiting exports,
times to the second, read-only history pages, the MP4 player, and the Quota page's default and
usage."""

import re
from datetime import timedelta
from html import unescape

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from exports.models import Export, Quota, Thumbnail
from exports.selectors import export_failed_stage, export_response
from tests.admin.conftest import make_export, make_failed, make_ready

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/exports/export/"
PROGRESS = "/admin/exports/export/progress/"
ALL_DONE = {"download": 0.4, "cut": 0.1, "encode": 0.0, "thumbnail": 0.05, "upload": 0.2}


def change_url(export: Export) -> str:
    return reverse("admin:exports_export_change", args=[export.pk])


def result_row(html: str, task_id: str) -> str:
    rows = re.findall(r'<tr><td class="action-checkbox">(?:(?!</tr>).)*</tr>', html, re.S)
    return next(row for row in rows if task_id in row)


def cells(row: str) -> list[str]:
    """The text of a table row's cells."""
    return [unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


def test_progress_endpoint_answers_stage_progress_and_eta_of_the_ids_asked(staff_client):
    running = make_export(status="running", stage="encode", progress=60, attempts={"download": 1, "encode": 1},
                          started_at=timezone.now() - timedelta(seconds=30))
    queued = make_export()
    failed = make_failed(code=-7, progress=100, attempts={"download": 1, "cut": 1, "encode": 2},
                         timings={"download": 0.4, "cut": 0.1})
    waiting = make_export(status="waiting", stage="restoring", next_check_at=timezone.now() + timedelta(minutes=5),
                          waiting_on={"kind": "restoring", "restoring": {"a.m4s": "ongoing", "b.m4s": "ongoing"}})
    ready = make_ready()
    make_export(status="running", stage="cut", progress=45)  # not asked for

    response = staff_client.get(PROGRESS, {"id": [running.pk, queued.pk, failed.pk, waiting.pk, ready.pk, "x"]})
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]
    body = response.json()
    assert body["poll_ms"] == settings.EXPORT_POLL_MS
    states = {s["id"]: s for s in body["exports"]}
    assert set(states) == {running.pk, queued.pk, failed.pk, waiting.pk, ready.pk}

    s = states[running.pk]
    assert (s["status"], s["stage"], s["progress"]) == ("running", "encode", 60)
    assert 19 <= s["eta_seconds"] <= 22  # 30 s for 60 %: about 20 s for the 40 % to go
    assert 'aria-valuenow="60"' in s["html"] and "ETA 2" in s["html"] and "encode" in s["html"]
    assert (states[queued.pk]["progress"], states[queued.pk]["eta_seconds"]) == (0, None)

    s = states[failed.pk]
    assert s["progress"] is None and s["ended_in"] == "encode" and s["error_code"] == -7
    assert "100" not in s["html"] and "export-bar" not in s["html"]
    assert 'failed in <strong class="export-failed-stage">encode</strong>' in s["html"]

    s = states[waiting.pk]
    assert s["progress"] is None and s["stage"] == "restoring" and s["waiting_on"] == 2
    assert s["next_check_at"] == waiting.next_check_at.isoformat()
    assert "export-bar" not in s["html"] and "2 archived objects being restored" in s["html"]
    assert "next check " + timezone.localtime(waiting.next_check_at).strftime("%Y-%m-%d %H:%M:%S") in s["html"]

    assert states[ready.pk]["progress"] == 100


@pytest.mark.parametrize("history", [
    # waited 2 h on restores; its last check found them done and began the download
    {"waiting_on": {"kind": "restoring", "restoring": {"a.m4s": "ready", "b.m4s": "ready"}}},
    # waited on the live edge
    {"waiting_on": {"kind": "waiting", "live": {"edge_ms": 12000, "end_ms": 14000}}},
    # restarted from download by the sweep (its host vanished)
    {"restarts": 1},
])
def test_the_eta_counts_only_the_work_since_the_export_last_waited(staff_client, history):
    now = timezone.now()
    export = make_export(status="running", stage="download", progress=25, attempts={"download": 1},
                         started_at=now - timedelta(hours=2), **history)
    # its row as services left it: put back (a wait, a restart) 30 s ago, Progress counted from 0 since
    Export.objects.filter(pk=export.pk).update(created_at=now - timedelta(hours=2, seconds=5),
                                               updated_at=now - timedelta(seconds=30))
    waiting = make_export(status="waiting", stage="restoring", started_at=now - timedelta(hours=2),
                          next_check_at=now + timedelta(minutes=5), waiting_on={"kind": "restoring",
                                                                                "restoring": {"c.m4s": "ongoing"}})

    states = {s["id"]: s for s in staff_client.get(PROGRESS, {"id": [export.pk, waiting.pk]}).json()["exports"]}
    s = states[export.pk]
    assert 88 <= s["eta_seconds"] <= 95, s  # 30 s for 25 %: about 90 s to go, not 6 h from its start 2 h ago
    assert "ETA 1 min" in s["html"], s["html"]
    row = result_row(staff_client.get(CHANGELIST).content.decode(), export.task_id)
    assert "ETA 1 min" in row
    # a waiting export has no ETA of work: what it waits on and its next check
    s = states[waiting.pk]
    assert s["eta_seconds"] is None and "ETA" not in s["html"] and "1 archived object being restored" in s["html"]
    # the API's TimeWait is the same estimate (within its bounds): 30 s for 90 % is about 3.3 s to go
    Export.objects.filter(pk=export.pk).update(progress=90)
    assert 3_200 <= export_response(Export.objects.get(pk=export.pk))["TimeWait"] <= 3_600


def test_progress_endpoint_is_for_staff_who_may_view_exports(client, django_user_model):
    export = make_export(status="running", stage="download", progress=10)
    response = client.get(PROGRESS, {"id": export.pk})
    assert response.status_code == 302 and "/admin/login/" in response.url
    clerk = django_user_model.objects.create_user("clerk", password="x", is_staff=True)
    client.force_login(clerk)
    assert client.get(PROGRESS, {"id": export.pk}).status_code == 403
    user = django_user_model.objects.create_user("user", password="x")
    client.force_login(user)
    assert client.get(PROGRESS, {"id": export.pk}).status_code == 302


def test_progress_endpoint_answers_get_only(staff_client):
    assert staff_client.post(PROGRESS, {"id": 1}).status_code == 405


@pytest.mark.parametrize("fields, stage", [
    # began encode, completed download and cut
    ({"attempts": {"download": 1, "cut": 1, "encode": 3}, "timings": {"download": 1.0, "cut": 0.2}}, "encode"),
    # never started
    ({}, "queued"),
    # every stage it began completed: it ended between two (its host lost after download)
    ({"attempts": {"download": 1}, "timings": {"download": 1.0}}, "download"),
    # waited on the live edge, then failed downloading
    ({"attempts": {"download": 1}, "waiting_on": {"kind": "waiting"}}, "download"),
    # the restores did not complete by the deadline (the check that found it runs as download)
    ({"attempts": {"download": 1}, "waiting_on": {"kind": "restoring"}, "wait_deadline": "deadline"}, "restoring"),
    # restored, then failed downloading before the deadline
    ({"attempts": {"download": 1}, "waiting_on": {"kind": "restoring"}, "wait_deadline": "later"}, "download"),
])
def test_the_stage_a_failed_export_ended_in(fields, stage):
    now = timezone.now()
    deadline = {"deadline": now - timedelta(seconds=1), "later": now + timedelta(hours=1)}
    if "wait_deadline" in fields:
        fields = dict(fields, wait_deadline=deadline[fields["wait_deadline"]])
    export = make_failed(finished_at=now, **fields)
    assert export.stage == "failed" and export_failed_stage(export) == stage


def test_a_failed_export_shows_its_stage_marked_and_never_progress_100(staff_client):
    failed = make_failed(code=-6, progress=100, attempts={s: 1 for s in ALL_DONE},
                         timings={s: t for s, t in ALL_DONE.items() if s != "upload"})
    row = result_row(staff_client.get(CHANGELIST).content.decode(), failed.task_id)
    assert 'failed in <strong class="export-failed-stage">upload</strong>' in row and "ErrorCode -6" in row
    assert "100" not in re.sub(r"<img[^>]*>|href=\"[^\"]*\"|data-[a-z-]+=\"[^\"]*\"", "", row)
    page = staff_client.get(change_url(failed)).content.decode()
    assert '<tr class="stage-ended"><td>upload</td><td>–</td><td></td><td>1</td><td>✗ failed here</td></tr>' in page
    assert 'aria-valuenow="100"' not in page and "100 %" not in page
    assert not re.search(r'field-progress\b', page)


def test_a_running_export_has_a_bar_that_polls(staff_client):
    running = make_export(status="running", stage="cut", progress=47, started_at=timezone.now())
    html = staff_client.get(CHANGELIST).content.decode()
    row = result_row(html, running.task_id)
    assert 'aria-valuenow="47"' in row and 'style="width: 47%"' in row
    assert f'data-export-id="{running.pk}" data-status="running" data-progress-url="{PROGRESS}"' in row
    assert "/static/exports/admin/export_state.js" in html and "/static/exports/admin/export_state.css" in html
    page = staff_client.get(change_url(running)).content.decode()
    assert "/static/exports/admin/export_state.js" in page and 'aria-valuenow="47"' in page


def test_a_waiting_export_shows_its_stage_and_next_check_instead_of_a_bar(staff_client):
    check = timezone.now() + timedelta(seconds=95)
    deadline = check + timedelta(seconds=120)
    waiting = make_export(status="waiting", stage="waiting", next_check_at=check, wait_deadline=deadline,
                          waiting_on={"kind": "waiting", "live": {"edge_ms": 1000}})
    row = result_row(staff_client.get(CHANGELIST).content.decode(), waiting.task_id)
    assert row.count("live edge") == 1 and "waiting for the live edge" in row and "export-bar" not in row
    assert f"next check {timezone.localtime(check):%Y-%m-%d %H:%M:%S}" in row
    assert f"until {timezone.localtime(deadline):%Y-%m-%d %H:%M:%S}" in row


def test_times_are_shown_to_the_second(staff_client):
    moment = timezone.now().replace(microsecond=0) - timedelta(seconds=7)
    ready = make_ready(finished_at=moment)
    Export.objects.filter(pk=ready.pk).update(created_at=moment - timedelta(seconds=3))
    stamp = f"{timezone.localtime(moment - timedelta(seconds=3)):%Y-%m-%d %H:%M:%S}"
    row = result_row(staff_client.get(CHANGELIST).content.decode(), ready.task_id)
    date, time = stamp.split()
    assert f'<span class="nowrap">{date}</span><br><span class="nowrap">{time}</span></td>' in row
    page = staff_client.get(change_url(ready)).content.decode()
    assert f"{timezone.localtime(moment):%Y-%m-%d %H:%M:%S}" in page and stamp in page


def test_export_and_thumbnail_pages_are_read_only(staff_client):
    failed = make_failed()
    page = staff_client.get(change_url(failed)).content.decode()
    assert 'name="_save"' not in page and 'name="_continue"' not in page and "deletelink" not in page
    assert 'id="export-retry"' in page  # the changes staff make stay
    assert staff_client.post(change_url(failed), {"status": "ready"}).status_code == 405
    assert staff_client.get(reverse("admin:exports_export_delete", args=[failed.pk])).status_code == 403
    assert "delete_selected" not in staff_client.get(CHANGELIST).content.decode()
    failed.refresh_from_db()
    assert failed.status == "failed"

    thumb = Thumbnail.objects.create(idempotency_key="k1", live_path="mp4/P/rec-1/1/stream.mpd", peer_id="P",
                                     start_pos=1, start_time_ms=0, source_bucket="recordings")
    page = staff_client.get(reverse("admin:exports_thumbnail_change", args=[thumb.pk])).content.decode()
    assert 'name="_save"' not in page and "deletelink" not in page
    assert staff_client.get(reverse("admin:exports_thumbnail_delete", args=[thumb.pk])).status_code == 403


def test_an_mp4_clip_plays_inline_from_a_presigned_url(staff_client):
    mp4 = make_ready(video_key="export/P/P_rec-1_1700000004000_4000.mp4", export_format="mp4")
    page = staff_client.get(change_url(mp4)).content.decode()
    match = re.search(r'<video id="export-video" src="([^"]+)" poster="([^"]+)" controls', page)
    assert match, "the change page plays the clip"
    url = unescape(match.group(1))
    assert f"/{mp4.dest_bucket}/{mp4.video_key}?" in url and "X-Amz-Signature" in url
    assert "response-content-disposition" not in url.lower()  # played, not downloaded
    assert match.group(2) == mp4.image_path
    assert 'id="export-download"' in page  # and downloaded from the link beside it
    ts = make_ready()
    assert 'id="export-video"' not in staff_client.get(change_url(ts)).content.decode()


def test_quota_page_shows_the_built_in_default_when_there_is_no_default_row(staff_client):
    page = staff_client.get("/admin/exports/quota/").content.decode()
    default = re.search(r'<div class="module" id="quota-default">(.*?)</div>', page, re.S).group(1)
    assert "built in: there is no default row" in default
    cells = re.findall(r'<td class="num">([^<]+)</td>', default)
    assert cells == ["4", "20", f"{settings.EXPORT_MAX_DURATION_MS} ms", "600"]


def test_quota_page_shows_the_default_row_and_todays_usage_per_user(staff_client):
    row = Quota.objects.create(scope="default", max_active_exports=2, max_waiting=5, max_clip_ms=600_000,
                               max_minutes_per_day=10)
    Quota.objects.create(scope="user", subject="heavy@example.com", max_active_exports=1, max_waiting=1,
                         max_clip_ms=60_000, max_minutes_per_day=3)
    make_ready(userid="heavy@example.com", duration_ms=120_000)
    make_export(userid="heavy@example.com", status="running", stage="encode", duration_ms=60_000)
    make_failed(userid="heavy@example.com", duration_ms=600_000)  # an export today, no minutes
    old = make_export(userid="heavy@example.com", status="waiting", stage="restoring", duration_ms=30_000)
    Export.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))
    make_export(userid="", service_caller="search", duration_ms=90_000)
    Export.objects.filter(pk=make_ready(userid="yesterday@example.com").pk).update(
        created_at=timezone.now() - timedelta(days=2))

    page = staff_client.get("/admin/exports/quota/").content.decode()
    default = re.search(r'<div class="module" id="quota-default">(.*?)</div>', page, re.S).group(1)
    assert f'href="/admin/exports/quota/{row.pk}/change/"' in default and "built in" not in default
    assert re.findall(r'<td class="num">([^<]+)</td>', default) == ["2", "5", "600000 ms", "10"]

    usage = re.search(r'<div class="module" id="quota-usage">(.*?)</div>', page, re.S).group(1)
    rows = dict(re.findall(r'<tr class="quota-usage-row" data-subject="([^"]*)">(.*?)</tr>', usage, re.S))
    assert set(rows) == {"heavy@example.com", "search"}  # yesterday's user has nothing today
    heavy = cells(rows["heavy@example.com"])
    # 3 exports today; 3 minutes (the failed one not counted); 1 running of 1; 1 waiting of 1
    assert heavy == ["heavy@example.com", "mma", "3", "3.0 / 3", "1 / 1", "1 / 1", "user:heavy@example.com"]
    assert 'class="num over">3.0 / 3' in rows["heavy@example.com"]
    assert cells(rows["search"]) == ["no userid: search", "search", "1", "1.5 / 10", "1 / 2", "0 / 5", "default"]
