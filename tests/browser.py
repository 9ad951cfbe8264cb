"""What the browser tests share: Debian's Chromium driven by Playwright, and axe-core's audit.

axe-core comes from npm with the client matrix's Node packages (tests/clients, `make test` runs
`npm ci` there); it is injected into the page under test, never served by the application.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
AXE_SCRIPT = Path(__file__).parent / "clients" / "node_modules" / "axe-core" / "axe.min.js"
SERIOUS = ("serious", "critical")

needs_chromium = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                    reason="Chromium is not installed: bash scripts/install-test-deps")


def launch_chromium(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def axe_violations(page: Any, impacts: tuple[str, ...] = SERIOUS, selector: str | None = None) -> list[dict]:
    """axe-core's WCAG 2 A/AA violations of these impacts on the page as it is now, each with the
    nodes it names (an empty list is a pass)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=AXE_SCRIPT.read_text())
    result = page.evaluate(
        """async (selector) => await axe.run(selector ? document.querySelector(selector) : document,
               {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})""", selector)
    return [{"id": item["id"], "impact": item["impact"], "help": item["help"],
             "nodes": [node["target"] for node in item["nodes"]][:10]}
            for item in result["violations"] if item["impact"] in impacts]
