"""The generating stage: from a brief, its checks and attachments (and, from round 2, the repo's
current files) to a validated file set, plus the LICENSE and README.md every repo gets.

The LLM answers a structured file set (`FILE_SET_JSON_SCHEMA`): the app's files and the text of the
README's sections. `parse_file_set` checks it with `FileSetSchema` and the limits (relative paths
only, no `..`, at most `max_files` files of at most `max_file_bytes` each, `index.html` present,
no secret in any file); a rejected answer raises `InvalidFileSet`, whose message goes back to the
model on the next attempt. README.md and LICENSE are ours, written from the model's sections, so
they are always there and always complete.

Images among the attachments go to the model as image parts when the provider reads images;
text attachments go inline; every attachment is committed under its own name.
"""
from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from marshmallow import ValidationError

from app.core.clock import utcnow
from app.core.credentials import has_token
from app.core.errors import APIError, describe_problems
from app.core.jsontext import json_in_text
from app.core.schemas import decode_data_uri
from app.deployments.schemas import FILE_SET_JSON_SCHEMA, FileSetSchema, check_path
from app.integrations.github.repos import utf8_text
from app.integrations.netguard import guarded_request
from app.llm.providers.base import CompletionRequest

VISION_PROVIDERS = frozenset({"openai", "anthropic", "gemini"})
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript", "image/svg+xml")
OURS = ("LICENSE", "README.md")  # written by us; the model's versions are dropped
ATTACHMENT_MAX_BYTES = 5_000_000
INLINE_TEXT_CHARS = 20_000  # of one text attachment or current file shown to the model
CURRENT_FILES_CHARS = 200_000  # of all current files shown to the model in a revision

SYSTEM_PROMPT = """You are a senior front-end engineer. You write complete, working static web apps \
(HTML, CSS and JavaScript, no build step) that are published as they are on GitHub Pages.

Answer with one JSON object only, no prose and no Markdown fences:
{"files": [{"path": "index.html", "content": "..."}, ...], "title": "...", "summary": "...",
 "usage": "...", "code_explanation": "..."}

Rules:
- `index.html` at the root is the entry page; every path is relative (no leading "/", no "..").
- Write every file in full. Libraries may be loaded from a CDN (jsdelivr, cdnjs, unpkg).
- The app must meet every check listed; read each one literally (element ids, texts, timings).
- Attachments are already in the repository under their names; use them by relative URL.
- Never put API keys, tokens or passwords in any file.
- Every HTML page has `<html lang="...">`, a `<title>`, `<meta name="description">`, a viewport meta
  (`width=device-width, initial-scale=1`), Open Graph `og:title` and `og:description` metas, and alt
  text on every `<img>` (`alt=""` only for a decorative image).
- Do not write LICENSE or README.md: they are generated from `summary`, `usage` and `code_explanation`
  (Markdown), which must describe this app accurately."""


class InvalidFileSet(APIError):
    """The model's answer is not a usable file set; the message says why (and is shown to the model)."""

    status, type, code = 502, "upstream_error", "invalid_file_set"


@dataclass(frozen=True)
class Limits:
    max_files: int = 50
    max_file_bytes: int = 500_000

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Limits":
        return cls(config["DEPLOY_MAX_FILES"], config["DEPLOY_MAX_FILE_BYTES"])


@dataclass(frozen=True)
class Attachment:
    name: str
    media_type: str
    data: bytes

    @property
    def is_image(self) -> bool:
        return self.media_type in IMAGE_TYPES

    @property
    def text(self) -> str | None:
        if not self.media_type.startswith(TEXT_TYPES):
            return None
        try:
            return self.data.decode("utf-8")
        except UnicodeDecodeError:
            return None


@dataclass
class FileSet:
    """A validated answer: `files` maps path to text; the rest feeds README.md."""

    files: dict[str, str]
    title: str = ""
    summary: str = ""
    usage: str = ""
    code_explanation: str = ""
    model: str = ""
    provider: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"files": [{"path": p, "content": c} for p, c in self.files.items()], "title": self.title,
                "summary": self.summary, "usage": self.usage, "code_explanation": self.code_explanation,
                "model": self.model, "provider": self.provider}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FileSet":
        return cls({f["path"]: f["content"] for f in data["files"]}, data.get("title", ""), data.get("summary", ""),
                   data.get("usage", ""), data.get("code_explanation", ""), data.get("model", ""),
                   data.get("provider", ""))


