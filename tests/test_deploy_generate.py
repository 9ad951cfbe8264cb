"""The generating stage's pure parts: the prompt, the file set's validation, the pages' SEO and
accessibility basics, README and LICENSE."""
from __future__ import annotations

import base64
import json
from html.parser import HTMLParser

import pytest

from app.core.schemas import decode_data_uri
from app.deployments.generate import (
    Attachment,
    Brief,
    InvalidFileSet,
    Limits,
    build_request,
    find_secret,
    load_attachments,
    mit_license,
    parse_file_set,
    readme,
    repo_files,
)
from app.deployments.page_basics import complete_page, complete_pages
from tests.fakes.deploy_stack import file_set

LIMITS = Limits(max_files=5, max_file_bytes=1000)
PNG = b"\x89PNG\r\n\x1a\nrest"


def answer(files: dict[str, str], **extra) -> str:
    return json.dumps({"files": [{"path": p, "content": c} for p, c in files.items()], "title": "T",
                       "summary": "S", "usage": "U", "code_explanation": "C", **extra})


def test_a_valid_file_set():
    parsed = parse_file_set(json.dumps(file_set("Demo", "hello")), LIMITS)
    assert sorted(parsed.files) == ["app.js", "index.html", "style.css"] and parsed.title == "Demo"


def test_fenced_json_and_prose_around_it_are_tolerated():
    text = answer({"index.html": "<p>x</p>"})
    assert parse_file_set(f"Here you go:\n```json\n{text}\n```\nEnjoy!", LIMITS).files == {"index.html": "<p>x</p>"}
    assert parse_file_set(f"Sure. {text}", LIMITS).files == {"index.html": "<p>x</p>"}


def test_our_license_and_readme_replace_the_models():
    parsed = parse_file_set(answer({"index.html": "x", "LICENSE": "GPL", "README.md": "# mine"}), LIMITS)
    assert list(parsed.files) == ["index.html"]


