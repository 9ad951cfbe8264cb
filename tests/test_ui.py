"""The web chat at /ui, in a real headless Chromium (Debian's) driven by Playwright, against a real server.

`make test` installs Chromium when it is missing (scripts/install-test-deps); without it these tests
are skipped with the reason. Each test saves screenshots of the states it checks in its pytest tmp
directory (`shot`), the artefacts to look at when a layout changes.
"""
from __future__ import annotations

import base64
import json
import os
import re
import struct
import subprocess
import time
import zlib
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests

from tests.browser import launch_chromium, needs_chromium
from tests.conftest import NO_HEALTH_MEMORY, ROOT, VENV_BIN, LiveServer, as_environ, base_config, provider_config
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.server import Reply

PIECES = ["The ", "Moon ", "drifts ", "away ", "from ", "Earth ", "by ", "about ", "3.8 ", "cm ", "a ", "year."]
ANSWER = "".join(PIECES)
ALIASES = "fast=openai/gpt-4o-mini,vision=openai/gpt-4o,text-only=openai/gpt-3.5-turbo"

pytestmark = [pytest.mark.browser, needs_chromium]


def png(width: int = 48, height: int = 32, rgb: tuple[int, int, int] = (245, 166, 35)) -> bytes:
    """A solid-colour PNG image."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme="light",
                                  permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


@pytest.fixture
def shot(page, tmp_path) -> Callable[[str], Path]:
    """Save a screenshot of the page as `<name>.png` in the test's tmp directory; its path."""
    def take(name: str, target: Any = None) -> Path:
        path = tmp_path / f"{name}.png"
        (target or page).screenshot(path=str(path))
        return path
    return take


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAI]:
    """One fake and one server for the module (starting a server costs seconds); reset per test."""
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(fake_openai, tmp_path_factory) -> Iterator[LiveServer]:
    server = LiveServer(base_config(tmp_path_factory.mktemp("ui"),
                                    **NO_HEALTH_MEMORY, LOG_LEVEL="INFO", MODEL_ALIASES=ALIASES,
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
    expect(page.locator('#model-select option[value="openai/gpt-4o-mini"]')).to_have_count(1)
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
    page.select_option("#model-select", "openai/gpt-4o")
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
    expect(page.locator("#model-select")).to_have_value("openai/gpt-4o")
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


MARKDOWN = """## Orbital facts

The Moon recedes by **3.8 cm** a year ([source](https://example.com/moon)); see `moon.recede()`.

- tides slow the Earth
- angular momentum moves to the Moon

| Body | Distance (km) |
|------|---------------|
| Moon | 384,400 |
| Sun | 149,600,000 |

```python
def recede(years):
    return 3.8 * years  # centimetres
```

Energy: $E_k = m_1 v^2$ is typeset.
"""
CODE = "def recede(years):\n    return 3.8 * years  # centimetres\n"


def chunks_of(text: str, size: int = 12) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


def send(page: Any, text: str) -> None:
    page.fill("#composer-input", text)
    page.keyboard.press("Enter")


def wait_idle(page: Any) -> None:
    from playwright.sync_api import expect

    expect(page.locator(".message.streaming")).to_have_count(0)


def test_markdown_is_rendered_while_streaming_highlighted_and_copyable(server, page, fake_openai, shot):
    from playwright.sync_api import expect

    fake_openai.enqueue(Reply(chunks=chunks_of(MARKDOWN), chunk_delay=0.04))
    page.goto(server.url + "/ui")
    expect(page.locator("#messages")).to_have_attribute("aria-live", "polite")
    send(page, "How fast does the Moon recede?")
    answer = page.locator(".message.assistant .markdown").last
    expect(answer.locator("h2")).to_have_text("Orbital facts")
    page.evaluate("window.firstBlock = document.querySelector('.message.assistant .markdown h2')")
    expect(page.locator(".message.streaming")).to_have_count(1)
    shot("markdown-streaming")
    wait_idle(page)

    assert page.evaluate("window.firstBlock === document.querySelector('.message.assistant .markdown h2')"), \
        "blocks already shown were replaced while the answer grew (flicker)"
    expect(answer.locator("strong")).to_have_text("3.8 cm")
    expect(answer.locator("ul > li")).to_have_count(2)
    expect(answer.locator(".table-wrap > table tr")).to_have_count(3)
    expect(answer.locator("table td").first).to_have_text("Moon")
    expect(answer.locator(":not(pre) > code")).to_have_text("moon.recede()")
    link = answer.locator("a")
    expect(link).to_have_attribute("href", "https://example.com/moon")
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", re.compile("noopener"))
    code = answer.locator("pre code")
    expect(code).to_have_class(re.compile(r"\bhljs\b.*language-python|language-python.*\bhljs\b"))
    expect(code.locator(".hljs-keyword").first).to_have_text("def")
    expect(code.locator(".hljs-comment")).to_have_text("# centimetres")
    assert code.evaluate("c => getComputedStyle(c.querySelector('.hljs-keyword')).color") != \
        code.evaluate("c => getComputedStyle(c).color"), "keywords are not coloured"
    expect(answer.locator(".math .katex-html")).to_have_count(1)  # typeset by KaTeX, its TeX kept for copying
    expect(answer.locator(".math annotation")).to_have_text("E_k = m_1 v^2")
    expect(page.locator(".answered-by").last).to_have_text("openai · gpt-4o-mini")

    shot("markdown-done")
    answer.locator("pre").hover()
    answer.locator(".copy-code").click()
    expect(answer.locator(".copy-code")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == CODE

    page.reload()
    expect(page.locator(".message.assistant .markdown table tr")).to_have_count(3)
    expect(page.locator(".message.assistant pre code .hljs-keyword").first).to_have_text("def")


def test_the_answer_is_followed_at_the_end_but_reading_further_up_keeps_the_place(server, page, fake_openai):
    from playwright.sync_api import expect

    long = "".join(f"Paragraph {i}: " + "words " * 30 + "\n\n" for i in range(40))
    fake_openai.enqueue(Reply(chunks=chunks_of(long, 60), chunk_delay=0.03))
    page.goto(server.url + "/ui")
    send(page, "Write a lot")
    expect(page.locator(".message.assistant .markdown p").nth(11)).to_be_attached()
    gap = "(m => m.scrollHeight - m.scrollTop - m.clientHeight)(document.querySelector('#messages'))"
    assert page.evaluate(gap) < 80, "the streaming answer is not followed"
    page.mouse.move(640, 300)
    page.mouse.wheel(0, -400)
    page.wait_for_timeout(100)
    marker = page.locator(".message.assistant .markdown p").nth(8)
    place = marker.bounding_box()["y"]  # where the paragraph being read is on the screen
    page.wait_for_timeout(500)
    expect(page.locator(".message.streaming")).to_have_count(1)
    assert abs(marker.bounding_box()["y"] - place) < 2
    wait_idle(page)
    assert abs(marker.bounding_box()["y"] - place) < 2, "the paragraph being read moved (scroll anchoring rounds)"
    assert page.evaluate(gap) > 400, "the view jumped to the end"


XSS = """Here is a test.

<script>window.pwned = "script"</script>
<img src="x" onerror="window.pwned = 'onerror'; alert(1)">
<svg><g onload="window.pwned = 'svg'"></g></svg>
<iframe srcdoc="<script>parent.pwned = 'iframe'</script>"></iframe>
<a href="javascript:window.pwned='href'">a javascript link</a>
[markdown link](javascript:window.pwned='markdown')
<form action="javascript:alert(1)"><button>Go</button></form>
<p style="position:fixed;inset:0" onclick="window.pwned='click'">covering paragraph</p>

Done.
"""


def test_an_answer_with_html_and_javascript_is_inert(server, page, fake_openai, shot):
    from playwright.sync_api import expect

    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    fake_openai.enqueue(Reply(chunks=chunks_of(XSS, 20), chunk_delay=0.02))
    page.goto(server.url + "/ui")
    send(page, "Show me some HTML")
    wait_idle(page)
    answer = page.locator(".message.assistant .markdown").last
    expect(answer).to_contain_text("Done.")
    for link in answer.locator("a").all():
        link.click()
    answer.locator("text=covering paragraph").click()
    page.wait_for_timeout(300)

    assert page.evaluate("window.pwned") is None
    assert dialogs == []
    assert answer.locator("script, iframe, form, button:not(.copy-code), [style]").count() == 0
    assert answer.evaluate("""a => [...a.querySelectorAll('*')].flatMap(e => [...e.attributes])
        .filter(x => x.name.startsWith('on') || /^\\s*javascript:/i.test(x.value)).map(x => x.name)""") == []
    expect(answer.locator("img")).to_have_count(1)  # kept, without its handler (and blocked by the CSP)
    shot("xss-inert")


def test_the_model_picker_remembers_each_chats_model_and_labels_answers(server, page, fake_openai, shot):
    from playwright.sync_api import expect

    page.goto(server.url + "/ui")
    options = page.locator("#model-select option")
    expect(options).to_have_count(6)
    assert [o.get_attribute("value") for o in options.all()] == [
        "", "fast", "vision", "text-only", "openai/gpt-4o-mini", "openai/gpt-4o"]
    assert page.locator("#model-select optgroup").evaluate_all("gs => gs.map(g => g.label)") == ["Aliases", "Models"]

    page.select_option("#model-select", "vision")
    send(page, "Which model are you?")
    wait_idle(page)
    expect(page.locator(".answered-by").last).to_have_text("openai · gpt-4o")
    assert fake_openai.requests[-1].json["model"] == "gpt-4o"
    vision_chat = re.search(r"#chat=(.+)$", page.url).group(1)

    fake_openai.set_model_reply("gpt-4o-mini", Reply(status=503))
    page.fill("#new-chat-id", "fallback-chat")
    page.click("#new-chat-button")
    page.select_option("#model-select", "fast")
    send(page, "And now?")
    wait_idle(page)
    label = page.locator(".answered-by").last
    expect(label).to_have_text("openai · gpt-4o — fallback after openai/gpt-4o-mini (503 ×3) failed")
    expect(label).to_have_class(re.compile("fallback"))
    shot("model-fallback")

    page.goto(f"{server.url}/ui#chat={vision_chat}")
    expect(page.locator("#model-select")).to_have_value("vision")
    expect(page.locator(".answered-by")).to_have_text(["openai · gpt-4o"])
    page.locator('.chat-item[data-chat-id="fallback-chat"] .chat-open').click()
    expect(page.locator("#model-select")).to_have_value("fast")
    expect(page.locator(".answered-by")).to_have_text(["openai · gpt-4o"])


def test_an_image_is_attached_or_pasted_sent_and_shown_and_refused_by_a_blind_model(server, page, fake_openai,
                                                                                   tmp_path, shot):
    from playwright.sync_api import expect

    image = tmp_path / "blue.png"
    image.write_bytes(png())
    page.goto(server.url + "/ui")
    page.set_input_files("#image-input", str(image))
    expect(page.locator("#attachments img")).to_have_count(1)
    page.evaluate("""bytes => {
        const file = new File([new Uint8Array(bytes)], "pasted.png", {type: "image/png"});
        const data = new DataTransfer();
        data.items.add(file);
        document.querySelector("#composer-input").dispatchEvent(
            new ClipboardEvent("paste", {clipboardData: data, bubbles: true, cancelable: true}));
    }""", list(png(rgb=(200, 40, 40))))
    expect(page.locator("#attachments img")).to_have_count(2)
    page.locator("#attachments .remove-attachment").last.click()
    expect(page.locator("#attachments img")).to_have_count(1)
    page.fill("#composer-input", "What colour is this?")
    shot("image-attached")
    page.keyboard.press("Enter")
    wait_idle(page)

    sent = fake_openai.requests[-1].json["messages"][-1]["content"]
    data_url = "data:image/png;base64," + base64.b64encode(png()).decode()
    assert sent == [{"type": "text", "text": "What colour is this?"},
                    {"type": "image_url", "image_url": {"url": data_url}}]
    expect(page.locator(".message.user .thumb")).to_have_count(1)
    expect(page.locator("#attachments")).to_be_hidden()
    page.reload()
    thumb = page.locator(".message.user .thumb")
    expect(thumb).to_have_attribute("src", data_url)
    assert thumb.evaluate("img => img.naturalWidth") == 48
    shot("image-sent")

    page.select_option("#model-select", "text-only")
    page.set_input_files("#image-input", str(image))
    page.fill("#composer-input", "And this one?")
    page.keyboard.press("Enter")
    expect(page.locator("#notice")).to_contain_text("image_url is only supported by certain models")
    expect(page.locator(".message.assistant .badge.error").last).to_contain_text("only supported by certain models")
    shot("image-refused")


def test_regenerate_the_last_answer_and_edit_the_last_message(server, page, fake_openai, shot):
    from playwright.sync_api import expect

    fake_openai.enqueue(Reply(text="First answer."), Reply(text="A better answer."), Reply(text="Edited answer."))
    page.goto(server.url + "/ui")
    send(page, "Tell me about Mars")
    wait_idle(page)
    chat_id = re.search(r"#chat=(.+)$", page.url).group(1)
    expect(page.locator(".message.assistant .text")).to_have_text(["First answer."])

    page.get_by_role("button", name="Regenerate").click()
    wait_idle(page)
    expect(page.locator(".message.assistant .text")).to_have_text(["A better answer."])

    page.get_by_role("button", name="Edit").click()
    expect(page.locator("#editing")).to_be_visible()
    expect(page.locator("#composer-input")).to_have_value("Tell me about Mars")
    page.fill("#composer-input", "Tell me about Venus")
    shot("editing")
    page.keyboard.press("Enter")
    wait_idle(page)
    expect(page.locator(".message.user .text")).to_have_text(["Tell me about Venus"])
    expect(page.locator(".message.assistant .text")).to_have_text(["Edited answer."])
    stored = requests.get(f"{server.url}/chat/history/{chat_id}", timeout=5).json()["history"]["messages"]
    assert [m["content"] for m in stored[1:]] == ["Tell me about Venus", "Edited answer."]
    shot("edited")


def test_search_rename_and_export(server, page, fake_openai, tmp_path, shot):
    from playwright.sync_api import expect

    marker = f"zebra{os.getpid()}"
    for text in (f"Do {marker}s sleep standing?", "Unrelated question"):
        assert requests.post(f"{server.url}/chat", json={"message": text}, timeout=10).ok
    page.goto(server.url + "/ui")
    page.fill("#chat-search", marker.upper())
    items = page.locator(".chat-item")
    expect(items).to_have_count(1)
    expect(items.locator(".chat-sub")).to_contain_text(f"Do {marker}s sleep standing?")
    expect(page.locator("#chats-title")).to_contain_text(marker.upper())
    shot("search")
    items.locator(".chat-open").click()
    chat_id = re.search(r"#chat=(.+)$", page.url).group(1)

    page.locator("#chat-menu summary").click()
    page.click("#rename-button")
    page.fill("#rename-input", "Sleeping zebras")
    page.keyboard.press("Enter")
    expect(page.locator("#chat-title")).to_have_text("Sleeping zebras")
    assert requests.get(f"{server.url}/chat/history/{chat_id}", timeout=5).json()["history"]["title"] == \
        "Sleeping zebras"
    page.fill("#chat-search", "")
    expect(page.locator(f'.chat-item[data-chat-id="{chat_id}"] .chat-name')).to_have_text("Sleeping zebras")

    page.locator("#chat-menu summary").click()
    with page.expect_download() as download:
        page.click("#export-md")
    markdown = Path(download.value.path()).read_text()
    assert download.value.suggested_filename == f"{chat_id}.md"
    assert markdown.startswith("# Sleeping zebras\n")
    assert f"## You\n\nDo {marker}s sleep standing?" in markdown
    assert "## Assistant (openai · gpt-4o-mini)\n\nHello from the fake." in markdown
    page.locator("#chat-menu summary").click()
    with page.expect_download() as download:
        page.click("#export-json")
    exported = json.loads(Path(download.value.path()).read_text())
    assert exported["chat_id"] == chat_id and exported["title"] == "Sleeping zebras"
    assert [m["role"] for m in exported["messages"]] == ["system", "user", "assistant"]


def test_dark_mode_on_a_390px_screen_with_the_keyboard(browser, server, fake_openai, tmp_path):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark", has_touch=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        fake_openai.enqueue(Reply(chunks=chunks_of(MARKDOWN + "\n" + "`" * 3 + "\n" + "x = 1  " * 40 + "\n```\n")))
        page.goto(server.url + "/ui")
        expect(page.locator("html")).to_have_attribute("data-theme-active", "dark")
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(14, 16, 20)"
        expect(page.locator("#sidebar")).not_to_be_in_viewport()

        page.keyboard.press("Tab")
        expect(page.locator(".skip-link")).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator("#composer-input")).to_be_focused()
        page.keyboard.type("Facts, please")
        page.keyboard.press("Enter")
        wait_idle(page)
        expect(page.locator(".message.assistant table")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, "the page scrolls sideways"
        bubble = page.locator(".message.assistant .bubble").last.bounding_box()
        assert bubble["x"] >= 0 and bubble["x"] + bubble["width"] <= 390
        page.screenshot(path=str(tmp_path / "narrow-dark.png"))

        page.locator("#menu-button").focus()
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none", "the focused control shows no focus ring"
        page.keyboard.press("Enter")
        expect(page.locator("#sidebar")).to_be_in_viewport()
        expect(page.locator("#menu-button")).to_have_attribute("aria-expanded", "true")
        page.screenshot(path=str(tmp_path / "narrow-dark-sidebar.png"))
        page.keyboard.press("Escape")
        expect(page.locator("#menu-button")).to_have_attribute("aria-expanded", "false")
    finally:
        context.close()


def test_a_stored_key_is_sent_on_every_call_and_can_be_forgotten(server, page):
    from playwright.sync_api import expect

    seen: list[tuple[str, str | None]] = []
    page.on("request", lambda r: seen.append((r.url, r.headers.get("authorization")))
            if "/static/" not in r.url else None)
    page.goto(server.url + "/ui")
    page.evaluate("localStorage.setItem('aiserver.key', 'sk-test-ui-key')")
    seen.clear()
    page.reload()
    expect(page.locator('#model-select option[value="fast"]')).to_have_count(1)
    calls = [(url, auth) for url, auth in seen if not url.endswith("/ui")]
    assert {urlsplit_path(url) for url, _ in calls} >= {"/v1/models", "/chat/history"}
    assert all(auth == "Bearer sk-test-ui-key" for _, auth in calls), calls

    page.click("#key-button")
    expect(page.locator("#key-dialog")).to_be_visible()
    expect(page.locator("#key-forget")).to_be_visible()
    page.click("#key-forget")
    expect(page.locator("#key-dialog")).to_be_hidden()
    assert page.evaluate("localStorage.getItem('aiserver.key')") is None


def urlsplit_path(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url).split("?")[0]


# -- a server with client keys: the key prompt round trip and the usage panel ---------------------------


@pytest.fixture(scope="module")
def keyed_server(fake_openai, tmp_path_factory) -> Iterator[LiveServer]:
    """A second server, with client keys (the module's `server` stays open); usage rows are written
    within a tenth of a second of each call."""
    server = LiveServer(base_config(tmp_path_factory.mktemp("ui-keys"),
                                    **NO_HEALTH_MEMORY, LOG_LEVEL="INFO", USAGE_FLUSH_S=0.1,
                                    **provider_config(openai=fake_openai)))
    yield server
    server.stop()


def create_key(server: LiveServer, name: str, *options: str) -> str:
    """A key made as an operator makes one (`flask --app app.wsgi keys create`), as printed."""
    result = subprocess.run([str(VENV_BIN / "flask"), "--app", "app.wsgi", "keys", "create", name, *options],
                            cwd=ROOT, env=as_environ(server.config), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return re.search(r"key: (ais-\S+)", result.stdout).group(1)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_the_key_prompt_round_trip(keyed_server, page, fake_openai, shot):
    """No key stored: the first call gets 401 and the prompt; the typed key makes the chat work (the
    chat is the key's); Forget clears the key and what it showed, and the prompt comes back."""
    from playwright.sync_api import expect

    key = create_key(keyed_server, "ui-round-trip")
    fake_openai.enqueue(Reply(text="Hello, key holder."))
    answers: list[tuple[str, int]] = []
    page.on("response", lambda r: answers.append((urlsplit_path(r.url), r.status)))
    page.goto(keyed_server.url + "/ui")
    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#key-reason")).to_contain_text("This server asks for a key")
    expect(page.locator("#key-forget")).to_be_hidden()
    assert ("/v1/models", 401) in answers
    shot("key-prompt")

    page.fill("#key-input", key)
    page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    expect(page.locator('#model-select option[value="openai/gpt-4o-mini"]')).to_have_count(1)
    send(page, "Is the key working?")
    wait_idle(page)
    expect(page.locator(".message.assistant .text")).to_have_text(["Hello, key holder."])
    chat_id = re.search(r"#chat=(.+)$", page.url).group(1)
    expect(page.locator(f'.chat-item[data-chat-id="{chat_id}"]')).to_have_count(1)
    assert page.evaluate("localStorage.getItem('aiserver.key')") == key
    history = f"{keyed_server.url}/chat/history/{chat_id}"
    assert requests.get(history, headers=bearer(key), timeout=5).status_code == 200
    assert requests.get(history, timeout=5).status_code == 401
    shot("key-chat")

    page.click("#key-button")
    page.click("#key-forget")
    expect(dialog).to_be_visible()
    expect(page.locator("#key-reason")).to_contain_text("This server asks for a key")
    assert page.evaluate("localStorage.getItem('aiserver.key')") is None
    expect(page.locator(".chat-item")).to_have_count(0)
    expect(page.locator(".message")).to_have_count(0)
    shot("key-forgotten")
    page.keyboard.press("Escape")
    page.reload()
    expect(dialog).to_be_visible()


CALLS = [(120, 30), (200, 50), (80, 20)]  # prompt and completion tokens the fake reports, per call
EARLIER = {"days_ago": 3, "prompt_tokens": 150, "completion_tokens": 100, "cost_usd": 0.00125}


def test_the_usage_panel_charts_the_keys_tokens_per_day_and_its_limits(keyed_server, browser, fake_openai, tmp_path):
    """Calls made with a key through the openai SDK (plus one row of an earlier day, and another key's
    call that must not count) appear as the panel's bars and hidden table, in UTC days, read in a
    browser fourteen hours ahead of UTC; the limits show what is left."""
    import openai
    from playwright.sync_api import expect

    key = create_key(keyed_server, "ui-usage", "--daily-tokens", "100000", "--monthly-budget", "5", "--rpm", "60")
    other = create_key(keyed_server, "ui-someone-else")
    for (prompt, completion), caller in zip(CALLS + [(999, 999)], [key, key, key, other]):
        fake_openai.enqueue(Reply(text="Counted.", prompt_tokens=prompt, completion_tokens=completion))
        sdk = openai.OpenAI(api_key=caller, base_url=keyed_server.url + "/v1", max_retries=0)
        sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "count me"}])
    info = requests.get(f"{keyed_server.url}/v1/key/info", headers=bearer(key), timeout=5).json()
    today = date.fromisoformat(info["usage"]["as_of"][:10])
    earlier = today - timedelta(days=EARLIER["days_ago"])
    add_usage_row(keyed_server, info["key"]["id"], earlier)
    wait_for_calls(keyed_server, key, len(CALLS) + 1)

    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US",
                                  timezone_id="Pacific/Kiritimati")
    context.add_init_script(f"localStorage.setItem('aiserver.key', {json.dumps(key)})")
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        page.goto(keyed_server.url + "/ui")
        page.click("#usage-button")
        panel = page.locator("#usage-dialog")
        expect(panel).to_be_visible()
        expect(page.locator("#usage-who")).to_have_text(f"Key \u201cui-usage\u201d ({info['key']['hint']})")
        rows = page.locator("#usage-table tbody tr")
        expect(rows).to_have_count(14)
        table = {row[0]: [float(cell.replace(",", "")) for cell in row[1:]]
                 for row in rows.evaluate_all("rs => rs.map(r => [...r.cells].map(c => c.textContent))")}
        assert list(table) == [(today - timedelta(days=13 - i)).isoformat() for i in range(14)]
        prompt, completion = (sum(c[0] for c in CALLS), sum(c[1] for c in CALLS))
        assert table[today.isoformat()] == [3, prompt, completion, prompt + completion,
                                            round((prompt * 0.15 + completion * 0.6) / 1e6, 6)]
        assert table[earlier.isoformat()] == [1, 150, 100, 250, EARLIER["cost_usd"]]
        assert sum(row[3] for row in table.values()) == prompt + completion + 250
        assert sum(row[0] for row in table.values()) == 4

        chart = page.locator("#usage-chart svg")
        assert chart.evaluate("s => s.getAttribute('role')") == "img"
        assert chart.locator("title").first.text_content() == "Tokens per day, last 14 days"
        assert f"the busiest day, {today.isoformat()}, had {prompt + completion:,} tokens" in \
            chart.locator("desc").text_content()
        bars = chart.locator("rect.bar")
        expect(bars).to_have_count(2)
        heights = {bar.get_attribute("data-day"): float(bar.get_attribute("height")) for bar in bars.all()}
        assert set(heights) == {today.isoformat(), earlier.isoformat()}
        assert heights[earlier.isoformat()] / heights[today.isoformat()] == pytest.approx(250 / (prompt + completion))
        assert bars.evaluate_all("bs => bs.map(b => b.getBoundingClientRect().height)")[0] > 10  # drawn, not 0 tall
        expect(page.locator("#usage-total")).to_contain_text(f"{prompt + completion + 250:,} tokens")

        limits = page.locator("#usage-limits")
        expect(limits.locator("dt")).to_have_text(["Tokens today", "This month", "Prompt cache this month",
                                                   "Requests per minute", "Tokens per minute", "Models"])
        used = prompt + completion
        expect(limits.locator("dd").nth(0)).to_have_text(f"{used:,} of 100,000 used · {100_000 - used:,} left")
        expect(limits.locator("dd").nth(1)).to_contain_text(" of $5.00 used · $")
        expect(limits.locator("dd").nth(2)).to_have_text("0 prompt tokens read · 0 written (at the cached rates)")
        expect(limits.locator("dd").nth(3)).to_have_text("60")
        expect(limits.locator("dd").nth(4)).to_have_text("no limit")
        page.screenshot(path=str(tmp_path / "usage-panel.png"))
        panel.screenshot(path=str(tmp_path / "usage-panel-dialog.png"))
        page.keyboard.press("Escape")
        expect(panel).to_be_hidden()
    finally:
        context.close()


