"""The admin page at /ui/admin, in a real headless Chromium (Debian's) driven by Playwright, against a
real server (Gunicorn + gevent) and the OpenAI fake: every flow an operator has (create a key and copy
it once, revoke, rotate, edit limits, usage and spend, budgets, upstream health, the call log), the
effect of each checked through the real API and the openai SDK, and axe-core's audit in light and
dark, on a desktop and a 390 px screen.

The README's pictures are taken by `test_accessible_in_light_and_dark_on_a_desktop_and_a_390px_screen`
into its tmp directory, and into docs/ (docs/admin*.png) when asked, so a test run leaves the tree clean:
    SCREENSHOTS_TO_DOCS=1 .venv/bin/python -m pytest tests/test_ui_admin.py -k accessible
"""
from __future__ import annotations

import os
import re
import time
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterator

import openai
import pytest
import requests

from tests.browser import axe_violations, launch_chromium, needs_chromium
from tests.conftest import NO_HEALTH_MEMORY, ROOT, LiveServer, base_config, provider_config
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.server import Reply
from tests.test_ui import bearer, create_key

pytestmark = [pytest.mark.browser, needs_chromium]
DOCS = ROOT / "docs"


@pytest.fixture
def pictures(tmp_path) -> Any:
    """Where the README's screenshots go: docs/ when SCREENSHOTS_TO_DOCS=1, else the test's tmp directory."""
    return DOCS if os.environ.get("SCREENSHOTS_TO_DOCS") == "1" else tmp_path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(autouse=True)
def fresh_fake(fake_openai) -> None:
    fake_openai.reset()


@pytest.fixture(scope="module")
def server(fake_openai, tmp_path_factory) -> Iterator[LiveServer]:
    """A server with client keys and the call log with bodies; usage and call rows are written within a
    tenth of a second of each call."""
    server = LiveServer(base_config(tmp_path_factory.mktemp("ui-admin"), **NO_HEALTH_MEMORY, LOG_LEVEL="INFO",
                                    USAGE_FLUSH_S=0.1, LOG_PAYLOADS="all", **provider_config(openai=fake_openai)))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def admin_key(server) -> str:
    return create_key(server, "root", "--admin")


