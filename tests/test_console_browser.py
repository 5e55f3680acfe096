"""The web console in headless Chromium (Debian's chromium and chromedriver, driven by
selenium; no browser download): it loads, signs in, its live chart shows traffic from a
running pipeline, and an override made through it is honoured by the enforcer.
The screenshot is kept in ``var/test-artifacts/console.png``."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from ratewarden.stack import Stack

ARTIFACTS = Path(__file__).resolve().parent.parent / "var" / "test-artifacts"
ATTACKER = "203.0.113.200"


def _browser() -> webdriver.Chrome:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        message = "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message + "; .ci/run installs them")
        pytest.skip(message)
    options = Options()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,1100"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(driver), options=options)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(data_dir=tmp_path_factory.mktemp("console"), say=lambda _: None,
                    extra_env={"RATEWARDEN_ADMIN_TOKEN": "console-browser-token-0123456789"})
    running.start()
    yield running
    running.stop()


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    driver = _browser()
    yield driver
    driver.quit()


def test_the_console_shows_live_traffic_and_its_override_is_honoured(browser: webdriver.Chrome, stack: Stack) -> None:
    api = stack.urls["demo API"]
    with httpx.Client(base_url=api, headers={"x-forwarded-for": ATTACKER}, timeout=10) as http:
        assert all(http.get("/v1/items").status_code == 200 for _ in range(20))
        headers = {"authorization": f"Bearer {stack.admin_token}"}
        deadline = time.monotonic() + 60
        while not httpx.get(f"{stack.admin_url}/api/v1/usage/tiers", headers=headers).json():
            assert time.monotonic() < deadline, "traffic did not reach ClickHouse"
            time.sleep(0.5)

        wait = WebDriverWait(browser, 20)
        browser.get(stack.urls["console"])
        assert "ratewarden console" in browser.title
        browser.find_element(By.ID, "token").send_keys(stack.admin_token)
        browser.find_element(By.ID, "login-form").submit()
        wait.until(lambda b: int(b.find_element(By.ID, "chart").get_attribute("data-points") or 0) > 0)
        series = browser.find_elements(By.CSS_SELECTOR, "#chart polyline.series")
        assert {s.get_attribute("data-tier") for s in series} >= {"anonymous"}
        assert series[0].get_attribute("points").strip()
        wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "top"), f"ip:{ATTACKER}"))
        assert browser.find_elements(By.CSS_SELECTOR, "#chart circle")  # the minute with traffic is drawn
        assert "free" in browser.find_element(By.ID, "tiers").text  # the policy's tiers
        assert "/ 2000" in browser.find_element(By.ID, "quotas").text  # the anonymous daily quota gauge

        browser.find_element(By.ID, "ov-client").send_keys(f"ip:{ATTACKER}")
        browser.find_element(By.ID, "ov-minutes").send_keys("5")
        browser.find_element(By.ID, "override-form").submit()
        wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "overrides"), f"ip:{ATTACKER}"))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "console.png"))

        deadline = time.monotonic() + 1.5
        while (response := http.get("/v1/items")).status_code != 429:
            assert time.monotonic() < deadline, "the console's override was not honoured"
            time.sleep(0.05)
        assert response.json()["type"].endswith(":blocked")
    assert (ARTIFACTS / "console.png").stat().st_size > 10_000
