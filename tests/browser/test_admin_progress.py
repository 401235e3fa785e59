"""The operator's view of exports in headless Chromium (Debian's package, through chromedriver),
against a live server: a running export's bar moves without a reload while its row changes, the
list fits a laptop (at most 9 columns), a failed export shows the stage it failed in and no 100,
the change pages have no Save or Delete, an MP4 clip plays inline, and the Quota page shows the
default and today's usage. Screenshots go to test-artifacts/browser/progress-*.png.

scripts/install-browser.sh installs chromium and chromium-driver; without them the tests are skipped.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from exports.models import Export, Quota
from tests import mediagen
from tests.admin.conftest import make_export, make_failed, make_ready
from tests.browser.conftest import ARTIFACTS, browser_needed

pytestmark = [*browser_needed, pytest.mark.django_db(transaction=True)]

BAR = '[data-export-id="{}"] .export-bar'

PLAY = """
const done = arguments[arguments.length - 1];
const video = document.getElementById('export-video');
const errors = [];
video.muted = true;
video.addEventListener('error', () => errors.push(video.error ? video.error.code + ' ' + video.error.message
                                                              : 'error'));
video.addEventListener('ended', () => done({ended: true, time: video.currentTime, duration: video.duration,
                                            width: video.videoWidth, errors: errors}));
setTimeout(() => done({ended: false, time: video.currentTime, duration: video.duration, errors: errors}), 20000);
video.play().catch(e => errors.push('play: ' + e));
"""


@pytest.fixture
def ops(browser, live_server, django_user_model):
    """The browser, logged in to the admin as staff; shot(name) saves a screenshot."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    django_user_model.objects.create_superuser("ops", "ops@example.com", "ops-password-1")
    browser.get(f"{live_server.url}/admin/login/?next=/admin/")
    browser.find_element(By.NAME, "username").send_keys("ops")
    browser.find_element(By.NAME, "password").send_keys("ops-password-1", Keys.ENTER)
    WebDriverWait(browser, 15).until(ec.presence_of_element_located((By.ID, "resourced-dashboard")))
    browser.shot = lambda name: browser.save_screenshot(str(ARTIFACTS / f"progress-{name}.png"))
    return browser


def test_the_bar_of_a_running_export_moves_without_a_reload(ops, live_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    running = make_export(status="running", stage="download", progress=12, userid="dora@example.com",
                          attempts={"download": 1}, started_at=timezone.now() - timedelta(seconds=6))
    failed = make_failed(code=-7, message="encode: invalid data", progress=100, userid="erik@example.com",
                         attempts={"download": 1, "cut": 1, "encode": 3}, timings={"download": 0.5, "cut": 0.1})
    make_export(status="waiting", stage="restoring", next_check_at=timezone.now() + timedelta(minutes=4),
                waiting_on={"kind": "restoring", "restoring": {"seg-1.m4s": "ongoing"}})
    make_ready(userid="dora@example.com", lack_ms=800)
    make_export()
    wait = WebDriverWait(ops, 15)

    ops.get(f"{live_server.url}/admin/exports/export/")
    wait.until(ec.presence_of_element_located((By.ID, "result_list")))
    columns = ops.find_elements(By.CSS_SELECTOR, "#result_list thead th")
    assert len(columns) <= 9, [c.text for c in columns]
    # no horizontal scrolling, beside the navigation and the filters
    assert ops.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"), \
        "the page is wider than the window"
    assert ops.execute_script("const r = document.querySelector('#changelist .results');"
                              "return r.scrollWidth <= r.clientWidth"), "the list scrolls sideways"
    bar = ops.find_element(By.CSS_SELECTOR, BAR.format(running.pk))
    assert bar.get_attribute("aria-valuenow") == "12"
    cell = ops.find_element(By.CSS_SELECTOR, f'[data-export-id="{running.pk}"]').text
    assert "download" in cell and "12 %" in cell and "ETA" in cell
    failed_cell = ops.find_element(By.CSS_SELECTOR, f'[data-export-id="{failed.pk}"]').text
    assert "failed in encode" in failed_cell and "ErrorCode -7" in failed_cell and "100" not in failed_cell
    waiting_cell = ops.find_element(By.CSS_SELECTOR, ".export-waiting").find_element(By.XPATH, "..").text
    assert "restoring" in waiting_cell and "next check" in waiting_cell
    ops.execute_script("window.notReloaded = true;")
    ops.shot("01-list-running-12")

    # the pipeline moves on: the row changes in the database, the page is not reloaded
    Export.objects.filter(pk=running.pk).update(stage="encode", progress=67)
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, BAR.format(running.pk)).get_attribute("aria-valuenow") == "67")
    assert ops.execute_script("return window.notReloaded === true"), "the page was reloaded"
    cell = ops.find_element(By.CSS_SELECTOR, f'[data-export-id="{running.pk}"]').text
    assert "encode" in cell and "67 %" in cell
    drawn = (f"const f = document.querySelector('{BAR.format(running.pk)} .export-bar-fill');"
             "return f.getBoundingClientRect().width / f.parentNode.getBoundingClientRect().width;")
    wait.until(lambda d: 0.64 < d.execute_script(drawn) < 0.70)  # after it slid there
    ops.shot("02-list-running-67")

    # it fails: the cell says where, without a bar or a Progress
    Export.objects.filter(pk=running.pk).update(status="failed", stage="failed", error_code=-6, progress=100,
                                                attempts={s: 1 for s in ("download", "cut", "encode", "thumbnail",
                                                                         "upload")},
                                                timings={"download": 1, "cut": 1, "encode": 1, "thumbnail": 1},
                                                finished_at=timezone.now())
    wait.until(lambda d: "failed in upload" in d.find_element(By.CSS_SELECTOR, f'[data-export-id="{running.pk}"]').text)
    assert not ops.find_elements(By.CSS_SELECTOR, BAR.format(running.pk))
    assert "100" not in ops.find_element(By.CSS_SELECTOR, f'[data-export-id="{running.pk}"]').text
    assert ops.execute_script("return window.notReloaded === true")
    ops.shot("03-list-running-failed")


