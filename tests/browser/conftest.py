"""Headless Chromium (Debian's package) driven through chromedriver by Selenium, for the browser
tests. scripts/install-browser.sh installs chromium and chromium-driver; without them the tests
are skipped."""

import shutil
from pathlib import Path

import pytest

from tests.servers import ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000", "--autoplay-policy=no-user-gesture-required")

missing = [name for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if not Path(path).exists()]
browser_needed = [
    pytest.mark.skipif(bool(missing), reason=f"{' and '.join(missing)} not installed: run scripts/install-browser.sh "
                                             "(Debian: apt-get install chromium chromium-driver)"),
]


@pytest.fixture
def browser():
    selenium = pytest.importorskip("selenium", reason="selenium is in requirements-dev.txt")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    del selenium
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