def open_admin(browser: Any, server: LiveServer, key: str, width: int = 1280, scheme: str = "light",
               audit: bool = False) -> Any:
    """A new page on /ui/admin with `key` typed into its prompt, once the keys are listed. Its console's
    errors (a script's, or anything the CSP blocked) are kept in `page.errors`. `audit`: the page's CSP
    lets the test inject axe-core (Playwright's bypass_csp); every other test runs under the CSP."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme, locale="en-US",
                                  permissions=["clipboard-read", "clipboard-write"], bypass_csp=audit)
    page = context.new_page()
    page.errors = []
    page.on("console", lambda message: message.type == "error" and page.errors.append(message.text))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.set_default_timeout(10_000)
    page.goto(server.url + "/ui/admin")
    expect(page.locator("#key-dialog")).to_be_visible()
    page.fill("#key-input", key)
    page.keyboard.press("Enter")
    expect(page.locator("#keys-table tbody tr").first).to_be_visible()
    return page


@pytest.fixture
def page(browser, server, admin_key) -> Iterator[Any]:
    page = open_admin(browser, server, admin_key)
    yield page
    page.context.close()
    assert [error for error in page.errors if "the server responded with a status of 4" not in error] == []


def sdk(server: LiveServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=server.url + "/v1", max_retries=0)


def ask(server: LiveServer, key: str, model: str = "gpt-4o-mini") -> Any:
    return sdk(server, key).chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])


def api_key(server: LiveServer, admin_key: str, name: str, **settings: Any) -> dict[str, Any]:
    made = requests.post(f"{server.url}/admin/keys", json={"name": name, **settings}, headers=bearer(admin_key),
                         timeout=5)
    assert made.status_code == 201, made.text
    return made.json()


def key_row(page: Any, key_id: str) -> Any:
    return page.locator(f'#keys-table tbody tr[data-key-id="{key_id}"]')


def reload_keys(page: Any, admin_key: str) -> None:
    """Make the page list the keys again (as an operator would, by giving the key again)."""
    page.click("#key-button")
    page.fill("#key-input", admin_key)
    page.keyboard.press("Enter")


def no_secret_kept(page: Any, secret: str) -> None:
    """The page shows and stores nothing of `secret`: not in the document, not in any storage."""
    assert secret not in page.content()
    assert page.evaluate("""secret => [localStorage, sessionStorage].every(store =>
        Object.keys(store).every(name => !String(store.getItem(name)).includes(secret)))""", secret)
    assert secret not in page.evaluate("document.cookie")


# -- keys -------------------------------------------------------------------------------------------------


def test_the_page_is_open_and_served_under_the_ui_csp(server):
    """The page itself needs no key (it asks for one) and allows this server's scripts, styles and calls
    only: no inline script, no CDN."""
    from app.web.ui import CSP

    answer = requests.get(f"{server.url}/ui/admin", timeout=5)
    assert answer.status_code == 200 and answer.headers["Content-Security-Policy"] == CSP
    assert "script-src 'self'" in CSP and "connect-src 'self'" in CSP
    assert re.findall(r"<script[^>]*>", answer.text) == [
        re.search(r'<script src="/static/admin\.js\?v=[^"]+"></script>', answer.text).group(0)[:-len("</script>")]]
    assert not re.search(r"(src|href)=\"(https?:)?//", answer.text)


def test_create_a_key_shown_once_copied_and_working_as_set(page, server, admin_key, fake_openai):
    """Every field of the form reaches the key; its value is shown once, copied to the clipboard, works
    with the openai SDK for its model only, and is gone from the page when the dialog closes. The admin
    key itself is never stored either."""
    from playwright.sync_api import expect

    expires = (datetime.now(timezone.utc) + timedelta(days=30)).replace(second=0, microsecond=0)
    page.click("#create-details summary")
    page.fill("#new-name", "ci-bot")
    page.fill("#new-models", "gpt-4o-mini, openai/gpt-3.5-turbo")
    page.check("#new-scope-gists")
    page.fill("#new-rpm", "30")
    page.fill("#new-tpm", "40000")
    page.fill("#new-daily-tokens", "5000")
    page.fill("#new-budget", "2.5")
    page.fill("#new-expires", expires.strftime("%Y-%m-%dT%H:%M"))
    page.click("#create-button")

    dialog = page.locator("#secret-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#secret-title")).to_have_text("New key")
    secret = page.input_value("#secret-value")
    assert re.fullmatch(r"ais-[A-Za-z0-9_-]{43}", secret), secret
    page.click("#secret-copy")
    expect(page.locator("#secret-copied")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == secret

    listed = {key["name"]: key for key in requests.get(f"{server.url}/admin/keys", headers=bearer(admin_key),
                                                       timeout=5).json()["keys"]}
    made = listed["ci-bot"]
    assert made["models"] == ["gpt-4o-mini", "openai/gpt-3.5-turbo"] and made["scopes"] == ["gists"]
    assert made["admin"] is False
    assert made["limits"] == {"rpm": 30, "tpm": 40000, "daily_tokens": 5000, "monthly_budget_usd": 2.5}
    assert made["expires_at"].startswith(expires.strftime("%Y-%m-%dT%H:%M"))
    assert made["hint"] == "ais-\u2026" + secret[-4:]
    row = key_row(page, made["id"])
    expect(row).to_contain_text("30 req/min · 40,000 tokens/min · 5,000 tokens/day · $2.50/month")
    expect(row).to_contain_text("gpt-4o-mini, openai/gpt-3.5-turbo")
    expect(row.locator(".badge")).to_have_text("active")

    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert page.input_value("#secret-value") == ""
    no_secret_kept(page, secret)
    no_secret_kept(page, admin_key)

    fake_openai.enqueue(Reply(text="Made by the page."))
    assert ask(server, secret).choices[0].message.content == "Made by the page."
    with pytest.raises(openai.PermissionDeniedError):
        ask(server, secret, model="gpt-4o")


def test_a_name_is_needed_and_a_refused_key_is_explained(page, server, admin_key):
    from playwright.sync_api import expect

    before = len(requests.get(f"{server.url}/admin/keys", headers=bearer(admin_key), timeout=5).json()["keys"])
    page.click("#create-details summary")
    page.click("#create-button")
    expect(page.locator("#create-error")).to_have_text("Give the key a name.")
    expect(page.locator("#new-name")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#new-name")).to_be_focused()
    page.fill("#new-name", "too-fast")
    page.fill("#new-rpm", "0")
    page.click("#create-button")
    expect(page.locator("#create-error")).to_contain_text("Not created:")
    expect(page.locator("#secret-dialog")).to_be_hidden()
    after = requests.get(f"{server.url}/admin/keys", headers=bearer(admin_key), timeout=5).json()["keys"]
    assert len(after) == before


def test_revoke_and_the_key_is_refused_at_once(page, server, admin_key, fake_openai):
    from playwright.sync_api import expect

    made = api_key(server, admin_key, "to-revoke")
    fake_openai.enqueue(Reply(text="Still here."))
    assert ask(server, made["key"]).choices[0].message.content == "Still here."
    reload_keys(page, admin_key)
    row = key_row(page, made["id"])
    row.get_by_role("button", name="Revoke of to-revoke").click()
    expect(page.locator("#confirm-dialog")).to_be_visible()
    expect(page.locator("#confirm-cancel")).to_be_focused()  # the safe choice first
    page.keyboard.press("Escape")
    expect(row.locator(".badge")).to_have_text("active")
    row.get_by_role("button", name="Revoke of to-revoke").click()
    page.click("#confirm-ok")
    expect(row.locator(".badge")).to_have_text("revoked")
    expect(row.get_by_role("button")).to_have_count(0)
    with pytest.raises(openai.PermissionDeniedError, match="revoked"):
        ask(server, made["key"])
    assert requests.get(f"{server.url}/admin/keys/{made['id']}", headers=bearer(admin_key),
                        timeout=5).json()["status"] == "revoked"


def test_rotate_shows_the_new_value_once_and_the_old_one_stops(page, server, admin_key, fake_openai):
    from playwright.sync_api import expect

    made = api_key(server, admin_key, "to-rotate", rpm=77)
    reload_keys(page, admin_key)
    key_row(page, made["id"]).get_by_role("button", name="Rotate of to-rotate").click()
    page.click("#confirm-ok")
    expect(page.locator("#secret-dialog")).to_be_visible()
    expect(page.locator("#secret-title")).to_have_text("Rotated key")
    new = page.input_value("#secret-value")
    assert new.startswith("ais-") and new != made["key"]
    expect(key_row(page, made["id"])).to_contain_text("ais-\u2026" + new[-4:])
    page.click("#secret-done")
    no_secret_kept(page, new)

    with pytest.raises(openai.AuthenticationError):
        ask(server, made["key"])
    fake_openai.enqueue(Reply(text="Rotated."))
    assert ask(server, new).choices[0].message.content == "Rotated."
    after = requests.get(f"{server.url}/admin/keys/{made['id']}", headers=bearer(admin_key), timeout=5).json()
    assert after["limits"]["rpm"] == 77 and after["rotated_at"]


def test_edit_limits_applies_from_the_next_request(page, server, admin_key, fake_openai):
    """Setting rpm to 1 makes the second call of the minute a 429; emptying a field removes its limit."""
    from playwright.sync_api import expect

    made = api_key(server, admin_key, "to-limit", daily_tokens=900, monthly_budget_usd=3)
    reload_keys(page, admin_key)
    row = key_row(page, made["id"])
    row.get_by_role("button", name="Edit limits of to-limit").click()
    expect(page.locator("#limits-dialog")).to_be_visible()
    expect(page.locator("#edit-daily-tokens")).to_have_value("900")
    expect(page.locator("#edit-rpm")).to_be_focused()
    page.fill("#edit-rpm", "1")
    page.fill("#edit-daily-tokens", "")
    page.click("#limits-save")
    expect(page.locator("#limits-dialog")).to_be_hidden()
    expect(row).to_contain_text("1 req/min · $3.00/month")
    limits = requests.get(f"{server.url}/admin/keys/{made['id']}", headers=bearer(admin_key),
                          timeout=5).json()["limits"]
    assert limits == {"rpm": 1, "tpm": None, "daily_tokens": None, "monthly_budget_usd": 3.0}

    fake_openai.enqueue(Reply(text="One."))
    ask(server, made["key"])
    with pytest.raises(openai.RateLimitError):
        ask(server, made["key"])

    row.get_by_role("button", name="Edit limits of to-limit").click()
    page.fill("#edit-budget", "-1")
    page.click("#limits-save")
    expect(page.locator("#limits-error")).to_contain_text("Not saved:")
    page.click("#limits-cancel")


def test_names_from_the_api_are_text_never_html(browser, server, admin_key):
    from playwright.sync_api import expect

    hostile = '<img src=x onerror="window.pwned=1"><b>bold</b>'
    made = api_key(server, admin_key, hostile, monthly_budget_usd=1)
    page = open_admin(browser, server, admin_key)
    try:
        expect(key_row(page, made["id"]).locator("th")).to_contain_text(hostile)
        expect(page.locator(f'#budget-list li[data-key-id="{made["id"]}"] h3')).to_have_text(hostile)
        assert page.locator("#keys-table img, #budget-list img, #keys-table b").count() == 0
        assert page.evaluate("window.pwned") is None
    finally:
        page.context.close()


def test_a_key_that_is_not_an_admins_is_asked_again(browser, server):
    from playwright.sync_api import expect

    plain = create_key(server, "not-admin")
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        page.goto(server.url + "/ui/admin")
        page.fill("#key-input", plain)
        page.keyboard.press("Enter")
        expect(page.locator("#key-dialog")).to_be_visible()
        expect(page.locator("#key-reason")).to_contain_text(
            "The server refused this key: Managing keys needs an admin key")
        expect(page.locator("#keys-table tbody tr")).to_have_count(0)
    finally:
        context.close()


# -- usage, spend, budgets, health ------------------------------------------------------------------------


def add_usage_row(server: LiveServer, key_id: str, day: date, model: str, cost: float) -> None:
    """A usage row of an earlier day in the server's database (no call can be made in the past)."""
    from app.core.db import open_database
    from app.keys.models import UsageRecord

    db = open_database(server.config["DATABASE_URL"])
    with db.bind_ctx([UsageRecord]), db.connection_context():
        UsageRecord.create(created_at=datetime.combine(day, datetime.min.time()) + timedelta(hours=12), key_id=key_id,
                           provider="openai", model=model, status="ok", prompt_tokens=400, completion_tokens=100,
                           cost_usd=cost)
    db.close_all()