def test_a_failed_export_page_marks_its_stage_and_has_no_save_or_delete(ops, live_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    failed = make_failed(code=-7, message="encode: invalid data", progress=100,
                         attempts={"download": 1, "cut": 1, "encode": 3}, timings={"download": 0.5, "cut": 0.1},
                         step_hosts={"download": "hostA", "cut": "hostA"})
    ops.get(f"{live_server.url}/admin/exports/export/{failed.pk}/change/")
    WebDriverWait(ops, 15).until(ec.presence_of_element_located((By.CSS_SELECTOR, "table.stage-timings")))
    content = ops.find_element(By.ID, "content")
    assert "failed in encode" in content.text and "encode: invalid data" in content.text
    marked = ops.find_element(By.CSS_SELECTOR, "table.stage-timings tr.stage-ended").text
    assert marked.startswith("encode") and "failed here" in marked
    assert not ops.find_elements(By.CSS_SELECTOR, 'input[name="_save"], input[name="_continue"], a.deletelink')
    assert not ops.find_elements(By.CSS_SELECTOR, ".export-bar") and "100 %" not in content.text
    assert ops.find_element(By.ID, "export-retry").is_displayed()  # Retry stays
    created = ops.find_element(By.CSS_SELECTOR, ".field-created_at .readonly").text
    assert created == f"{timezone.localtime(failed.created_at):%Y-%m-%d %H:%M:%S}"
    ops.shot("04-failed-export")
    ops.execute_script("document.querySelector('table.stage-timings').scrollIntoView({block: 'center'})")
    ops.shot("04-failed-export-stages")


def test_a_running_export_page_follows_it_to_ready(ops, live_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    running = make_export(status="running", stage="cut", progress=41, started_at=timezone.now() - timedelta(seconds=4))
    wait = WebDriverWait(ops, 15)
    ops.get(f"{live_server.url}/admin/exports/export/{running.pk}/change/")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".export-bar")))
    assert ops.find_element(By.ID, "export-cancel").is_displayed()
    assert not ops.find_elements(By.CSS_SELECTOR, 'input[name="_save"], a.deletelink')
    Export.objects.filter(pk=running.pk).update(progress=88, stage="thumbnail")
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".export-bar").get_attribute("aria-valuenow") == "88")
    wait.until(lambda d: d.execute_script("const f = document.querySelector('.export-bar-fill');"
                                          "return f.getBoundingClientRect().width / f.parentNode.clientWidth;") > 0.85)
    ops.shot("05-running-export")
    Export.objects.filter(pk=running.pk).update(status="ready", stage="done", progress=100,
                                                finished_at=timezone.now(), video_key="export/x/x.ts")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".export-ready")))
    wait.until(lambda d: not d.find_elements(By.ID, "export-cancel"))  # the page came again, whole
    ops.shot("06-running-export-ready")


def test_an_mp4_clip_plays_inline_on_its_page(ops, live_server, s3, bucket, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    clip = mediagen.make_file(str(tmp_path / "clip.mp4"), duration_s=2, audio=False)
    ready = make_ready(dest_bucket=bucket, export_format="mp4", video_key="export/PEERMP4/PEERMP4_rec-1_1_2000.mp4",
                       image_path="", output_duration_ms=2000.0)
    s3.upload_file(clip, bucket, ready.video_key, ExtraArgs={"ContentType": "video/mp4"})
    ops.get(f"{live_server.url}/admin/exports/export/{ready.pk}/change/")
    WebDriverWait(ops, 15).until(ec.presence_of_element_located((By.ID, "export-video")))
    ops.set_script_timeout(30)
    result = ops.execute_async_script(PLAY)
    assert result["errors"] == [] and result["ended"], result
    assert abs(result["duration"] - 2.0) < 0.2 and result["width"] == 320, result
    ops.shot("07-mp4-played")


def test_the_quota_page_shows_the_default_and_todays_usage(ops, live_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(ops, 15)
    ops.get(f"{live_server.url}/admin/exports/quota/")
    wait.until(ec.presence_of_element_located((By.ID, "quota-default")))
    assert "built in: there is no default row" in ops.find_element(By.ID, "quota-default").text.lower()
    ops.shot("08-quota-built-in")

    Quota.objects.create(scope="default", max_active_exports=3, max_waiting=7, max_clip_ms=900_000,
                         max_minutes_per_day=45)
    make_ready(userid="dora@example.com", duration_ms=180_000)
    make_export(userid="dora@example.com", status="running", stage="encode", progress=30, duration_ms=60_000)
    make_export(userid="dora@example.com", status="waiting", stage="waiting", duration_ms=60_000)
    ops.get(f"{live_server.url}/admin/exports/quota/")
    wait.until(ec.presence_of_element_located((By.ID, "quota-usage")))
    default = ops.find_element(By.CSS_SELECTOR, "#quota-default tbody tr").text
    assert default.split() == ["the", "default", "row", "3", "7", "900000", "ms", "45"]
    row = ops.find_element(By.CSS_SELECTOR, '#quota-usage tr[data-subject="dora@example.com"]')
    cells = [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
    assert cells == ["dora@example.com", "mma", "3", "5.0 / 45", "1 / 3", "1 / 7", "default"]
    ops.shot("09-quota-usage")
