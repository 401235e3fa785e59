"""The admin in a real browser: headless Chromium (Debian's package) driven through chromedriver by
Selenium, against a live server. Screenshots go to test-artifacts/browser/.

scripts/install-browser.sh installs chromium and chromium-driver; without them the test is skipped.
"""

import io

import pytest
from django.contrib.admin.models import LogEntry
from PIL import Image, ImageDraw

from exports import services
from exports.models import Export
from tests.admin.conftest import make_export, make_failed, make_ready
from tests.browser.conftest import ARTIFACTS, browser_needed

pytestmark = [*browser_needed, pytest.mark.django_db(transaction=True)]


def frame_jpeg(label: str) -> bytes:
    picture = Image.new("RGB", (320, 180), (30, 90, 160))
    ImageDraw.Draw(picture).text((20, 80), label, fill=(255, 255, 255))
    data = io.BytesIO()
    picture.save(data, "JPEG", quality=85)
    return data.getvalue()


def with_thumbnail(export: Export) -> Export:
    from imgbed.services import image_save_bytes, image_url

    path, filename = export.peer_id, f"{export.peer_id}_rec-1_{export.start_pos}_{export.duration_ms}.jpg"
    image_save_bytes(path=path, filename=filename, data=frame_jpeg(export.task_id[:8]), uploader="test")
    Export.objects.filter(pk=export.pk).update(image_path=image_url(path=path, filename=filename))
    export.refresh_from_db()
    return export


def test_staff_filter_open_and_retry_an_export(browser, live_server, s3_server, django_user_model, monkeypatch):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    enqueued = []
    real_enqueue = services.export_enqueue
    monkeypatch.setattr(services, "export_enqueue",
                        lambda *, export: (enqueued.append(export.task_id), real_enqueue(export=export)))
    django_user_model.objects.create_superuser("ops", "ops@example.com", "ops-password-1")
    target = with_thumbnail(make_failed(code=-6, message="destination: AccessDenied", userid="dora@example.com",
                                        file_name="dora-clip.ts"))
    make_failed(code=-7, userid="erik@example.com")
    with_thumbnail(make_ready(userid="dora@example.com"))
    make_export(status="running", stage="encode", host="hostA")
    wait = WebDriverWait(browser, 15)

    def shot(name: str) -> None:
        browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))

    # log in
    browser.get(f"{live_server.url}/admin/login/?next=/admin/")
    browser.find_element(By.NAME, "username").send_keys("ops")
    browser.find_element(By.NAME, "password").send_keys("ops-password-1", Keys.ENTER)
    wait.until(ec.presence_of_element_located((By.ID, "resourced-dashboard")))
    dashboard = browser.find_element(By.ID, "resourced-dashboard").text
    assert "Failed, last 24 h" in dashboard and "media.cpu@hostA" in dashboard
    shot("01-dashboard")

    # the export list, filtered by status, then by userid in the text box
    browser.get(f"{live_server.url}/admin/exports/export/")
    wait.until(ec.presence_of_element_located((By.ID, "result_list")))
    status_filter = browser.find_element(By.CSS_SELECTOR, 'details[data-filter-title="status"]')
    status_filter.find_element(By.LINK_TEXT, "Failed").click()
    wait.until(ec.url_contains("status__exact=failed"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")) == 2
    box = browser.find_element(By.CSS_SELECTOR, 'details[data-filter-title="userid"] input[name="userid"]')
    box.send_keys("dora@example.com", Keys.ENTER)
    wait.until(ec.url_contains("userid=dora"))
    assert "status__exact=failed" in browser.current_url  # the text box kept the status filter
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(rows) == 1 and target.task_id in rows[0].text
    shot("02-list-filtered")

    # open the export: its first frame is shown, served by the image bed
    rows[0].find_element(By.LINK_TEXT, target.task_id).click()
    wait.until(ec.presence_of_element_located((By.ID, "export-preview")))
    wait.until(lambda d: d.execute_script(
        "const i = document.getElementById('export-preview'); return i.complete && i.naturalWidth === 320;"))
    page = browser.find_element(By.ID, "content").text
    assert "destination: AccessDenied" in page and "dora-clip.ts" in page
    assert "dest_credentials" not in browser.page_source
    shot("03-export")

    # back to the filtered list, run the retry action on it
    browser.back()
    wait.until(ec.presence_of_element_located((By.ID, "result_list")))
    browser.find_element(By.CSS_SELECTOR, f'input.action-select[value="{target.pk}"]').click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("retry_exports")
    browser.find_element(By.CSS_SELECTOR, 'button[name="index"]').click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "ul.messagelist")))
    assert "queued again" in browser.find_element(By.CSS_SELECTOR, "ul.messagelist").text
    shot("04-retried")

    target.refresh_from_db()
    assert target.restarts == 1 and target.error_code != -6
    assert enqueued == [target.task_id]
    assert LogEntry.objects.get(object_id=str(target.pk)).change_message == "Retried"
