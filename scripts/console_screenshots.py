#!/usr/bin/env python
"""The README's console screenshots (docs/console/*.png), taken on a real ``ratewarden demo --keep``.

    python scripts/console_screenshots.py [--duration 45] [--out docs/console]

Runs the demo (its whole embedded pipeline and labelled traffic), signs in to the console it
prints in headless Chromium (Debian's chromium and chromedriver, as the browser tests), opens each
page, makes a plan with an error to show and stages recommendations (so the plans and audit pages
have something to show), saves each page's top as a PNG of 128 colours, then stops the demo.
Never on the keys page while a secret is shown.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

WIDTH = 1280


def start_demo(duration: int, workdir: Path) -> tuple[subprocess.Popen[str], str, str, str]:
    """The demo kept up: (process, console URL, admin token, the retry-storm key's client id)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATEWARDEN_")} | {"COLUMNS": "300"}
    demo = subprocess.Popen([sys.executable, "-m", "ratewarden.cli", "demo", "--duration", str(duration), "--keep",
                             "--data-dir", str(workdir / "var")], cwd=workdir, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert demo.stdout is not None
    seen = ""
    for line in demo.stdout:
        seen += line
        if "--keep" in line and "stays up" in line:
            break
    else:
        raise SystemExit(f"the demo ended before keeping the stack up:\n{seen[-3000:]}")
    url = re.search(r"console at (http://\S+/console)", seen)
    token = re.search(r"admin token (\S+)\)", seen)
    storm = re.search(r"retry_storm\s+│\s+\w+\s+│\s+(k:key_[0-9a-f]+)", seen)
    if not (url and token):
        raise SystemExit(f"no console URL or admin token in the demo's output:\n{seen[-3000:]}")
    return demo, url.group(1), token.group(1), storm.group(1) if storm else "ip:203.0.113.66"


def browser() -> webdriver.Chrome:
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={WIDTH},820", "--hide-scrollbars"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=45, help="seconds of demo traffic")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs" / "console")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as workdir:
        demo, url, token, client = start_demo(args.duration, Path(workdir))
        driver = browser()
        try:
            driver.get(url)
            driver.find_element(By.ID, "token").send_keys(token)
            driver.find_element(By.ID, "actor").send_keys("alice")
            driver.find_element(By.ID, "login-form").submit()
            time.sleep(2)
            find = driver.find_element

            def shot(name: str, page: str, height: int, before: Callable[[], None] | None = None) -> None:
                driver.get(f"{url}#/{page}")
                time.sleep(2.5)
                if before:
                    before()
                    time.sleep(1.5)
                driver.set_window_size(WIDTH, height)
                time.sleep(0.8)
                raw = args.out / f"{name}.raw.png"
                driver.save_screenshot(str(raw))
                with Image.open(raw) as image:
                    image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(
                        args.out / f"{name}.png", optimize=True)
                raw.unlink()
                print(f"{args.out / name}.png: {(args.out / f'{name}.png').stat().st_size} bytes")

            def plan_with_an_error() -> None:
                find(By.CSS_SELECTOR, "#plan-form [data-loc=name]").send_keys("gold")
                find(By.ID, "add-rule").click()
                for loc, value in (("rules.0.name", "per-minute"), ("rules.0.limit", "0"), ("rules.0.period", "1m"),
                                   ("quotas.daily", "50000")):
                    find(By.CSS_SELECTOR, f"#plan-form [data-loc='{loc}']").send_keys(value)
                find(By.ID, "plan-form").submit()

            def stage_two() -> None:
                Select(find(By.CSS_SELECTOR, "#recommend-form [data-loc=range]")).select_by_value("1h")
                find(By.ID, "recommend-form").submit()
                time.sleep(2)
                for tier in ("free", "paid"):
                    find(By.CSS_SELECTOR, f"[data-stage={tier}]").click()
                    time.sleep(1)

            shot("overview", "overview", 1000)
            shot("client", f"clients/{quote(client, safe='')}", 1100,
                 lambda: find(By.CSS_SELECTOR, '#range [data-range="1h"]').click())
            shot("plans", "plans/new", 1000, plan_with_an_error)
            shot("keys", "keys", 700)
            shot("recommendations", "recommendations", 760, stage_two)
            shot("audit", "audit", 520)
        finally:
            driver.quit()
            demo.send_signal(signal.SIGINT)
            demo.communicate(timeout=60)


if __name__ == "__main__":
    main()
