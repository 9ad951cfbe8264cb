"""The web chat at /ui, in a real headless Chromium (Debian's) driven by Playwright, against a real server.

`make test` installs Chromium when it is missing (scripts/install-test-deps); without it these tests
are skipped with the reason.
"""
from __future__ import annotations

import os
import re
import shutil
from typing import Iterator

import pytest
import requests

from tests.conftest import LiveServer, base_config, provider_config
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.server import Reply

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
PIECES = ["The ", "Moon ", "drifts ", "away ", "from ", "Earth ", "by ", "about ", "3.8 ", "cm ", "a ", "year."]
ANSWER = "".join(PIECES)

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Chromium is not installed: bash "
                                                                      "scripts/install-test-deps")]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAI]:
    """One fake and one server for the module (starting a server costs seconds); reset per test."""
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(fake_openai, tmp_path_factory) -> Iterator[LiveServer]:
    server = LiveServer(base_config(tmp_path_factory.mktemp("ui"), LOG_LEVEL="INFO",
                                    **provider_config(openai=fake_openai)))
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh_fake(fake_openai) -> None:
    fake_openai.reset()


def test_send_stream_reload_and_delete(server, page, fake_openai):
    from playwright.sync_api import expect

    fake_openai.enqueue(Reply(chunks=PIECES, chunk_delay=0.12))
    page.goto(server.url + "/ui")
    expect(page.locator("#provider-select option[value=openai]")).to_have_count(1)
    page.fill("#composer-input", "Tell me a fun fact about space")
    page.keyboard.press("Enter")

    answer = page.locator(".message.assistant .text").last
    expect(answer).to_contain_text("Moon")
    assert answer.inner_text() != ANSWER, "the answer arrived in one piece instead of streaming"
    expect(answer).to_have_text(ANSWER)
    expect(page.locator(".message.streaming")).to_have_count(0)
    chat_id = re.search(r"#chat=(.+)$", page.url).group(1)
    item = page.locator(f'.chat-item[data-chat-id="{chat_id}"]')
    expect(item).to_contain_text("Tell me a fun fact about space")

    page.reload()
    expect(page.locator(".message.user .text")).to_have_text(["Tell me a fun fact about space"])
    expect(page.locator(".message.assistant .text")).to_have_text([ANSWER])
    expect(page.locator("details.system-prompt")).to_have_count(1)
    page.goto(server.url + "/ui")
    expect(item).to_have_count(1)
    item.locator(".chat-open").click()
    expect(page.locator(".message.assistant .text")).to_have_text([ANSWER])

    page.once("dialog", lambda dialog: dialog.accept())
    item.hover()
    item.locator(".chat-delete").click()
    expect(item).to_have_count(0)
    expect(page.locator("#chat-title")).to_have_text("New chat")
    assert requests.get(f"{server.url}/chat/history/{chat_id}", timeout=5).status_code == 404


def test_a_custom_id_a_provider_and_a_remembered_dark_mode(server, page, fake_openai):
    from playwright.sync_api import expect

    fake_openai.enqueue(Reply(text="Hello, custom chat."))
    page.goto(server.url + "/ui")
    page.fill("#new-chat-id", "not valid!")
    page.click("#new-chat-button")
    expect(page.locator("#new-chat-hint")).to_contain_text("1 to 64")
    page.fill("#new-chat-id", "space-facts")
    page.click("#new-chat-button")
    expect(page.locator("#chat-title")).to_have_text("space-facts")
    page.select_option("#provider-select", "openai")
    page.fill("#composer-input", "Hi")
    page.click("#send-button")
    expect(page.locator(".message.assistant .text")).to_have_text(["Hello, custom chat."])
    stored = requests.get(f"{server.url}/chat/history/space-facts", timeout=5).json()
    assert [m["content"] for m in stored["history"]["messages"][1:]] == ["Hi", "Hello, custom chat."]

    dark_before = page.evaluate("document.documentElement.dataset.themeActive")
    page.click("#theme-toggle")
    flipped = "light" if dark_before == "dark" else "dark"
    expect(page.locator("html")).to_have_attribute("data-theme-active", flipped)
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", flipped)
    expect(page.locator("#provider-select")).to_have_value("openai")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == ("rgb(14, 16, 20)" if flipped == "dark" else "rgb(246, 247, 249)")


def test_a_failed_answer_is_shown_as_an_error(server, page, fake_openai):
    from playwright.sync_api import expect

    fake_openai.set_model_reply("gpt-4o-mini", Reply(status=500))
    fake_openai.set_model_reply("gpt-4o", Reply(status=500))
    page.goto(server.url + "/ui")
    page.fill("#composer-input", "Anyone there?")
    page.keyboard.press("Enter")
    expect(page.locator(".message.assistant .badge.error")).to_contain_text("attempts failed")
    chat_id = re.search(r"#chat=(.+)$", page.url).group(1)
    expect(page.locator(f'.chat-item[data-chat-id="{chat_id}"]')).to_have_count(1)


def test_redoc_renders_the_document_from_this_server_only(server, page):
    """/redoc in Chromium: the vendored ReDoc renders the API's title and its operations from this
    server's /openapi.json; nothing is loaded from elsewhere (the Content-Security-Policy blocks the
    Redocly logo ReDoc's sidebar asks a CDN for)."""
    from playwright.sync_api import expect

    answered: list[str] = []
    blocked: list[tuple[str, str]] = []
    page.on("response", lambda response: answered.append(response.url))
    page.on("requestfailed", lambda request: blocked.append((request.url, request.failure or "")))
    page.goto(server.url + "/redoc")
    expect(page.locator("h1").first).to_contain_text("aiserver", timeout=30_000)  # the document is built on first use
    expect(page.locator("h2", has_text="OpenAI-compatible chat completions").first).to_be_visible()
    expect(page.get_by_text("Every route failed before answering").first).to_be_attached()
    assert server.url + "/openapi.json" in answered
    assert [url for url in answered if not url.startswith((server.url, "data:", "blob:"))] == []
    assert all("csp" in why.lower() for url, why in blocked if not url.startswith(server.url)), blocked
