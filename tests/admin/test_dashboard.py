"""The admin index: queued and running exports per queue and stage, failures of the last 24 h by
ErrorCode, minutes exported today, restores waiting."""

from datetime import timedelta
from html import unescape

import pytest
from django.utils import timezone

from tests.admin.conftest import make_export, make_failed, make_ready

pytestmark = pytest.mark.django_db


def make_restore_job(status: str, **fields):
    from restore.models import RestoreJob

    values = dict(task_id=f"job-{status}-{RestoreJob.objects.count()}", userid="ops", bucket="recordings",
                  dest_bucket="recordings", file_dir="restore/x", callback_url="https://client.example/cb", days=7,
                  tier="Standard", status=status)
    values.update(fields)
    return RestoreJob.objects.create(**values)


def test_dashboard_counts_the_pipeline_failures_minutes_and_restores(staff_client):
    now = timezone.now()
    make_export()  # queued: waits on the shared media.io queue
    make_export()
    make_export(status="running", stage="download", host="hostA")
    make_export(status="running", stage="encode", host="hostA")
    make_export(status="running", stage="encode", host="hostB")
    make_export(status="running", stage="upload", host="hostA")
    # a stream copy from keyframes runs every stage in its download task, from the shared queue
    make_export(status="running", stage="cut", host="hostA", export_type=0, cut_mode="keyframe")
    make_export(status="waiting", stage="restoring")
    make_export(status="waiting", stage="waiting")
    make_export(status="waiting", stage="waiting")
    make_failed(code=-6)
    make_failed(code=-6)
    make_failed(code=-7, message="media: invalid data found when processing input")
    make_failed(code=-1, finished_at=now - timedelta(hours=30))  # older than 24 h
    make_export(status="cancelled", stage="cancelled", error_code=-8, finished_at=now)
    make_ready(duration_ms=90_000)
    make_ready(duration_ms=30_000)
    make_ready(duration_ms=600_000, finished_at=now.replace(hour=0, minute=0, second=0) - timedelta(minutes=1))
    make_restore_job("queued")
    make_restore_job("restoring")
    make_restore_job("copying")
    make_restore_job("done")

    response = staff_client.get("/admin/")
    assert response.status_code == 200
    dash = response.context["resourced_dashboard"]
    pipeline = {(row["queue"], row["stage"]): (row["queued"], row["running"], row["waiting"])
                for row in dash["pipeline"]}
    assert pipeline == {
        ("(scheduled check)", "restoring"): (0, 0, 1),
        ("(scheduled check)", "waiting"): (0, 0, 2),
        ("media.io", "queued"): (2, 0, 0),
        ("media.io", "download"): (0, 1, 0),
        ("media.cpu@hostA", "encode"): (0, 1, 0),
        ("media.cpu@hostB", "encode"): (0, 1, 0),
        ("media.io@hostA", "upload"): (0, 1, 0),
        ("media.io", "cut"): (0, 1, 0),
    }
    assert [row["stage"] for row in dash["pipeline"]][:2] == ["restoring", "waiting"]
    assert (dash["queued_total"], dash["running_total"], dash["waiting_total"]) == (2, 5, 3)
    failures = dash["failures"]
    assert failures["total"] == 3 and failures["cancelled"] == 1
    assert [(r["code"], r["n"]) for r in failures["by_code"]] == [(-6, 2), (-7, 1)]
    today = dash["today"]
    assert today["exports"] == 2 and today["minutes"] == 2.0
    restores = dash["restores"]
    assert restores["total"] == 3
    assert {s["status"]: s["n"] for s in restores["statuses"]} == {"queued": 1, "restoring": 1, "copying": 1}
    waiting = staff_client.get(restores["url"])
    assert waiting.status_code == 200
    assert sorted(job.status for job in waiting.context["cl"].result_list) == ["copying", "queued", "restoring"]

    html = unescape(response.content.decode())
    assert 'id="resourced-dashboard"' in html
    assert "media.cpu@hostA" in html and "destination upload failed" in html
    assert "Minutes exported today" in html and ">2.0<" in html
    assert "Restores waiting" in html
    assert "Exports waiting (restores, live edge)" in html and "status__exact=waiting" in html
    assert "Site administration" in html and "/admin/exports/export/" in html  # the usual index follows


def test_dashboard_links_open_the_filtered_history(staff_client):
    failed = make_failed(code=-5, message="source storage unreachable: ReadTimeout")
    make_failed(code=-5, finished_at=timezone.now() - timedelta(days=2))
    make_export(status="running", stage="cut", host="hostC")
    dash = staff_client.get("/admin/").context["resourced_dashboard"]
    by_code = staff_client.get(dash["failures"]["by_code"][0]["url"])
    assert [e.task_id for e in by_code.context["cl"].result_list] == [failed.task_id]
    cut = staff_client.get(dash["pipeline"][0]["url"])
    assert [e.stage for e in cut.context["cl"].result_list] == ["cut"]
    assert staff_client.get(dash["failures"]["latest"][0]["url"]).status_code == 200


def test_dashboard_when_nothing_happened(staff_client):
    html = staff_client.get("/admin/").content.decode()
    assert "Nothing queued, running or waiting." in html and "No failure." in html


def test_dashboard_is_only_for_staff_who_may_see_exports(client, django_user_model):
    other = django_user_model.objects.create_user("other", password="x", is_staff=True)
    client.force_login(other)
    response = client.get("/admin/")
    assert response.status_code == 200 and "resourced_dashboard" not in response.context
    client.logout()
    assert client.get("/admin/").status_code == 302  # to the login page
