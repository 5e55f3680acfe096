"""The web console in headless Chromium (Debian's chromium and chromedriver, driven by selenium;
no browser download) against a running pipeline (``ratewarden.stack.Stack``: Valkey, Tansu, the
stream worker with chDB serving the admin API and console, the demo API behind the enforcer).

Every change is made by clicking through the console, and checked where it matters: on the demo
API (a plan enforced, a key used, rotated, revoked) and in ClickHouse through the admin API.
Screenshots of every page are kept in ``var/test-artifacts/console/`` (the path is printed)."""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from ratewarden.stack import Stack

from .helpers import wait_until

ARTIFACTS = Path(__file__).resolve().parent.parent / "var" / "test-artifacts" / "console"
TOKEN = "console-browser-token-0123456789"
ACTOR = "console-test"
ATTACKER = "203.0.113.200"
COUNTED = "203.0.113.201"


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
                     "--window-size=1366,900"):  # a laptop screen
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(data_dir=tmp_path_factory.mktemp("console"), say=lambda _: None,
                    extra_env={"RATEWARDEN_ADMIN_TOKEN": TOKEN, "RATEWARDEN_SHADOW_HEADERS": "true"})
    running.start()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nconsole screenshots in {ARTIFACTS}")
    yield running
    running.stop()


class Console:
    """The console in a browser: signs in, opens pages, fills forms, keeps screenshots."""

    def __init__(self, driver: webdriver.Chrome, stack: Stack) -> None:
        self.driver, self.url = driver, stack.urls["console"]
        self.wait = WebDriverWait(driver, 20)

    def sign_in(self, token: str = TOKEN, actor: str = ACTOR) -> None:
        self.driver.get(self.url)
        self.type("#token", token)
        self.type("#actor", actor)
        self.find("#login-form").submit()

    def open(self, page: str) -> None:
        self.driver.get(f"{self.url}#/{page}")
        self.wait.until(lambda d: d.find_element(By.ID, "main").get_attribute("aria-busy") is None
                        and d.find_element(By.ID, "main").text.strip())

    def find(self, css: str) -> WebElement:
        return self.wait.until(expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, css)))

    def type(self, css: str, text: str) -> None:
        element = self.find(css)
        element.clear()
        element.send_keys(text)

    def click(self, css: str) -> None:
        self.wait.until(expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, css))).click()

    def text_in(self, css: str, text: str) -> str:
        self.wait.until(expected_conditions.text_to_be_present_in_element((By.CSS_SELECTOR, css), text))
        return self.find(css).text

    def accept_confirm(self) -> None:
        self.wait.until(expected_conditions.alert_is_present()).accept()

    def field(self, form: str, loc: str) -> WebElement:
        return self.find(f'{form} [data-loc="{loc}"]')

    def error(self, form: str, loc: str) -> str:
        """The message shown next to the field at ``loc`` ('' if none)."""
        slot = self.wait.until(expected_conditions.presence_of_element_located(
            (By.CSS_SELECTOR, f'{form} [data-error-for="{loc}"]')))
        return str(slot.get_attribute("textContent"))

    def shot(self, name: str) -> Path:
        """A screenshot of the whole page (the window grown to its height for the shot)."""
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.set_window_size(1366, min(max(900, height + 20), 5000))
        time.sleep(0.3)  # let the charts take the new width
        path = ARTIFACTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        self.driver.set_window_size(1366, 900)
        assert path.stat().st_size > 10_000
        return path

    def js_errors(self) -> list[str]:
        """Script errors (uncaught exceptions, console.error); refused requests are the tests' business."""
        return [e["message"] for e in self.driver.get_log("browser")
                if e["level"] == "SEVERE" and e.get("source") != "network"]


@pytest.fixture
def console(stack: Stack) -> Iterator[Console]:
    driver = _browser()
    page = Console(driver, stack)
    yield page
    errors = page.js_errors()
    driver.quit()
    assert errors == [], errors


def _admin(stack: Stack) -> httpx.Client:
    return httpx.Client(base_url=f"{stack.admin_url}/api/v1", headers={"authorization": f"Bearer {TOKEN}"},
                        timeout=10)