def usage(server: LiveServer, admin_key: str, group_by: str, since: date, until: date) -> list[dict]:
    answer = requests.get(f"{server.url}/usage", params={"group_by": group_by, "since": since.isoformat(),
                                                         "until": until.isoformat()},
                          headers=bearer(admin_key), timeout=5)
    return answer.json()["rows"]


def wait_for_rows(server: LiveServer, admin_key: str, calls: int, day: date, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = usage(server, admin_key, "", day, day)
        if rows and rows[0]["calls"] >= calls:
            return
        time.sleep(0.1)
    raise AssertionError(f"usage did not reach {calls} calls today")


def table_cells(page: Any, selector: str) -> list[list[str]]:
    return page.locator(f"{selector} tbody tr").evaluate_all(
        "rows => rows.map(r => [...r.cells].map(c => c.textContent))")


def as_cells(label: str, row: dict) -> list[str]:
    """A /usage row as the page's tables write it."""
    return [label, f"{row['calls']:,}", f"{row['prompt_tokens']:,}", f"{row['completion_tokens']:,}",
            f"{row['total_tokens']:,}", f"${row['cost_usd']:.6f}"]


def test_usage_charts_and_their_tables_match_usage_and_budgets_match_key_info(browser, server, admin_key,
                                                                              fake_openai):
    """Calls by two keys on two models today, and a row of an earlier day: each chart's table equals
    /usage grouped by day, model and key; each bar's length is its share of the largest; the budgets
    say what /v1/key/info says is left."""
    from playwright.sync_api import expect

    alpha = api_key(server, admin_key, "usage-alpha", daily_tokens=100_000, monthly_budget_usd=4)
    beta = api_key(server, admin_key, "usage-beta")
    today = date.fromisoformat(requests.get(f"{server.url}/v1/key/info", headers=bearer(alpha["key"]),
                                            timeout=5).json()["usage"]["as_of"][:10])
    before = usage(server, admin_key, "", today, today)
    calls = [(alpha, "gpt-4o-mini", 1200, 300), (alpha, "gpt-4o", 800, 200), (beta, "gpt-4o-mini", 50, 25)]
    for key, model, prompt, completion in calls:
        fake_openai.enqueue(Reply(text="Counted.", prompt_tokens=prompt, completion_tokens=completion))
        ask(server, key["key"], model)
    wait_for_rows(server, admin_key, (before[0]["calls"] if before else 0) + len(calls), today)
    earlier = today - timedelta(days=5)
    add_usage_row(server, alpha["id"], earlier, "gpt-4o", 0.0125)

    page = open_admin(browser, server, admin_key)
    try:
        since = today - timedelta(days=29)
        names = {key["id"]: key["name"] for key in
                 requests.get(f"{server.url}/admin/keys", headers=bearer(admin_key), timeout=5).json()["keys"]}
        by_day = {row["day"]: row for row in usage(server, admin_key, "day", since, today)}
        empty = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cost_usd": 0}
        expected_days = [as_cells((since + timedelta(days=i)).isoformat(),
                                  by_day.get((since + timedelta(days=i)).isoformat(), empty)) for i in range(30)]
        expect(page.locator("#chart-day tbody tr")).to_have_count(30)
        assert table_cells(page, "#chart-day") == expected_days
        models = usage(server, admin_key, "model", since, today)
        assert table_cells(page, "#chart-model") == [as_cells(row["model"], row) for row in models]
        keys = usage(server, admin_key, "key", since, today)
        assert table_cells(page, "#chart-key") == [as_cells(names.get(row["key"], "(no key)"), row) for row in keys]

        bars = page.locator("#chart-day svg rect.bar")
        expect(bars).to_have_count(len(by_day))
        heights = {bar.get_attribute("data-label"): float(bar.get_attribute("height")) for bar in bars.all()}
        peak = max(row["cost_usd"] for row in by_day.values())
        for day, row in by_day.items():
            assert heights[day] == pytest.approx(max(2, row["cost_usd"] / peak * (156 - 22)), rel=1e-3)  # BAR_AREA
        model_chart = page.locator("#chart-model svg")
        span = float(model_chart.get_attribute("data-span"))
        assert span > 100
        model_bars = {bar.get_attribute("data-label"): float(bar.get_attribute("width"))
                      for bar in model_chart.locator("rect.bar").all()}
        largest = max(row["total_tokens"] for row in models)
        for row in models:
            assert model_bars[row["model"]] == pytest.approx(row["total_tokens"] / largest * span, rel=1e-3)
        assert page.locator("#chart-key svg").get_attribute("role") == "img"
        assert "The table that follows has every figure." in page.locator("#chart-key svg desc").text_content()

        page.select_option("#usage-days", "7")
        page.select_option("#usage-key", alpha["id"])
        expect(page.locator("#chart-day tbody tr")).to_have_count(7)
        alpha_models = requests.get(f"{server.url}/usage", params={"group_by": "model", "key_id": alpha["id"],
                                    "since": (today - timedelta(days=6)).isoformat(), "until": today.isoformat()},
                                    headers=bearer(admin_key), timeout=5).json()["rows"]
        expect(page.locator("#chart-model tbody tr")).to_have_count(len(alpha_models))
        assert table_cells(page, "#chart-model") == [as_cells(row["model"], row) for row in alpha_models]
        assert [row[0] for row in table_cells(page, "#chart-key")] == ["usage-alpha"]

        left = requests.get(f"{server.url}/v1/key/info", headers=bearer(alpha["key"]), timeout=5).json()["usage"]
        budget = page.locator(f'#budget-list li[data-key-id="{alpha["id"]}"]')
        expect(budget.locator("p").nth(0)).to_have_text(
            f"Tokens today: {left['tokens_today']:,} of 100,000 used · {left['daily_tokens_left']:,} left")
        spent = left["cost_this_month_usd"]
        expect(budget.locator("p").nth(1)).to_contain_text(
            f"of $4.00 used · ${left['monthly_budget_left_usd']:.2f} left")
        assert float(budget.locator("meter").nth(1).get_attribute("value")) == pytest.approx(spent, abs=1e-6)
        expect(page.locator(f'#budget-list li[data-key-id="{beta["id"]}"]')).to_have_count(0)  # no limits
    finally:
        page.context.close()


def test_upstream_health_is_the_servers(page, server, admin_key):
    from playwright.sync_api import expect

    upstreams = requests.get(f"{server.url}/admin/upstreams", headers=bearer(admin_key), timeout=5).json()["upstreams"]
    assert upstreams
    rows = page.locator("#health-table tbody tr")
    expect(rows).to_have_count(len(upstreams))
    for upstream in upstreams:
        row = page.locator(f'#health-table tbody tr[data-upstream="{upstream["upstream"]}"]')
        expect(row.locator(".badge")).to_have_text(upstream["state"])
        expect(row.locator("td").nth(0)).to_have_text(", ".join(upstream["served_as"]))
        expect(row.locator("td").nth(2)).to_have_text(str(upstream["consecutive_failures"]))
    page.click("#health-refresh")
    expect(page.locator("#health-status")).to_contain_text("As of ")


# -- the call log ------------------------------------------------------------------------------------------


def calls(server: LiveServer, admin_key: str, **query: Any) -> dict[str, Any]:
    answer = requests.get(f"{server.url}/admin/calls", params=query, headers=bearer(admin_key), timeout=5)
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_for_calls(server: LiveServer, admin_key: str, key_id: str, count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(calls(server, admin_key, key_id=key_id, limit=200)["data"]) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"the call log did not reach {count} calls of {key_id}")


def call_ids(page: Any) -> list[int]:
    return [int(i) for i in page.locator("#calls-table tbody tr").evaluate_all(
        "rows => rows.map(r => r.getAttribute('data-call-id'))")]


def search_calls(page: Any, **fields: str) -> None:
    """Fill the call log's filters (the others emptied) and search; wait for the answer."""
    from playwright.sync_api import expect

    for name in ("model", "provider", "status", "since", "until", "request-id"):
        page.fill(f"#calls-{name}", fields.get(name, ""))
    page.select_option("#calls-key", fields.get("key", ""))
    page.select_option("#calls-limit", fields.get("limit", "50"))
    page.click("#calls-search")
    expect(page.locator("#calls-status-line")).not_to_have_text("Loading…")


def test_the_call_log_filters_pages_and_shows_a_calls_attempts_and_bodies(browser, server, admin_key, fake_openai):
    """Eleven calls by one key, a retried and a refused call by another: each filter of the page lists what
    /admin/calls lists, paged 10 at a time; a call's detail has its attempts on a timeline and its bodies,
    with no secret in them."""
    from playwright.sync_api import expect

    one = api_key(server, admin_key, "calls-one")
    two = api_key(server, admin_key, "calls-two")
    for i in range(11):
        fake_openai.enqueue(Reply(text=f"Answer {i}.", prompt_tokens=10 + i, completion_tokens=5))
        sdk(server, one["key"]).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"question {i}"}],
            extra_headers={"X-Request-ID": f"adm-one-{i}"})
    fake_openai.enqueue(Reply(status=500, error_message="The fake fell over."))
    fake_openai.enqueue(Reply(text="After a retry.", prompt_tokens=21, completion_tokens=7))
    sdk(server, two["key"]).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "retry me"}],
        extra_headers={"X-Request-ID": "adm-two-retry"})
    fake_openai.enqueue(Reply(status=400, error_message="The fake refuses this."))
    with pytest.raises(openai.BadRequestError):
        sdk(server, two["key"]).chat.completions.create(model="gpt-4o-mini",
                                                       messages=[{"role": "user", "content": "refuse me"}])
    wait_for_calls(server, admin_key, one["id"], 11)
    wait_for_calls(server, admin_key, two["id"], 2)

    page = open_admin(browser, server, admin_key)
    try:
        newest = calls(server, admin_key, limit=50)["data"]
        expect(page.locator("#calls-table tbody tr")).to_have_count(len(newest))
        assert call_ids(page) == [call["id"] for call in newest]

        search_calls(page, key=one["id"], limit="10")
        first = calls(server, admin_key, key_id=one["id"], limit=10)
        expect(page.locator("#calls-table tbody tr")).to_have_count(10)
        assert call_ids(page) == [call["id"] for call in first["data"]]
        expect(page.locator("#calls-more")).to_be_visible()
        page.click("#calls-more")
        expect(page.locator("#calls-table tbody tr")).to_have_count(11)
        rest = calls(server, admin_key, key_id=one["id"], limit=10, cursor=first["next_cursor"])["data"]
        assert call_ids(page) == [call["id"] for call in first["data"] + rest]
        expect(page.locator("#calls-more")).to_be_hidden()
        expect(page.locator("#calls-status-line")).to_have_text("11 calls.")
        row = page.locator("#calls-table tbody tr").first.locator("th, td")
        expect(row).to_have_text([re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"), "calls-one", "gpt-4o-mini",
                                  "200", re.compile(r"\d+ ms"), "25", re.compile(r"\$")])

        search_calls(page, key=two["id"], status="error")
        refused = calls(server, admin_key, key_id=two["id"], status="error")["data"]
        assert len(refused) == 1 and refused[0]["status"] == 400
        expect(page.locator("#calls-table tbody tr")).to_have_count(1)
        assert call_ids(page) == [refused[0]["id"]]
        expect(page.locator("#calls-table tbody tr .badge")).to_have_text(
            f"400 {refused[0]['error_type']}" if refused[0]["error_type"] else "400")

        search_calls(page, model="gpt-4o-mini", provider="openai", status="200", key=one["id"], limit="200",
                     since="2000-01-01T00:00")
        expect(page.locator("#calls-table tbody tr")).to_have_count(11)
        search_calls(page, provider="anthropic")
        expect(page.locator("#calls-status-line")).to_have_text("No call matches.")
        search_calls(page, until="2000-01-01T00:00")
        expect(page.locator("#calls-status-line")).to_have_text("No call matches.")

        search_calls(page, **{"request-id": "adm-two-retry"})
        expect(page.locator("#calls-table tbody tr")).to_have_count(1)
        retried = calls(server, admin_key, request_id="adm-two-retry")["data"][0]
        detail = requests.get(f"{server.url}/admin/calls/{retried['id']}", headers=bearer(admin_key), timeout=5).json()
        assert len(detail["attempts"]) == 2 and detail["payload"] is not None
        page.locator("#calls-table tbody tr button").click()
        dialog = page.locator("#call-dialog")
        expect(dialog).to_be_visible()
        expect(page.locator("#call-title")).to_have_text("Call adm-two-retry")
        facts = dict(zip(page.locator("#call-facts dt").all_text_contents(),
                         page.locator("#call-facts dd").all_text_contents()))
        assert facts["Key"] == f"calls-two ({two['id']})"
        assert facts["Status"] == "200" and facts["Latency"] == f"{detail['latency_ms']:,} ms"
        assert facts["Tokens"] == "prompt 21 (cached 0), completion 7 (reasoning 0)"
        assert facts["Answered by"].startswith(f"openai/{detail['model']}")
        assert facts["Front door"] == "/v1/chat/completions" and facts["Streamed"] == "no"
        attempts = page.locator("#call-attempts tbody tr")
        expect(attempts).to_have_count(2)
        assert attempts.evaluate_all("rows => rows.map(r => r.cells[5].textContent)") == [
            f"{a['status']} {a['error_type']}" if a["error_type"] else str(a["status"]) for a in detail["attempts"]]
        bars = page.locator("#call-timeline svg rect.bar")
        expect(bars).to_have_count(2)
        assert bars.evaluate_all("bs => bs.map(b => b.getAttribute('class'))") == ["bar failed", "bar ok"]
        starts = bars.evaluate_all("bs => bs.map(b => Number(b.getAttribute('x')))")
        assert starts[0] < starts[1]  # the retry came after the failure
        widths = bars.evaluate_all("bs => bs.map(b => Number(b.getAttribute('width')))")
        durations = [a["duration_ms"] for a in detail["attempts"]]
        if min(durations) >= 5:  # wider than the 2 px a bar has at least
            assert widths[0] / widths[1] == pytest.approx(durations[0] / durations[1], rel=0.01)
        expect(page.locator("#call-title")).to_be_focused()
        expect(page.locator("#call-request")).to_contain_text('"content": "retry me"')
        expect(page.locator("#call-response")).to_contain_text("After a retry.")
        expect(page.locator("#call-no-payload")).to_be_hidden()
        text = dialog.text_content()
        assert "sk-test-openai-key-0001" not in text and two["key"] not in text
        no_secret_kept(page, two["key"])
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
    finally:
        page.context.close()