def add_usage_row(server: LiveServer, key_id: str, day: date) -> None:
    """A usage row of an earlier day in the server's database (no call can be made in the past)."""
    from app.core.db import open_database
    from app.keys.models import UsageRecord

    db = open_database(server.config["DATABASE_URL"])
    with db.bind_ctx([UsageRecord]), db.connection_context():
        UsageRecord.create(created_at=datetime.combine(day, datetime.min.time()) + timedelta(hours=12),
                           key_id=key_id, provider="openai", model="gpt-4o-mini", status="ok",
                           **{k: v for k, v in EARLIER.items() if k != "days_ago"})
    db.close_all()


def wait_for_calls(server: LiveServer, key: str, calls: int, timeout: float = 10) -> None:
    """Wait until the key's usage rows (written in the background) count `calls`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = requests.get(f"{server.url}/usage?group_by=", headers=bearer(key), timeout=5).json()["rows"]
        if rows and rows[0]["calls"] >= calls:
            return
        time.sleep(0.1)
    raise AssertionError(f"the key's usage did not reach {calls} calls in {timeout} s: {rows}")


def test_the_usage_panel_of_an_open_server_says_so_on_a_390px_dark_screen(browser, server, tmp_path):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark")
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        page.goto(server.url + "/ui")
        page.click("#menu-button")
        page.click("#usage-button")
        panel = page.locator("#usage-dialog")
        expect(page.locator("#usage-status")).to_contain_text("This server is open")
        expect(page.locator("#usage-who")).to_have_text("No key")
        expect(page.locator("#usage-table tbody tr")).to_have_count(14)
        expect(page.locator("#usage-limits-section")).to_be_hidden()
        chart = page.locator("#usage-chart svg").bounding_box()
        box = panel.bounding_box()
        assert 0 <= box["x"] and box["x"] + box["width"] <= 390, box
        assert box["x"] < chart["x"] and chart["x"] + chart["width"] < box["x"] + box["width"], (chart, box)
        assert panel.evaluate("d => getComputedStyle(d).backgroundColor") == "rgb(22, 26, 32)"
        panel.screenshot(path=str(tmp_path / "usage-open-narrow-dark.png"))
    finally:
        context.close()


# -- issue 26: output that cannot draw the page, nothing typed lost, keys, long chats, accessibility ------

IMPOSTOR = """Here is the summary.