@dataclass
class Brief:
    """Everything the model is told about one round."""

    task: str
    round: int
    brief: str
    checks: list[Any]
    attachments: list[Attachment] = field(default_factory=list)
    current_files: dict[str, bytes] = field(default_factory=dict)  # from round 2: the repo as it is


def load_attachments(items: Iterable[dict[str, str]], allow_hosts: Iterable[str] = ()) -> list[Attachment]:
    """Decode `data:` URIs (and fetch http(s) URLs through the SSRF guard) into attachments."""
    attachments = []
    for item in items:
        name, url = check_path(item["name"]), item["url"]
        if url.startswith("data:"):
            media_type, data = decode_data_uri(url)
        else:
            response = guarded_request("GET", url, allow_hosts=allow_hosts, max_bytes=ATTACHMENT_MAX_BYTES)
            if response.status_code != 200:
                raise APIError(f"The attachment {name} could not be fetched: HTTP {response.status_code}.",
                               status=502, code="attachment_unavailable")
            media_type = response.headers.get("Content-Type", "application/octet-stream").split(";")[0].lower()
            data = response.content
        attachments.append(Attachment(name, media_type, data))
    return attachments


def build_request(brief: Brief, *, vision: bool, feedback: str | None = None,
                  max_tokens: int | None = None) -> CompletionRequest:
    """The completion request for one generation attempt; `feedback` says what was wrong with the last."""
    parts: list[dict[str, Any]] = [{"type": "text", "text": describe_round(brief)}]
    for attachment in brief.attachments:
        if attachment.is_image and vision:
            parts.append({"type": "text", "text": f"Attachment {attachment.name}:"})
            parts.append({"type": "image", "media_type": attachment.media_type,
                          "data": _b64(attachment.data)})
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM_PROMPT},
                                      {"role": "user", "content": parts if len(parts) > 1 else parts[0]["text"]}]
    if feedback:
        messages.append({"role": "user", "content": f"Your previous answer was rejected: {feedback}\n"
                                                    "Answer again with a complete, valid JSON file set."})
    # No temperature: reasoning models accept only their default.
    return CompletionRequest(messages, max_tokens=max_tokens or None,
                             json_schema={"name": "static_app", "schema": FILE_SET_JSON_SCHEMA})


def describe_round(brief: Brief) -> str:
    lines = [f"Task: {brief.task}", f"Round: {brief.round}", "", "Brief:", brief.brief.strip(), ""]
    if brief.checks:
        lines.append("Checks the app must pass:")
        lines += [f"- {c if isinstance(c, str) else json.dumps(c)}" for c in brief.checks]
        lines.append("")
    if brief.attachments:
        lines.append("Attachments (committed at these paths):")
        for a in brief.attachments:
            lines.append(f"- {a.name} ({a.media_type}, {len(a.data)} bytes)")
            text = a.text
            if text is not None:
                lines += [f"  Content of {a.name}:", "```", text[:INLINE_TEXT_CHARS], "```"]
        lines.append("")
    if brief.current_files:
        lines += ["This is a revision. The repository currently holds the files below. Answer with every file "
                  "you add or change, each in full; files you leave out stay as they are.", ""]
        budget = CURRENT_FILES_CHARS
        for path, data in sorted(brief.current_files.items()):
            text = utf8_text(data)
            if path in OURS:
                continue
            if text is None or len(text) > min(budget, INLINE_TEXT_CHARS):
                lines.append(f"=== {path} ({len(data)} bytes, not shown) ===")
                continue
            budget -= len(text)
            lines += [f"=== {path} ===", text]
    return "\n".join(lines)