# -- accessibility, themes, a narrow screen; the README's pictures ---------------------------------------


def audited(page: Any, what: str) -> None:
    violations = axe_violations(page)
    assert violations == [], (what, violations)


@pytest.fixture(scope="module")
def team_server(fake_openai, tmp_path_factory) -> Iterator[tuple[LiveServer, str]]:
    """A server as a small team's operator sees it, for the audit and the README's pictures: three keys
    with limits, two weeks of spend, today's calls on two models, a retried call and a refused one."""
    server = LiveServer(base_config(tmp_path_factory.mktemp("ui-admin-team"), **NO_HEALTH_MEMORY, LOG_LEVEL="INFO",
                                    USAGE_FLUSH_S=0.1, LOG_PAYLOADS="all", **provider_config(openai=fake_openai)))
    try:
        admin = create_key(server, "operator", "--admin")
        ci = api_key(server, admin, "ci-agent", models=["gpt-4o-mini"], rpm=60, daily_tokens=200_000)
        support = api_key(server, admin, "support-bot", monthly_budget_usd=25, tpm=50_000)
        api_key(server, admin, "nightly-batch")
        today = datetime.now(timezone.utc).date()
        for days_ago, cost in [(13, 0.8), (11, 1.4), (9, 0.6), (8, 2.1), (6, 1.2), (4, 2.6), (3, 1.9), (1, 3.2)]:
            add_usage_row(server, support["id"], today - timedelta(days=days_ago), "gpt-4o", cost)
            add_usage_row(server, ci["id"], today - timedelta(days=days_ago), "gpt-4o-mini", cost / 5)
        fake_openai.reset()
        for key, model, prompt, completion in [(ci, "gpt-4o-mini", 5200, 800), (support, "gpt-4o", 12000, 1500),
                                               (ci, "gpt-4o-mini", 3100, 420), (support, "gpt-4o-mini", 900, 250)]:
            fake_openai.enqueue(Reply(text="Done.", prompt_tokens=prompt, completion_tokens=completion))
            ask(server, key["key"], model)
        fake_openai.enqueue(Reply(status=500, error_message="The fake fell over."))
        fake_openai.enqueue(Reply(text="After a retry.", prompt_tokens=1500, completion_tokens=400))
        ask(server, support["key"], "gpt-4o")
        fake_openai.enqueue(Reply(status=400, error_message="The fake refuses this."))
        with pytest.raises(openai.BadRequestError):
            ask(server, ci["key"])
        wait_for_calls(server, admin, support["id"], 3)
        yield server, admin
    finally:
        server.stop()