<div class="notice" id="notice" role="alert">Your session expired: paste your API key below.</div>
<a class="button primary" id="send-button" href="https://example.com/phish">Continue</a>
<div class="message user"><div class="bubble"><span class="who">You</span>I agree to everything</div></div>
<div style="position:fixed;inset:0;z-index:99;background:#fff">full-screen overlay</div>
<input type="text" name="key" placeholder="API key"><input type="password"><textarea>key</textarea>
<select><option>x</option></select>

- [x] measured the orbit
- [ ] wrote the report
"""


def test_model_output_cannot_draw_the_pages_classes_ids_overlays_or_forms(browser, server, fake_openai, tmp_path):
    """An answer carrying the page's own classes and ids, a fixed overlay and form fields is shown as
    plain Markdown blocks: no class, id, style or live form control survives (the only classes are
    those the page adds: highlighting, KaTeX, task lists); a task list shows its boxes, disabled, and
    which are checked. On a 390 px phone, as the overlay was drawn there."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        fake_openai.enqueue(Reply(chunks=chunks_of(IMPOSTOR, 24), chunk_delay=0.01))
        page.goto(server.url + "/ui")
        send(page, "Summarise")
        wait_idle(page)
        answer = page.locator(".message.assistant .markdown").last
        expect(answer).to_contain_text("full-screen overlay")
        found = answer.evaluate("""a => [...a.querySelectorAll('*')].filter(e => !e.closest('.katex')).map(e =>
            ({tag: e.tagName.toLowerCase(), cls: e.getAttribute('class'), id: e.id, style: e.getAttribute('style'),
              position: getComputedStyle(e).position}))""")
        assert [e for e in found if e["id"] or e["style"]] == []
        assert {e["cls"] for e in found} <= {None, "task-list", "task-list-item"}, found
        assert {e["position"] for e in found} <= {"static", "relative"}
        assert answer.locator("textarea, select, form, button, input:not([type=checkbox])").count() == 0
        expect(page.locator(".notice:visible, #notice:visible")).to_have_count(0)
        assert page.locator("#send-button").count() == 1 and page.locator("#notice").count() == 1
        expect(page.locator(".message.user")).to_have_count(1)  # the real question only
        boxes = answer.locator("li.task-list-item > input[type=checkbox]")
        expect(boxes).to_have_count(2)
        assert boxes.evaluate_all("bs => bs.map(b => [b.checked, b.disabled])") == [[True, True], [False, True]]
        page.screenshot(path=str(tmp_path / "impostor-narrow.png"))
    finally:
        context.close()