@pytest.mark.parametrize("text, message", [
    ("I cannot do that.", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    (json.dumps({"files": []}), "does not match the schema"),
    (json.dumps({"files": [{"path": "index.html"}], "summary": "s"}), "files.0.content"),
    (answer({"app.js": "1"}), "index.html is missing"),
    (answer({"index.html": "1", "../up.js": "1"}), "may not contain '..'"),
    (answer({"index.html": "1", "/etc/passwd": "1"}), "must be relative"),
    (answer({"index.html": "1", "a\\b.js": "1"}), "must be relative"),
    (answer({"index.html": "1", "C:/x.js": "1"}), "must be relative"),
    (answer({"index.html": "1", ".git/config": "1"}), "not allowed"),
    (answer({"index.html": "1", "a//b.js": "1"}), "empty segments"),
    (answer({f"f{i}.js": "1" for i in range(6)} | {"index.html": "1"}), "at most 5 are allowed"),
    (answer({"index.html": "x" * 1001}), "1001 bytes"),
    (answer({"index.html": "const key = 'sk-proj-abcdefghijklmnopqrstuvwxyz012345';"}), "looks like a secret"),
    (answer({"index.html": "token: ghp_abcdefghijklmnopqrstuvwxyz0123456789"}), "looks like a secret"),
    (answer({"LICENSE": "x"}), "no files besides"),
])
def test_invalid_file_sets_say_what_is_wrong(text, message):
    with pytest.raises(InvalidFileSet) as caught:
        parse_file_set(text, LIMITS)
    assert message in caught.value.message


def test_configured_secrets_are_refused_and_a_revision_need_not_resend_index():
    with pytest.raises(InvalidFileSet, match="secret"):
        parse_file_set(answer({"index.html": "pw = 'hunter2-but-long'"}), LIMITS, secrets=["hunter2-but-long"])
    assert parse_file_set(answer({"app.js": "1"}), LIMITS, existing=["index.html"]).files == {"app.js": "1"}
    assert find_secret({"a": b"\x00\xff binary"}, ["short"]) is None


def test_the_prompt_carries_brief_checks_attachments_and_images_for_vision_models():
    brief = Brief("captcha", 1, "Solve the captcha.", ["Page shows the image", {"js": "document.title"}],
                  [Attachment("sample.png", "image/png", PNG), Attachment("words.txt", "text/plain", b"alpha beta")])
    request = build_request(brief, vision=True, max_tokens=1234)
    system, user = request.messages
    assert system["role"] == "system" and "index.html" in system["content"]
    text = user["content"][0]["text"]
    for expected in ("Task: captcha", "Round: 1", "Solve the captcha.", "- Page shows the image",
                     '- {"js": "document.title"}', "sample.png (image/png, 12 bytes)", "alpha beta"):
        assert expected in text
    assert user["content"][2] == {"type": "image", "media_type": "image/png", "data": base64.b64encode(PNG).decode()}
    assert request.json_schema["name"] == "static_app" and request.max_tokens == 1234

    blind = build_request(brief, vision=False, feedback="index.html is missing")
    assert isinstance(blind.messages[1]["content"], str)  # no image part for a text-only model
    assert "index.html is missing" in blind.messages[-1]["content"]


def test_a_revision_prompt_shows_the_current_text_files():
    current = {"index.html": b"<p>old</p>", "logo.png": b"\x89PNG\x00\x00", "README.md": b"# ours"}
    text = build_request(Brief("t", 2, "Add a footer.", [], [], current), vision=True).messages[1]["content"]
    assert "This is a revision" in text and "=== index.html ===\n<p>old</p>" in text
    assert "=== logo.png (6 bytes, not shown) ===" in text and "# ours" not in text


def test_repo_files_have_readme_license_and_attachments():
    parsed = parse_file_set(json.dumps(file_set("Demo", "hi")), LIMITS)
    files = repo_files(parsed, [Attachment("data/in.png", "image/png", PNG)], task="demo", owner="octo",
                       repo="demo-1", repo_url="https://github.com/octo/demo-1",
                       pages_url="https://octo.github.io/demo-1/", year=2025)
    assert files["data/in.png"] == PNG
    readme = files["README.md"].decode()
    for part in ("# Demo", "Demo: a small static web app.", "**Live demo:** https://octo.github.io/demo-1/",
                 "## Setup", "git clone https://github.com/octo/demo-1.git", "## Usage", "## Code explanation",
                 "| `data/in.png` | Image |", "## License", "MIT License"):
        assert part in readme
    assert files["LICENSE"].decode() == mit_license("octo", 2025)
    assert "Copyright (c) 2025 octo" in files["LICENSE"].decode()


def test_data_uris_decode():
    assert decode_data_uri("data:image/png;base64," + base64.b64encode(PNG).decode()) == ("image/png", PNG)
    assert decode_data_uri("data:,Hello%2C%20World") == ("text/plain", b"Hello, World")
    assert decode_data_uri("data:text/csv;charset=utf-8,a%2Cb") == ("text/csv", b"a,b")
    with pytest.raises(ValueError):
        decode_data_uri("data:image/png;base64,***")
    attachments = load_attachments([{"name": "a.txt", "url": "data:text/plain;base64,aGk="}])
    assert attachments == [Attachment("a.txt", "text/plain", b"hi")] and attachments[0].text == "hi"


# -- the pages' SEO and accessibility basics -----------------------------------------------------------------


class Tags(HTMLParser):
    """Every start tag of a page as (tag, attributes), and the title text: what a crawler reads."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.title, self._in_title = "", False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data

    def first(self, tag: str) -> dict[str, str | None]:
        return next(attrs for name, attrs in self.tags if name == tag)

    def meta(self, key: str) -> list[str | None]:
        return [a.get("content") for t, a in self.tags
                if t == "meta" and key in ((a.get("name") or "").lower(), a.get("property"))]


BARE_PAGE = """<!doctype html>
<html>
<head><meta charset="utf-8"><link rel="stylesheet" href="style.css"></head>
<body>
<IMG SRC="images/red-panda_2.png" class=hero><img alt="" src="divider.svg"><img src='data:image/png;base64,AAAA'/>
<script>const html = '<img src="in-a-string.png">';</script>
</body>
</html>
"""
BRIEF = "Build a weather card that shows today's forecast for the city given in ?city=, with the date.\n" * 3


def test_a_page_missing_the_basics_gets_each_of_them():
    page = Tags(complete_page(BARE_PAGE, title='Weather & "Co"', description=BRIEF))
    assert page.first("html") == {"lang": "en"}
    assert page.title == 'Weather & "Co"'
    description = page.meta("description")[0]
    assert description.startswith("Build a weather card that shows today's forecast") and "\n" not in description
    assert len(description) <= 160 and description.endswith("…")
    assert page.meta("viewport") == ["width=device-width, initial-scale=1"]
    assert page.meta("og:title") == ['Weather & "Co"'] and page.meta("og:description") == [description]
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    assert [i.get("alt") for i in images] == ["Red panda 2", "", "Image"]  # alt="" (decorative) is kept
    assert images[0]["class"] == "hero"


def test_only_what_is_missing_is_added_and_the_rest_is_left_byte_for_byte():
    done = complete_page(BARE_PAGE, title="T", description="D")
    assert complete_page(done, title="Other", description="Other") == done
    assert "<script>const html = '<img src=\"in-a-string.png\">';</script>" in done  # script text is no markup
    assert '<meta charset="utf-8"><link rel="stylesheet" href="style.css">' in done


@pytest.mark.parametrize("head", [
    """<HTML LANG='de'><HEAD><TITLE>Wetter</TITLE><META CONTENT="Das Wetter." NAME="Description">""",
    """<html data-x="a>b" lang=de><head><title>Wetter</title><meta name=description content='Das Wetter.'>""",
])
def test_the_pages_own_title_and_description_win_whatever_the_attribute_order_quotes_or_case(head):
    page = Tags(complete_page(f"<!DOCTYPE html>{head}</head><body><svg><title>icon</title></svg></body></html>",
                              title="From the file set", description="From the brief"))
    assert page.first("html")["lang"] == "de" and page.title.startswith("Wetter")
    assert page.meta("description") == ["Das Wetter."] and page.meta("og:description") == ["Das Wetter."]
    assert page.meta("og:title") == ["Wetter"] and page.meta("viewport")


@pytest.mark.parametrize("page", ["<p>Just a fragment</p>", "<html><title> </title><body>x</body></html>"])
def test_a_page_without_html_head_or_title_text_still_gets_them(page):
    tags = Tags(complete_page(page, title="App", description="An app."))
    assert tags.first("html")["lang"] == "en" and tags.title.strip() == "App"
    assert tags.meta("description") == ["An app."] and tags.meta("og:title") == ["App"]


def test_every_html_file_of_a_set_is_completed_and_nothing_else():
    files = complete_pages({"index.html": "<p>a</p>", "about/index.htm": "<p>b</p>", "app.js": "'<p>'"},
                           title="App", description="An app.")
    assert all(Tags(files[p]).meta("viewport") for p in ("index.html", "about/index.htm"))
    assert files["app.js"] == "'<p>'"


@pytest.mark.parametrize("usage, explanation", [("", ""), ("Click **Go**.", "`app.js` fetches the forecast.")])
def test_the_readme_always_has_its_usage_code_explanation_and_license_sections(usage, explanation):
    parsed = parse_file_set(answer({"index.html": "<p>x</p>"}, usage=usage, code_explanation=explanation), LIMITS)
    text = readme(parsed, task="t", repo="r", repo_url=None, pages_url=None, paths=["index.html"])
    sections = {}
    for block in text.split("\n## ")[1:]:
        name, _, body = block.partition("\n")
        sections[name] = body.strip()
    assert {"Usage", "Code explanation", "License"} <= set(sections) and all(sections.values())
    assert (usage or "Open `index.html`") in sections["Usage"]
    assert (explanation or "The app starts from `index.html`.") in sections["Code explanation"]
    assert "MIT License" in sections["License"] and "[LICENSE](LICENSE)" in sections["License"]
