"""Headless Chromium driven by Selenium against pytest-django's live server, and a folder of screenshots
named by the run.

The browser is Debian's ``chromium`` with its ``chromium-driver`` (``.ci/run`` installs both when
missing); without them the tests fail and say how to install them rather than skip, so a run without a
browser is never mistaken for a green one. The live server serves the admin's CSS and JavaScript through
Django's StaticFilesHandler (from the apps' static folders), so no collectstatic is needed.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL = "apt-get update && apt-get install -y --no-install-recommends chromium chromium-driver"
WAIT_SECONDS = 15


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    """``$SCREENSHOT_DIR``, or ``var/screenshots/<UTC timestamp of the run>/``."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = Path(os.environ.get("SCREENSHOT_DIR") or Path(settings.VAR_DIR) / "screenshots" / stamp)
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {folder}")
    return folder


@pytest.fixture(scope="session")
def chrome() -> Iterator[WebDriver]:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        pytest.fail(f"the browser tests need {' and '.join(missing)}: install them with `{INSTALL}`", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


class Browser:
    """What a person does: open a page, click, type, read; each page is photographed once it has loaded."""

    def __init__(self, driver: WebDriver, base_url: str, screenshots: Path, test_name: str):
        self.driver = driver
        self.base_url = base_url
        self.screenshots = screenshots
        self.prefix = test_name.removeprefix("test_")
        self.count = 0

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)
        self.wait_for("body")

    def wait_for(self, css: str) -> WebElement:
        return WebDriverWait(self.driver, WAIT_SECONDS).until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))

    def click(self, css: str) -> None:
        WebDriverWait(self.driver, WAIT_SECONDS).until(ec.element_to_be_clickable((By.CSS_SELECTOR, css))).click()

    def click_and_wait(self, css: str, then: str) -> None:
        """Click something that loads a new page, and wait until the old page is gone and ``then`` is there."""
        old = self.driver.find_element(By.TAG_NAME, "html")
        self.click(css)
        WebDriverWait(self.driver, WAIT_SECONDS).until(ec.staleness_of(old))
        self.wait_for(then)

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str = "body") -> str:
        return self.find(css).text

    @property
    def path(self) -> str:
        return str(self.driver.current_url).removeprefix(self.base_url)

    def shot(self, name: str) -> Path:
        self.count += 1
        path = self.screenshots / f"{self.prefix}-{self.count:02d}-{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def log_in(self, username: str, password: str) -> None:
        self.open("/admin/login/")
        self.find("#id_username").send_keys(username)
        self.find("#id_password").send_keys(password)
        self.shot("login")
        self.click_and_wait("#login-form input[type=submit]", "#user-tools")

    def cookie(self, name: str) -> str:
        cookie: dict[str, Any] | None = self.driver.get_cookie(name)
        assert cookie is not None, name
        return str(cookie["value"])


@pytest.fixture
def browser(
    chrome: WebDriver, live_server: Any, screenshot_dir: Path, request: pytest.FixtureRequest
) -> Iterator[Browser]:
    chrome.delete_all_cookies()
    yield Browser(chrome, live_server.url, screenshot_dir, request.node.name)
    chrome.delete_all_cookies()