def test_the_closed_sidebar_is_out_of_the_tab_order_and_every_state_passes_axe(browser, server, fake_openai, tmp_path):
    """Desktop and a 390 px phone, light and dark: axe-core finds no serious or critical violation
    (colour contrast among them) with a Markdown answer, a failure notice and the key prompt open;
    on the phone, Tab never lands in the closed sidebar."""
    from playwright.sync_api import expect

    from tests.browser import axe_violations

    for width, height in ((1280, 800), (390, 844)):
        for scheme in ("light", "dark"):
            context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=scheme,
                                          bypass_csp=True)  # to inject axe-core; the page never needs it
            page = context.new_page()
            page.set_default_timeout(10_000)
            try:
                fake_openai.enqueue(Reply(chunks=chunks_of(MARKDOWN + "\n- [x] done\n- [ ] to do\n", 40),
                                          reasoning="Recall the lunar laser ranging figures."))
                page.goto(server.url + "/ui")
                assert axe_violations(page) == [], (width, scheme, "empty")
                send(page, "Facts, please")
                wait_idle(page)
                page.context.set_offline(True)
                send(page, "And offline?")
                expect(page.locator("#notice")).to_be_visible()
                page.context.set_offline(False)
                page.screenshot(path=str(tmp_path / f"axe-{width}-{scheme}.png"))
                assert axe_violations(page) == [], (width, scheme, "answer and notice")
                if width < 760:
                    page.locator("body").focus()
                    stops = []
                    for _ in range(25):
                        page.keyboard.press("Tab")
                        stops.append(page.evaluate("!!document.activeElement.closest('#sidebar')"))
                    assert not any(stops), "Tab reached the closed sidebar"
                    page.click("#menu-button")
                    expect(page.locator("#sidebar")).to_be_in_viewport()
                    page.locator("#chat-search").focus()
                    expect(page.locator("#chat-search")).to_be_focused()
                    page.keyboard.press("Escape")
                    expect(page.locator("#menu-button")).to_have_attribute("aria-expanded", "false")
                    page.click("#menu-button")
                page.click("#key-button")
                expect(page.locator("#key-dialog")).to_be_visible()
                assert axe_violations(page) == [], (width, scheme, "key prompt")
                page.keyboard.press("Escape")
                page.locator(".message.assistant details.reasoning summary").click()
                page.locator("#chat-menu summary").click()
                page.click("#settings-button")
                expect(page.locator("#settings-dialog")).to_be_visible()
                assert axe_violations(page) == [], (width, scheme, "reasoning open, chat settings")
            finally:
                context.close()