def test_sign_in_and_the_overview_shows_live_traffic_and_sets_an_override(console: Console, stack: Stack) -> None:
    with httpx.Client(base_url=stack.urls["demo API"], headers={"x-forwarded-for": ATTACKER}, timeout=10) as http, \
            _admin(stack) as admin:
        assert all(http.get("/v1/items").status_code == 200 for _ in range(20))
        wait_until(lambda: any(c["client_id"] == f"ip:{ATTACKER}" for c in admin.get("/usage/top").json()), 60,
                   "traffic in ClickHouse")

        console.sign_in(token="not-the-admin-token-0000")
        assert "refused" in console.text_in("#login-error", "refused")
        assert console.driver.execute_script("return sessionStorage.getItem('rw-token')") is None
        console.sign_in()
        console.find("#nav")
        assert console.driver.execute_script("return sessionStorage.getItem('rw-token')") == TOKEN
        assert TOKEN not in console.driver.page_source  # the token is never written into the page

        traffic = console.find("#traffic figure.chart")
        assert int(traffic.get_attribute("data-points") or 0) >= 60  # every minute of the hour, on a time axis
        assert int(traffic.get_attribute("data-total-requests") or 0) >= 20
        console.find("#traffic .u-legend")  # uPlot drew it, with its legend
        plot = console.find("#traffic .u-over")
        ActionChains(console.driver).move_to_element_with_offset(plot, plot.size["width"] // 2 - 2, 0).perform()
        tip = console.find("#traffic .chart-tip")  # the tooltip at the cursor: the minute and each series' value
        assert " UTC" in tip.text and "requests: " in tip.text and "denied: " in tip.text, tip.text
        assert "requests" in console.find("#traffic figcaption").text
        assert "anonymous" in console.find("#tiers-chart .u-legend").text
        assert f"ip:{ATTACKER}" in console.text_in("#top", f"ip:{ATTACKER}")
        assert "GET /v1/items" in console.find("#endpoints").text

        # live: more traffic appears without reloading the page
        chart = console.find("#traffic figure.chart")
        before = int(chart.get_attribute("data-total-requests") or 0)
        assert all(http.get("/v1/items").status_code == 200 for _ in range(5))
        WebDriverWait(console.driver, 30).until(lambda d: int(d.find_element(
            By.CSS_SELECTOR, "#traffic figure.chart").get_attribute("data-total-requests") or 0) >= before + 5)
        assert "live" in console.find("#status").text
        assert console.find("#traffic figure.chart") == chart  # updated in place, not drawn again

        console.type("#override-form [data-loc=client_id]", f"ip:{ATTACKER}")
        console.type("#override-form [data-loc=expires_at]", "5")
        console.find("#override-form").submit()
        console.text_in("#overrides", f"ip:{ATTACKER}")
        console.shot("overview")
        took = wait_until(lambda: http.get("/v1/items").status_code == 429, 1.5, "the console's block honoured")
        assert http.get("/v1/items").json()["type"].endswith(":blocked")
        console.click(f'[data-clear="ip:{ATTACKER}"]')
        wait_until(lambda: http.get("/v1/items").status_code == 200, 1.5, "the cleared override gone")
    print(f"override from the console honoured after {took:.3f} s")


def test_plans_and_keys_made_in_the_console_are_enforced_and_audited(console: Console, stack: Stack) -> None:
    console.sign_in()
    console.find("#nav")
    with httpx.Client(base_url=stack.urls["demo API"], timeout=10) as http, _admin(stack) as admin:
        def policy(api_key: str) -> tuple[int, str, str]:
            """(status, the first rule of the tier that decided, the shadow header) for a request with the key."""
            response = http.get("/v1/items", headers={"authorization": f"Bearer {api_key}"})
            return (response.status_code, response.headers.get("ratelimit-policy", "").split(";")[0].strip('"'),
                    response.headers.get("x-ratewarden-shadow", ""))

        # a new plan: each bad field's message next to it
        console.open("plans/new")
        console.shot("plans-new")
        console.type("#plan-form [data-loc=name]", "gold")
        console.type("#plan-form [data-loc='quotas.daily']", "-5")
        console.click("#add-rule")
        console.type("#plan-form [data-loc='rules.0.name']", "gold-per-min")
        console.type("#plan-form [data-loc='rules.0.limit']", "0")
        console.type("#plan-form [data-loc='rules.0.period']", "1m")
        console.find("#plan-form").submit()
        console.text_in("#plan-form [data-error-for='rules.0.limit']", "greater than 0")
        assert "greater than 0" in console.error("#plan-form", "quotas.daily"), console.find("#plan-form").text
        assert console.field("#plan-form", "rules.0.limit").get_attribute("aria-invalid") == "true"
        assert console.error("#plan-form", "rules.0.name") == ""
        console.shot("plans-errors")
        assert admin.get("/tiers/gold").status_code == 404

        # a share of a capacity the policy does not have: the message beside the capacity shares
        console.type("#plan-form [data-loc='quotas.daily']", "1000")
        console.type("#plan-form [data-loc='rules.0.limit']", "3")
        console.type("#plan-form [data-loc='capacity_shares.__other']", "search")
        console.type("#plan-form [data-loc='capacity_shares.__other_share']", "0.5")
        console.find("#plan-form").submit()
        console.text_in("#plan-form [data-error-for='capacity_shares']", "no capacity 'search'")
        assert console.error("#plan-form", "rules.0.limit") == ""  # the fixed fields' errors are gone
        assert admin.get("/tiers/gold").status_code == 404

        # fixed, applied as a shadow first (the box is ticked for a new plan)
        console.find("#plan-form [data-loc='capacity_shares.__other']").clear()
        assert console.field("#plan-form", "shadow").is_selected()
        console.find("#plan-form").submit()
        console.text_in("#plan-notice", "applied as a shadow")
        assert "shadow" in console.text_in("#plans", "gold")
        console.shot("plans")

        # a key on it, the secret shown once
        console.open("keys")
        console.type("#key-form [data-loc=owner]", "acme")
        Select(console.field("#key-form", "tier")).select_by_value("gold")
        console.type("#key-form [data-loc=note]", "made in the browser test")
        console.find("#key-form").submit()
        secret = console.find("#new-secret").text
        key_id = next(k["id"] for k in admin.get("/keys").json() if k["owner"] == "acme")
        console.text_in("#keys", key_id)
        console.shot("keys-created")
        # used: its tier (no limit in force while a shadow, not the anonymous per-ip), never denied
        assert [policy(secret)[:2] for _ in range(4)] == [(200, "")] * 4
        assert policy(secret)[2].startswith('"gold-per-min"')  # reported: what the shadow would deny
        console.click("#dismiss-secret")
        console.driver.refresh()
        console.find("#keys")
        assert secret not in console.driver.page_source  # shown once only

        # switched to enforcing in the console: the demo API denies within a second
        console.open("plans/gold")
        console.click("#enforce")
        clicked = time.monotonic()
        took_tier = wait_until(lambda: policy(secret)[0] == 429, 1.0, "the plan enforced")
        print(f"plan enforced {time.monotonic() - clicked:.3f} s after the click")
        console.text_in("#plans", "enforcing")

        # edited while enforcing: a higher limit admits the key again within a second
        console.wait.until(lambda d: not d.find_element(By.CSS_SELECTOR, "#plan-form [data-loc=shadow]").is_selected())
        console.type("#plan-form [data-loc='rules.0.limit']", "100")
        console.find("#plan-form").submit()
        edited = time.monotonic()
        took_edit = wait_until(lambda: policy(secret)[:2] == (200, "gold-per-min"), 1.0, "the edited plan")
        print(f"edited plan in force {time.monotonic() - edited:.3f} s after the click")
        console.text_in("#plan-notice", "enforcing")
        assert "gold-per-min 100/1 min" in console.find("#plans").text

        # tier and note changed: the key gets the paid plan
        console.open("keys")
        console.click(f'[data-edit="{key_id}"]')
        Select(console.field("#key-edit-form", "tier")).select_by_value("paid")
        console.type("#key-edit-form [data-loc=note]", "moved to paid")
        console.find("#key-edit-form").submit()
        console.text_in("#keys", "moved to paid")
        wait_until(lambda: policy(secret)[:2] == (200, "burst"), 1.0, "the key's new tier")

        # rotated with a 4 s grace period: both secrets work, then only the new one
        console.click(f'[data-edit="{key_id}"]')
        console.type("#key-rotate-form [data-loc=grace_s]", "4")
        rotated_at = time.monotonic()
        console.find("#key-rotate-form").submit()
        console.wait.until(lambda d: d.find_element(By.ID, "new-secret").text not in ("", secret))
        new = console.find("#new-secret").text
        console.shot("keys-rotated")
        assert policy(secret)[:2] == (200, "burst") and policy(new)[:2] == (200, "burst")
        assert time.monotonic() - rotated_at < 4, "the machine was too slow to see the grace period"
        def old_refused() -> bool:
            time.sleep(0.1)  # a slow poll: the paid tier's burst rule must not deny the new secret
            return policy(secret)[1] == "per-ip"

        wait_until(old_refused, 6, "the old secret refused after the grace period")
        assert policy(new)[:2] == (200, "burst")
        console.text_in("#keys", new[:7])

        # revoked: refused within a second
        console.click(f'[data-revoke="{key_id}"]')
        console.accept_confirm()
        took_revoke = wait_until(lambda: policy(new)[1] == "per-ip", 1.0, "the revoked key refused")
        console.text_in("#keys", "revoked")
        console.shot("keys")

        # the audit log: each change, by the signed-in name
        console.open("audit")
        console.shot("audit")
        rows = [row.text for row in console.driver.find_elements(By.CSS_SELECTOR, "#audit tbody tr")]
        expected = [("tier.put", "gold"), ("tier.enforce", "gold"), ("key.create", key_id), ("key.change", key_id),
                    ("key.rotate", key_id), ("key.revoke", key_id)]
        for action, target in expected:
            assert any(action in row and target in row and ACTOR in row for row in rows), (action, target, rows)
        logged = Counter((e["action"], e["target"]) for e in admin.get("/audit", params={"limit": 1000}).json()
                         if e["actor"] == ACTOR)
        assert logged[("tier.put", "gold")] == 2  # created, then edited; the refused versions not logged
        assert all(logged[e] == 1 for e in expected[1:]), logged
        assert secret not in console.driver.page_source and new not in console.driver.page_source
    print(f"plan enforced after {took_tier:.3f} s, edited plan after {took_edit:.3f} s, "
          f"revoked key refused after {took_revoke:.3f} s")


def test_a_client_page_shows_the_totals_clickhouse_holds(console: Console, stack: Stack) -> None:
    with httpx.Client(base_url=stack.urls["demo API"], headers={"x-forwarded-for": COUNTED}, timeout=10) as http, \
            _admin(stack) as admin:
        sent = [(path, http.get(path).status_code) for path in ["/v1/items", "/v1/items/7", "/v1/search"] * 25]
        statuses = Counter(status for _, status in sent)
        admitted_cost = sum(5 if path == "/v1/search" else 1 for path, status in sent if status == 200)
        assert statuses[429] > 0  # over the anonymous tier's 60 cost units a minute (a search costs 5)

        def clickhouse() -> dict[str, int]:
            rows = admin.get("/usage", params={"client_id": f"ip:{COUNTED}", "step": "hour"}).json()
            return {k: sum(r[k] for r in rows) for k in ("requests", "admitted", "denied", "cost")}

        wait_until(lambda: clickhouse()["requests"] == 75, 60, "every request in ClickHouse")
        held = clickhouse()
        assert (held["admitted"], held["denied"]) == (statuses[200], statuses[429])

        console.sign_in()
        console.find("#nav")
        console.open(f"clients/{quote(f'ip:{COUNTED}', safe='')}")
        console.click('#range [data-range="1h"]')
        console.wait.until(lambda d: d.find_element(By.ID, "main").get_attribute("data-range") == "1h")
        shown = {key: int(console.find(f'#totals [data-total="{key}"] .value').text.replace(",", ""))
                 for key in held}
        assert shown == held
        traffic = console.find("#traffic figure.chart")
        assert int(traffic.get_attribute("data-points") or 0) == 60  # a point a minute
        assert int(traffic.get_attribute("data-total-denied") or 0) == held["denied"]
        assert "per-ip" in console.find("#denial-totals").text and "rate" in console.find("#denial-totals").text
        quota = console.find("#quota .quota")
        assert quota.get_attribute("data-limit") == "2000"  # the anonymous tier's daily quota
        assert int(quota.get_attribute("data-used") or -1) == admitted_cost  # quotas count admitted cost
        console.find("#latency .u-legend")
        assert "2xx" in console.find("#statuses .u-legend").text
        console.shot("client")
        # live: the page follows new traffic by itself
        assert all(http.get("/v1/items/8").status_code in (200, 429) for _ in range(3))
        WebDriverWait(console.driver, 40).until(lambda d: d.find_element(
            By.CSS_SELECTOR, "#totals [data-total=requests] .value").text == str(held["requests"] + 3))
        for range_, points in (("24h", 96), ("7d", 168), ("30d", 120)):  # 15 min, 1 h, 6 h a point
            console.click(f'#range [data-range="{range_}"]')
            console.wait.until(lambda d, r=range_: d.find_element(By.ID, "main").get_attribute("data-range") == r)
            chart = console.find("#traffic figure.chart")
            assert int(chart.get_attribute("data-points") or 0) == points, range_
            assert int(chart.get_attribute("data-total-requests") or 0) == held["requests"] + 3, range_

        console.open(f"endpoints/{quote('GET /v1/search', safe='')}")
        assert int(console.find("#totals [data-total=requests] .value").text.replace(",", "")) >= 25
        assert f"ip:{COUNTED}" in console.text_in("#top", f"ip:{COUNTED}")
        console.shot("endpoint")


def test_recommendations_are_staged_as_shadow_rules(console: Console, stack: Stack) -> None:
    with httpx.Client(base_url=stack.urls["demo API"], headers={"x-forwarded-for": "203.0.113.202"}) as http, \
            _admin(stack) as admin:
        assert all(http.get("/v1/items").status_code == 200 for _ in range(10))
        wait_until(lambda: any(c["client_id"] == "ip:203.0.113.202" for c in admin.get("/usage/top").json()), 60,
                   "traffic to learn from in ClickHouse")
    console.sign_in()
    console.find("#nav")
    console.open("recommendations")
    Select(console.find("#recommend-form [data-loc=range]")).select_by_value("1h")
    console.find("#recommend-form").submit()
    console.text_in("#proposals", "anonymous")
    console.shot("recommendations")
    console.click('[data-stage="anonymous"]')
    staged = console.text_in("#staged", "shadow rule")
    rule = staged.split("Staged ", 1)[1].split(" ", 1)[0]
    assert "shadow" in console.text_in("#findings", rule)  # its estimate, beside what enforcers find from now on
    with _admin(stack) as admin:
        plan = admin.get("/tiers/anonymous").json()
        assert any(r["name"] == rule and r["shadow"] for r in plan["tier"]["rules"]), plan
        assert plan["shadow"] is False  # the tier still enforces its other rules
        [entry] = admin.get("/audit", params={"action": "recommendation.stage"}).json()
        assert entry["actor"] == ACTOR and entry["target"] == "anonymous"
    console.open("plans")
    assert f"{rule}" in console.text_in("#plans", "(shadow)")


def test_data_is_shown_as_text_never_run(console: Console, stack: Stack) -> None:
    """Owners, notes and reasons come from whoever set them: the console shows them as text."""
    owner, note = '<img src=x onerror="window.pwned=1">', '"><script>window.pwned=2</script>'
    with _admin(stack) as admin:
        key_id = admin.post("/keys", json={"owner": owner, "note": note}).json()["record"]["id"]
        assert admin.put("/overrides/ip:203.0.113.203", json={
            "client_id": "ip:203.0.113.203", "block": True, "reason": owner}).status_code == 200
    console.sign_in()
    console.find("#nav")
    console.open("keys")
    console.text_in("#keys", key_id)
    assert owner in console.find("#keys").text and note in console.find("#keys").text
    console.open("overview")
    assert owner in console.text_in("#overrides", "ip:203.0.113.203")
    console.open("audit")
    console.text_in("#audit", key_id)
    assert console.driver.find_elements(By.CSS_SELECTOR, "#main img, #main script") == []
    assert console.driver.execute_script("return window.pwned") is None


def test_the_console_works_from_the_keyboard(console: Console, stack: Stack) -> None:
    console.driver.get(console.url)
    console.find("#token").send_keys(TOKEN + Keys.ENTER)  # the sign-in form submits on Enter
    console.find("#nav")
    console.wait.until(lambda d: d.switch_to.active_element.get_attribute("id") == "main")  # focus to the page
    console.driver.refresh()  # still signed in (the tab's session); focus at the top of the page
    console.find("#nav")
    console.driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)  # the skip link first
    assert console.driver.switch_to.active_element.get_attribute("class") == "skip"
    focused = []
    for _ in range(8):
        console.driver.switch_to.active_element.send_keys(Keys.TAB)
        focused.append(console.driver.switch_to.active_element.text)
        if focused[-1] == "Plans":
            break
    assert focused[-1] == "Plans", focused
    console.driver.switch_to.active_element.send_keys(Keys.ENTER)
    console.wait.until(lambda d: d.find_element(By.ID, "main").get_attribute("data-page") == "plans")
    console.find("#plans")


