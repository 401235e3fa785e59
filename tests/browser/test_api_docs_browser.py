"""/api/docs/ in a real browser, as a new client uses it: Authorize with a SessionId, then "Try it
out" on export-to-s3dir with the example body as it is shown (the seeds' values) answers 200, and
the same without Authorize answers the 401 of the schema. Screenshots go to test-artifacts/browser/."""

import json

import pytest

from tests.browser.conftest import ARTIFACTS, browser_needed

pytestmark = [*browser_needed, pytest.mark.django_db(transaction=True)]
OPERATION = "#operations-exports-export_to_s3dir"


def test_authorize_then_try_it_out(browser, live_server, monkeypatch):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from resourced.sessions import session_create

    enqueued = []
    monkeypatch.setattr("exports.services.export_enqueue", lambda *, export: enqueued.append(export.task_id))
    _session, session_id = session_create(userid="docs@example.com", ttl_seconds=3600)
    wait = WebDriverWait(browser, 20)

    def click(selector: str, within=None) -> None:
        scope = within or browser
        element = wait.until(lambda _b: scope.find_element(By.CSS_SELECTOR, selector))
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
        wait.until(ec.element_to_be_clickable(element))
        element.click()

    def try_it_out() -> tuple[str, dict]:
        """Execute the operation with the example body Swagger shows; its status and JSON answer."""
        operation = browser.find_element(By.CSS_SELECTOR, OPERATION)
        if operation.find_elements(By.CSS_SELECTOR, ".try-out__btn:not(.cancel)"):
            click(".try-out__btn", operation)
        body = wait.until(lambda _b: operation.find_element(By.CSS_SELECTOR, "textarea.body-param__text"))
        sent = json.loads(body.get_attribute("value"))
        assert sent["StartTime"] == "00:13:12" and sent["LivePath"].endswith("/1/stream.mpd"), sent
        assert "SessionId" not in sent
        click("button.execute", operation)
        status = wait.until(lambda _b: operation.find_element(By.CSS_SELECTOR, ".live-responses-table tbody .response-col_status"))
        answer = operation.find_element(By.CSS_SELECTOR, ".live-responses-table tbody .response-col_description pre")
        return status.text.strip(), json.loads(answer.text)

    browser.get(f"{live_server.url}/api/docs/")
    click(OPERATION + " .opblock-summary")
    status, answer = try_it_out()
    browser.save_screenshot(str(ARTIFACTS / "api-docs-1-without-session.png"))
    assert status.startswith("401")
    assert (answer["ErrorCode"], answer["ErrorMessage"]) == (-3, "SessionId: required (in the body or the X-Session-Id header)")

    click("button.authorize")
    field = wait.until(lambda _b: browser.find_element(By.CSS_SELECTOR, ".modal-ux input[type=text], .modal-ux input[type=password]"))
    field.send_keys(session_id)
    click(".modal-ux .auth-btn-wrapper button.authorize")
    browser.save_screenshot(str(ARTIFACTS / "api-docs-2-authorized.png"))
    click(".modal-ux button.btn-done, .modal-ux .close-modal")

    # the operation's execute button again, now with X-Session-Id
    status, answer = try_it_out()
    browser.save_screenshot(str(ARTIFACTS / "api-docs-3-try-it-out.png"))
    assert status.startswith("200"), answer
    assert answer["ErrorCode"] == 1 and answer["TaskId"] and enqueued == [answer["TaskId"]]