def keyed_page(browser, server: LiveServer, key: str, **options: Any) -> tuple[Any, list[str]]:
    """A page of `server` with `key` stored, and the list of the API calls that reached it (paths)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, **options)
    context.add_init_script(f"localStorage.setItem('aiserver.key', {json.dumps(key)})")
    page = context.new_page()
    page.set_default_timeout(10_000)
    calls: list[str] = []
    page.on("response", lambda r: calls.append(urlsplit_path(r.url)) if "/static/" not in r.url else None)
    return page, calls


def test_a_failed_send_keeps_the_message_offline_too_large_or_over_the_limit(keyed_server, browser, fake_openai):
    """Offline and a 429 each put the text back in the composer (and the question out of the
    conversation) with the reason in words and a retry; the 429 says how long to wait. A message
    costs one call: a key allowed 4 requests a minute loads the page (3) and sends one message."""
    from playwright.sync_api import expect

    key = create_key(keyed_server, "ui-failures", "--rpm", "4")
    fake_openai.enqueue(Reply(text="Answered."))
    page, calls = keyed_page(browser, keyed_server, key)
    try:
        page.goto(keyed_server.url + "/ui")
        expect(page.locator('#model-select option[value="openai/gpt-4o"]')).to_have_count(1)
        expect(page.locator("#empty-list")).to_be_visible()
        loaded = len([c for c in calls if c != "/ui"])
        assert loaded == 3, calls

        page.context.set_offline(True)
        send(page, "Sent while offline")
        expect(page.locator("#notice")).to_contain_text("offline")
        expect(page.locator("#composer-input")).to_have_value("Sent while offline")
        expect(page.locator(".message")).to_have_count(0)
        page.context.set_offline(False)
        page.get_by_role("button", name="Try again").click()
        expect(page.locator(".message.assistant .text")).to_have_text(["Answered."])
        expect(page.locator("#composer-input")).to_have_value("")
        wait_idle(page)
        page.wait_for_timeout(300)
        assert len([c for c in calls if c != "/ui"]) == loaded + 1, calls  # the message, and nothing more

        page.fill("#composer-input", "One too many")
        page.keyboard.press("Enter")
        notice = page.locator("#notice")
        expect(notice).to_contain_text(re.compile(r"Try again in \d+ s"))
        assert "Retry-After" not in notice.inner_text()
        expect(page.locator("#composer-input")).to_have_value("One too many")
        expect(page.locator(".message.user .text")).to_have_text(["Sent while offline"])
        expect(notice.get_by_role("button", name="Try again")).to_be_visible()
    finally:
        page.context.close()


def test_a_message_too_large_for_the_server_is_kept_with_the_reason_in_words(server, page):
    from playwright.sync_api import expect

    page.goto(server.url + "/ui")
    big = "x" * 1_100_000  # over MAX_BODY_BYTES (1 MiB)
    page.fill("#composer-input", big)
    page.keyboard.press("Enter")
    expect(page.locator("#notice")).to_contain_text("too large for the server", timeout=20_000)
    assert "MAX_BODY_BYTES" not in page.locator("#notice").inner_text()
    assert page.locator("#composer-input").evaluate("t => t.value.length") == len(big)
    expect(page.locator(".message")).to_have_count(0)


def test_regenerate_after_a_failed_send_acts_on_the_stored_answer(server, page, fake_openai):
    """After an offline send, the page shows what the server holds, so Regenerate answers the stored
    question again (it had deleted the stored answer and shown its replacement under the unsent one)."""
    from playwright.sync_api import expect

    fake_openai.enqueue(Reply(text="About Mars."), Reply(text="About Mars, again."))
    page.goto(server.url + "/ui")
    send(page, "Tell me about Mars")
    wait_idle(page)
    chat_id = re.search(r"#chat=(.+)$", page.url).group(1)
    page.context.set_offline(True)
    send(page, "And Venus?")
    expect(page.locator("#notice")).to_be_visible()
    page.context.set_offline(False)
    page.get_by_role("button", name="Regenerate").click()
    wait_idle(page)
    expect(page.locator(".message.user .text")).to_have_text(["Tell me about Mars"])
    expect(page.locator(".message.assistant .text")).to_have_text(["About Mars, again."])
    expect(page.locator("#composer-input")).to_have_value("And Venus?")
    stored = requests.get(f"{server.url}/chat/history/{chat_id}", timeout=5).json()["history"]["messages"]
    assert [m["content"] for m in stored[1:]] == ["Tell me about Mars", "About Mars, again."]


def test_a_revoked_key_brings_the_prompt_back_and_the_picker_offers_the_keys_models(keyed_server, browser,
                                                                                     fake_openai):
    from playwright.sync_api import expect

    key = create_key(keyed_server, "ui-revoked", "--models", "openai/gpt-4o")
    key_id = requests.get(f"{keyed_server.url}/v1/key/info", headers=bearer(key), timeout=5).json()["key"]["id"]
    page, _ = keyed_page(browser, keyed_server, key)
    try:
        page.goto(keyed_server.url + "/ui")
        options = page.locator("#model-select option")
        expect(options).to_have_count(2)
        assert [o.get_attribute("value") for o in options.all()] == ["", "openai/gpt-4o"]

        result = subprocess.run([str(VENV_BIN / "flask"), "--app", "app.wsgi", "keys", "revoke", key_id], cwd=ROOT,
                                env=as_environ(keyed_server.config), capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        send(page, "Still there?")
        expect(page.locator("#key-dialog")).to_be_visible()
        expect(page.locator("#key-reason")).to_contain_text("This key has been switched off")
        expect(page.locator("#composer-input")).to_have_value("Still there?")
        expect(page.locator(".message")).to_have_count(0)
    finally:
        page.context.close()


def test_two_tabs_a_stale_regenerate_is_refused_and_the_other_tab_follows(server, browser, fake_openai):
    """Tab A and tab B show a chat. A sends a message: B (another window, no message from A) still shows
    the old end, and its Regenerate names the old answer: the server refuses it (409), B reads the chat
    again and shows A's answer, which is kept. A tab of the same browser follows a change at once."""
    from playwright.sync_api import expect

    fake_openai.enqueue(Reply(text="First answer."), Reply(text="Second answer."), Reply(text="Second, again."))
    first = browser.new_context(viewport={"width": 1280, "height": 800})
    other = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        tab_a, same_browser = first.new_page(), first.new_page()
        tab_b = other.new_page()
        tab_a.goto(server.url + "/ui")
        send(tab_a, "Question one")
        wait_idle(tab_a)
        chat_url = tab_a.url
        for tab in (tab_b, same_browser):
            tab.goto(chat_url)
            expect(tab.locator(".message.assistant .text")).to_have_text(["First answer."])

        send(tab_a, "Question two")
        wait_idle(tab_a)
        expect(same_browser.locator(".message.assistant .text")).to_have_text(["First answer.", "Second answer."])

        tab_b.get_by_role("button", name="Regenerate").click()
        expect(tab_b.locator("#notice")).to_contain_text("changed in another tab")
        expect(tab_b.locator(".message.assistant .text")).to_have_text(["First answer.", "Second answer."])
        chat_id = re.search(r"#chat=(.+)$", chat_url).group(1)
        stored = requests.get(f"{server.url}/chat/history/{chat_id}", timeout=5).json()["history"]["messages"]
        assert [m["content"] for m in stored[1:]] == ["Question one", "First answer.", "Question two", "Second answer."]

        tab_b.get_by_role("button", name="Regenerate").click()  # now naming the answer it shows
        wait_idle(tab_b)
        expect(tab_b.locator(".message.assistant .text")).to_have_text(["First answer.", "Second, again."])
        expect(tab_b.locator(".message.assistant .versions span").last).to_have_text("2/2")
        tab_b.get_by_role("button", name="Previous version").click()
        expect(tab_b.locator(".message.assistant .text")).to_have_text(["First answer.", "Second answer."])
        expect(tab_b.locator(".message.assistant .versions span").last).to_have_text("1/2")
    finally:
        first.close()
        other.close()