def parse_file_set(text: str, limits: Limits, *, secrets: Iterable[str] = (),
                   existing: Iterable[str] = ()) -> FileSet:
    """The validated file set in the model's answer `text`; `InvalidFileSet` saying what is wrong otherwise.

    `existing` are paths already in the repo (a revision need not resend index.html)."""
    data = _json_object(text)
    try:
        loaded = FileSetSchema().load(data)
    except ValidationError as exc:
        raise InvalidFileSet(f"The file set does not match the schema: {describe_problems(exc.messages, 1)}") from None
    files: dict[str, str] = {}
    for item in loaded["files"]:
        path = item["path"]
        if path in files:
            raise InvalidFileSet(f"The file {path} appears twice.")
        if path not in OURS:
            files[path] = item["content"]
    if not files:
        raise InvalidFileSet("The file set has no files besides LICENSE and README.md.")
    if len(files) > limits.max_files:
        raise InvalidFileSet(f"The file set has {len(files)} files; at most {limits.max_files} are allowed.")
    for path, content in files.items():
        size = len(content.encode("utf-8"))
        if size > limits.max_file_bytes:
            raise InvalidFileSet(f"{path} is {size} bytes; at most {limits.max_file_bytes} are allowed per file.")
    if "index.html" not in files and "index.html" not in set(existing):
        raise InvalidFileSet("index.html is missing: the app needs an index.html at the root.")
    found = find_secret(files, secrets)
    if found:
        raise InvalidFileSet(f"{found} contains what looks like a secret (an API key or token); never put "
                             "credentials in the app.")
    return FileSet(files, loaded["title"].strip(), loaded["summary"].strip(), loaded["usage"].strip(),
                   loaded["code_explanation"].strip())


def find_secret(files: Mapping[str, str | bytes], secrets: Iterable[str] = ()) -> str | None:
    """The path of the first file holding a configured secret or a token-shaped string, else None."""
    values = [s for s in secrets if s and len(s) >= 8]
    for path, content in files.items():
        text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
        if any(value in text for value in values) or has_token(text):
            return path
    return None


def repo_files(file_set: FileSet, attachments: list[Attachment], *, task: str, owner: str, repo: str,
               repo_url: str | None, pages_url: str | None, year: int | None = None) -> dict[str, bytes]:
    """Everything committed: the app's files, the attachments, README.md and LICENSE."""
    files: dict[str, bytes] = {path: content.encode("utf-8") for path, content in file_set.files.items()}
    for attachment in attachments:
        files[attachment.name] = attachment.data
    files["README.md"] = readme(file_set, task=task, repo=repo, repo_url=repo_url, pages_url=pages_url,
                                paths=sorted(files)).encode("utf-8")
    files["LICENSE"] = mit_license(owner, year).encode("utf-8")
    return files


def readme(file_set: FileSet, *, task: str, repo: str, repo_url: str | None, pages_url: str | None,
           paths: list[str]) -> str:
    title = file_set.title or task
    clone = f"git clone {repo_url}.git\ncd {repo}\n" if repo_url else ""
    lines = [f"# {title}", "", file_set.summary, ""]
    if pages_url:
        lines += [f"**Live demo:** {pages_url}", ""]
    lines += ["## Setup", "", "This is a static web app: HTML, CSS and JavaScript with no build step and nothing to "
              "install. To run it locally, serve the folder with any static file server:", "", "```bash",
              f"{clone}python3 -m http.server 8000", "```", "", "then open http://localhost:8000 in a browser.", ""]
    lines += ["## Usage", "", file_set.usage or "Open `index.html` (or the live demo) in a browser.", ""]
    lines += ["## Code explanation", "", file_set.code_explanation or "The app starts from `index.html`.", "",
              "| File | Purpose |", "|---|---|"]
    lines += [f"| `{p}` | {_purpose(p)} |" for p in paths if p not in OURS]
    lines += ["", "## License", "", "This project is released under the MIT License; see [LICENSE](LICENSE).", ""]
    return "\n".join(lines)


def mit_license(holder: str, year: int | None = None) -> str:
    year = year or utcnow().year
    return f"""MIT License

Copyright (c) {year} {holder}

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def _purpose(path: str) -> str:
    ext = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    return {"html": "Page markup", "css": "Styles", "js": "Behaviour (JavaScript)", "mjs": "JavaScript module",
            "json": "Data", "md": "Documentation", "svg": "Image", "png": "Image", "jpg": "Image", "jpeg": "Image",
            "gif": "Image", "webp": "Image", "csv": "Data", "txt": "Text"}.get(ext, "Asset")


def _json_object(text: str) -> dict[str, Any]:
    """The JSON object in `text`, tolerating Markdown fences and prose around it."""
    try:
        data = json_in_text(text)
    except ValueError as exc:
        raise InvalidFileSet(f"The answer is not valid JSON ({exc}).") from None
    if not isinstance(data, dict):
        raise InvalidFileSet("The answer must be a JSON object with a `files` list.")
    return data


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
