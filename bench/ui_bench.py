"""The /ui page in Chromium: main-thread work while a 50,000-character answer streams, and to open a
1,000-message chat.

    .venv/bin/python bench/ui_bench.py                 # both, against a fake OpenAI on loopback
    .venv/bin/python bench/ui_bench.py --chars 20000 --messages 400

It starts the fake vendor (tests/fakes/openai_api.py) and `gunicorn -k gevent` (tests/conftest.py's
LiveServer), drives Debian's Chromium with Playwright, and reads two figures per scenario:

  * long tasks   count and total duration of the tasks over 50 ms (PerformanceObserver "longtask")
  * main thread  Chromium's TaskDuration (CDP Performance.getMetrics): all the renderer's main-thread
                 work in the scenario, long or not

Streaming: one answer of --chars characters of Markdown (headings, paragraphs, lists, code) in pieces
of 25 characters, timed from Enter to the end of the answer. Opening: a chat of --messages messages
(stored through POST /chat), opened from the sidebar, timed until its last answer is shown. It is a
script, never a test: the figures depend on the machine. docs/ui.md has the last run's.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import launch_chromium  # noqa: E402
from tests.conftest import NO_HEALTH_MEMORY, LiveServer, base_config, provider_config  # noqa: E402
from tests.fakes.openai_api import FakeOpenAI  # noqa: E402
from tests.fakes.server import Reply  # noqa: E402

LONG_TASKS = """window.__long = [];
new PerformanceObserver(list => { for (const e of list.getEntries()) window.__long.push(e.duration); })
  .observe({type: "longtask", buffered: true});"""
SECTION = """## Section {n}

The orbit of a moon changes slowly: tides move angular momentum from the planet's spin to the moon.
Over a **billion years** that adds up to `thousands of kilometres`, as [the survey](https://example.com) shows.

- measured by laser ranging
- checked against eclipse records

```python
def recede(years, rate=3.8):
    return rate * years  # centimetres
```

"""


def markdown(chars: int) -> str:
    text, n = "", 0
    while len(text) < chars:
        text += SECTION.format(n=n)
        n += 1
    return text[:chars]


class Probe:
    """Long tasks and main-thread time of one page, between `start` and `stop`."""

    def __init__(self, page: Any):
        self.page = page
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("Performance.enable")

    def task_seconds(self) -> float:
        metrics = {m["name"]: m["value"] for m in self.cdp.send("Performance.getMetrics")["metrics"]}
        return metrics["TaskDuration"]

    def start(self) -> None:
        self.page.evaluate("window.__long = []")
        self.began = self.task_seconds()
        self.clock = time.monotonic()

    def stop(self) -> dict[str, float]:
        long = self.page.evaluate("window.__long")
        return {"long_tasks": len(long), "long_ms": round(sum(long)), "longest_ms": round(max(long, default=0)),
                "main_thread_ms": round((self.task_seconds() - self.began) * 1000),
                "wall_ms": round((time.monotonic() - self.clock) * 1000)}


def streamed_answer(browser: Any, server: LiveServer, fake: FakeOpenAI, chars: int) -> dict[str, float]:
    text = markdown(chars)
    fake.enqueue(Reply(chunks=[text[i:i + 25] for i in range(0, len(text), 25)], chunk_delay=0.002))
    page = new_page(browser)
    page.goto(server.url + "/ui")
    page.wait_for_selector('#model-select option[value="openai/gpt-4o-mini"]', state="attached")
    probe = Probe(page)
    page.fill("#composer-input", "Write a long answer")
    probe.start()
    page.keyboard.press("Enter")
    page.wait_for_selector(".message.assistant:not(.streaming)", timeout=300_000)
    figures = probe.stop()
    shown = page.locator(".message.assistant .markdown h2").count()
    page.context.close()
    return {**figures, "sections_shown": shown}


def opened_chat(browser: Any, server: LiveServer, fake: FakeOpenAI, messages: int) -> dict[str, float]:
    chat_id = "bench-long-chat"
    session = requests.Session()
    for turn in range(messages // 2):
        fake.enqueue(Reply(text=SECTION.format(n=turn)))
        session.post(server.url + "/chat", json={"message": f"Question {turn}?", "chat_id": chat_id},
                     timeout=30).raise_for_status()
    page = new_page(browser)
    page.goto(server.url + "/ui")
    item = page.locator(f'.chat-item[data-chat-id="{chat_id}"] .chat-open')
    item.wait_for()
    probe = Probe(page)
    probe.start()
    item.click()
    # Polled every 50 ms, not on every animation frame (Playwright's default): the probe's own script
    # would otherwise run in the main thread it measures.
    page.wait_for_function("document.querySelector('.message.assistant:last-child h2')?.textContent === "
                           f"'Section {messages // 2 - 1}'", polling=50)
    page.evaluate("new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)))")  # its layout and paint
    figures = probe.stop()
    rendered = page.locator(".message").count()
    nodes = page.evaluate("document.getElementsByTagName('*').length")
    page.context.close()
    return {**figures, "messages_rendered": rendered, "nodes_in_page": nodes}


def new_page(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)  # for the probes only
    context.add_init_script(LONG_TASKS)
    return context.new_page()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chars", type=int, default=50_000)
    parser.add_argument("--messages", type=int, default=1_000)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with FakeOpenAI() as fake, tempfile.TemporaryDirectory() as work:
        config = base_config(Path(work), **NO_HEALTH_MEMORY, LOG_LEVEL="INFO", **provider_config(openai=fake))
        server = LiveServer(config)
        try:
            with sync_playwright() as playwright:
                browser = launch_chromium(playwright)
                streamed = streamed_answer(browser, server, fake, args.chars)
                print(f"streamed answer, {args.chars:,} characters:", streamed)
                print(f"open a chat of {args.messages:,} messages:", opened_chat(browser, server, fake, args.messages))
                browser.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