@pytest.mark.parametrize(("width", "scheme"), [(1280, "light"), (1280, "dark"), (390, "light"), (390, "dark")])
def test_accessible_in_light_and_dark_on_a_desktop_and_a_390px_screen(browser, team_server, pictures, width, scheme):
    """No serious or critical axe-core violation with every section filled and with each dialog open;
    nothing wider than the screen; every action reachable with the keyboard. The 1280 px light and the
    390 px dark pages are the README's screenshots."""
    from playwright.sync_api import expect

    server, admin_key = team_server
    page = open_admin(browser, server, admin_key, width=width, scheme=scheme, audit=True)
    try:
        expect(page.locator("#calls-table tbody tr").first).to_be_visible()
        expect(page.locator("#health-table tbody tr").first).to_be_visible()
        expect(page.locator("#chart-day svg")).to_be_visible()
        expect(page.locator("#budget-list li")).to_have_count(2)
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == (
            "rgb(14, 16, 20)" if scheme == "dark" else "rgb(246, 247, 249)")
        audited(page, "the page")
        for chart in page.locator(".chart-svg").all():  # drawn at its box's width: text at its real size
            assert chart.evaluate("s => s.viewBox.baseVal.width") == pytest.approx(chart.bounding_box()["width"], abs=2)
        if (width, scheme) == (1280, "light"):
            page.screenshot(path=str(pictures / "admin.png"), full_page=True)
        if (width, scheme) == (390, "dark"):
            page.screenshot(path=str(pictures / "admin-dark-390.png"))
            page.locator("#usage").scroll_into_view_if_needed()
            page.screenshot(path=str(pictures / "admin-dark-390-usage.png"))
        page.evaluate("document.querySelectorAll('.chart-block details').forEach(d => d.open = true)")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        audited(page, "the charts' tables")

        page.click("#create-details summary")
        audited(page, "the create form")
        page.locator("#calls-table tbody tr", has_text="support-bot").first.locator("button").focus()
        page.keyboard.press("Enter")
        expect(page.locator("#call-dialog")).to_be_visible()
        expect(page.locator("#call-attempts tbody tr").first).to_be_visible()
        assert page.evaluate("document.querySelector('#call-dialog').getBoundingClientRect().right") <= width
        audited(page, "a call's detail")
        if width == 1280 and scheme == "light":
            page.locator("#call-dialog").screenshot(path=str(pictures / "admin-call.png"))
        page.keyboard.press("Escape")

        row = page.locator("#keys-table tbody tr", has_text="nightly-batch")
        row.get_by_role("button", name="Edit limits of nightly-batch").focus()
        page.keyboard.press("Enter")
        expect(page.locator("#limits-dialog")).to_be_visible()
        audited(page, "the limits dialog")
        page.keyboard.press("Escape")
        row.get_by_role("button", name="Rotate of nightly-batch").focus()
        page.keyboard.press("Enter")
        expect(page.locator("#confirm-dialog")).to_be_visible()
        audited(page, "the confirmation")
        page.keyboard.press("Tab")
        expect(page.locator("#confirm-ok")).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator("#secret-dialog")).to_be_visible()
        audited(page, "the new key")
        page.keyboard.press("Escape")
    finally:
        page.context.close()