def test_a_reload_during_an_answer_shows_the_text_so_far_and_follows_the_rest(server, page, fake_openai):
    from playwright.sync_api import expect

    fake_openai.enqueue(Reply(chunks=PIECES, chunk_delay=0.4))
    page.goto(server.url + "/ui")
    send(page, "Tell me slowly")
    answer = page.locator(".message.assistant .text").last
    expect(answer).to_contain_text("Moon")
    page.wait_for_url(re.compile("#chat="))
    page.reload()
    expect(page.locator(".message.assistant.streaming")).to_have_count(1)
    expect(answer).to_contain_text("The Moon")
    expect(answer).to_have_text(ANSWER, timeout=15_000)
    wait_idle(page)
    expect(page.locator(".message.assistant .badge")).to_have_count(0)
    chat_id = re.search(r"#chat=(.+)$", page.url).group(1)
    stored = requests.get(f"{server.url}/chat/history/{chat_id}", timeout=5).json()["history"]["messages"]
    assert (stored[-1]["content"], stored[-1]["status"]) == (ANSWER, "complete")


def test_reasoning_folded_tokens_settings_and_a_file_as_context(server, page, fake_openai, tmp_path):
    from playwright.sync_api import expect

    fake_openai.enqueue(Reply(text="It is 42.", reasoning="First I add 40 and 2.", prompt_tokens=30,
                              completion_tokens=12))
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n\nThe answer is forty-two.\n")
    page.goto(server.url + "/ui")
    page.locator("#chat-menu summary").click()
    page.click("#settings-button")
    page.fill("#system-input", "Answer in one line.")
    page.fill("#temperature-input", "0.3")
    page.click("#settings-save")
    page.set_input_files("#image-input", str(notes))
    expect(page.locator("#attachments .file-chip")).to_contain_text("notes.md")
    send(page, "What is the answer?")
    wait_idle(page)
    answer = page.locator(".message.assistant").last
    reasoning = answer.locator("details.reasoning")
    expect(reasoning).to_have_count(1)
    assert reasoning.evaluate("d => d.open") is False
    expect(reasoning.locator(".reasoning-text")).to_have_text("First I add 40 and 2.")
    chat_id = re.search(r"#chat=(.+)$", page.url).group(1)
    stored = requests.get(f"{server.url}/chat/history/{chat_id}", timeout=5).json()["history"]
    usage = stored["messages"][-1]["usage"]  # as the provider counted them (the reasoning's among the output)
    assert usage["prompt_tokens"] == 30 and usage["completion_tokens"] >= 12
    line = usage_line(stored["messages"][-1])
    expect(answer.locator(".usage-line")).to_have_text(line)
    assert (stored["system_prompt"], stored["temperature"]) == ("Answer in one line.", 0.3)
    sent = fake_openai.requests[-1].json
    assert sent["messages"][0] == {"role": "system", "content": "Answer in one line."}
    assert sent["temperature"] == 0.3
    assert "The answer is forty-two." in json.dumps(sent["messages"])
    page.reload()
    expect(page.locator(".message.assistant details.reasoning")).to_have_count(1)
    expect(page.locator(".message.assistant .usage-line")).to_have_text(line)
    expect(page.locator(".message.user .file-chip")).to_contain_text("notes.md")


