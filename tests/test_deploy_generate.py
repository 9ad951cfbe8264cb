"""The generating stage's pure parts: the prompt, the file set's validation, README and LICENSE."""
from __future__ import annotations

import base64
import json

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
    repo_files,
)
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