def test_a_penalty_is_cleared_from_the_client_page_in_one_click(console: Console, stack: Stack) -> None:
    client = "ip:203.0.113.204"
    with httpx.Client(base_url=stack.urls["demo API"], headers={"x-forwarded-for": client[3:]}, timeout=10) as http, \
            _admin(stack) as admin:
        penalty = {"client_id": client, "block": True, "source": "stream:scraping", "reason": "scraping: block"}
        assert admin.put(f"/overrides/{client}", json=penalty).status_code == 200  # as the stream sets them
        wait_until(lambda: http.get("/v1/items").status_code == 429, 1.0, "the penalty in force")
        console.sign_in()
        console.find("#nav")
        console.open(f"clients/{quote(client, safe='')}")
        assert "stream:scraping" in console.find("#override").text
        console.click("#clear-override")
        clicked = time.monotonic()
        wait_until(lambda: http.get("/v1/items").status_code == 200, 1.0, "the cleared penalty")
        print(f"penalty cleared from the client page: admitted {time.monotonic() - clicked:.3f} s after the click")
        console.text_in("#override", "none")
        [entry] = admin.get("/audit", params={"target": client, "action": "override.clear"}).json()
        assert entry["actor"] == ACTOR and entry["before"]["source"] == "stream:scraping"


@pytest.mark.parametrize("tier", ["free", "trusted"])  # anonymous gets a staged rule above
def test_a_plan_applied_unchanged_from_the_editor_is_the_same_plan(console: Console, stack: Stack, tier: str) -> None:
    """The editor loses nothing (algorithms, bursts, scopes, quotas); dropping the run-time copy
    brings back the file's."""
    with _admin(stack) as admin:
        before = admin.get(f"/tiers/{tier}").json()
        assert before["origin"] == "file"
        console.sign_in()
        console.find("#nav")
        console.open(f"plans/{tier}")
        assert not console.field("#plan-form", "shadow").is_selected()
        console.find("#plan-form").submit()
        console.text_in("#plan-notice", "enforcing")
        after = admin.get(f"/tiers/{tier}").json()
        assert after["origin"] == "runtime over file" and after["tier"] == before["tier"]
        console.click(f'[data-drop="{tier}"]')
        console.accept_confirm()
        console.wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, f'[data-drop="{tier}"]'))
        assert admin.get(f"/tiers/{tier}").json()["origin"] == "file"
        actions = [e["action"] for e in admin.get("/audit", params={"target": tier}).json()[:2]]
        assert actions == ["tier.delete", "tier.put"]