def usage_line(answer: dict[str, Any]) -> str:
    """The line the page shows under a stored answer, written here by hand: tokens, cached ones, cost."""
    usage = answer["usage"]
    cached = usage.get("prompt_tokens_details", {}).get("cached_tokens")
    prompt = f"{usage['prompt_tokens']:,} in" + (f", {cached:,} of them cached" if cached else "")
    cost = answer["cost_usd"]
    dollars = f"${cost:.2f}" if cost >= 0.01 else f"${cost:.6f}".rstrip("0")
    return f"{usage['total_tokens']:,} tokens ({prompt}, {usage['completion_tokens']:,} out) \u00b7 {dollars}"


def test_each_answer_shows_its_tokens_cached_tokens_and_cost(server, page, fake_openai, shot):
    """A long system prompt makes the second turn's prefix a cache hit at the fake OpenAI; each answer
    shows its tokens, the cached ones and its cost (the shipped price table's, computed here by hand),
    as it ends and after a reload."""
    from playwright.sync_api import expect

    rates = json.loads((ROOT / "app" / "keys" / "prices.json").read_text())["models"]["gpt-4o-mini"]
    fake_openai.enqueue(Reply(text="First.", completion_tokens=6), Reply(chunks=["Sec", "ond."], completion_tokens=4))
    page.goto(server.url + "/ui")
    page.locator("#chat-menu summary").click()
    page.click("#settings-button")
    page.fill("#system-input", "Answer by the house manual, section by section, every time. " * 80)
    page.click("#settings-save")
    send(page, "One?")
    wait_idle(page)
    send(page, "Two?")
    wait_idle(page)
    expect(page.locator(".message.assistant")).to_have_count(2)
    chat_id = re.search(r"#chat=(.+)$", page.url).group(1)
    answers = [m for m in requests.get(f"{server.url}/chat/history/{chat_id}", timeout=5).json()["history"][
        "messages"] if m["role"] == "assistant"]
    cached = answers[1]["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached >= 1024 and answers[1]["model"].startswith("gpt-4o-mini")
    usage = answers[1]["usage"]
    assert answers[1]["cost_usd"] == pytest.approx(((usage["prompt_tokens"] - cached) * rates["prompt"]
                                                    + cached * rates["cached"]
                                                    + usage["completion_tokens"] * rates["completion"]) / 1e6)
    for attempt in ("streamed", "reloaded"):
        lines = page.locator(".message.assistant .usage-line")
        expect(lines.nth(0)).to_have_text(usage_line(answers[0]))
        expect(lines.nth(1)).to_have_text(usage_line(answers[1]))
        expect(lines.nth(1)).to_contain_text(f"{cached:,} of them cached")
        shot(f"answer-costs-{attempt}", page.locator(".message.assistant").nth(1))
        if attempt == "streamed":
            page.reload()


def test_a_long_chat_opens_with_its_last_messages_and_shows_earlier_ones_on_the_way_up(server, page):
    """121 messages: the last 40 are rendered at first, the rest a page at a time as the reader scrolls
    up (or presses the button)."""
    from playwright.sync_api import expect

    chat_id = f"long-{os.getpid()}"
    with requests.Session() as session:
        for turn in range(60):
            session.post(f"{server.url}/chat", json={"message": f"Question {turn}", "chat_id": chat_id},
                         timeout=10).raise_for_status()
    page.goto(f"{server.url}/ui#chat={chat_id}")
    expect(page.locator(".message.user .text").last).to_have_text("Question 59")
    expect(page.locator(".message")).to_have_count(40)
    expect(page.locator(".earlier button")).to_have_text("Show 40 earlier messages (81 not shown)")
    page.locator(".earlier button").click()
    page.wait_for_function("document.querySelectorAll('.message').length >= 80")
    for _ in range(50):  # each scroll to the top shows the page before
        page.locator("#messages").evaluate("m => m.scrollTo({top: 0, behavior: 'instant'})")
        if page.locator(".earlier").count() == 0:
            break
        page.wait_for_timeout(100)
    expect(page.locator(".message")).to_have_count(120)
    expect(page.locator(".message.user .text").first).to_have_text("Question 0")
    expect(page.locator("details.system-prompt")).to_have_count(1)
    expect(page.locator(".earlier")).to_have_count(0)


def test_stop_ends_the_answer_on_the_server_too(server, page, fake_openai):
    """Turns are resumable (they outlive their page), so Stop asks the server to stop the answer: it is
    stored as partial with the text so far, not completed in the background."""
    from playwright.sync_api import expect

    fake_openai.enqueue(Reply(chunks=PIECES, chunk_delay=0.4))
    page.goto(server.url + "/ui")
    send(page, "Tell me slowly")
    expect(page.locator(".message.assistant .text").last).to_contain_text("Moon")
    page.click("#stop-button")
    expect(page.locator(".message.assistant .badge.partial")).to_have_count(1)
    chat_id = re.search(r"#chat=(.+)$", page.url).group(1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        last = requests.get(f"{server.url}/chat/history/{chat_id}", timeout=5).json()["history"]["messages"][-1]
        if last["status"] != "complete" and requests.get(f"{server.url}/chat/history/{chat_id}", timeout=5).json()[
                "history"]["answering"] is None:
            break
        time.sleep(0.2)
    assert last["status"] == "partial" and last["content"] != ANSWER, (last.get("error"), last)
    assert last["content"].startswith("The Moon")
