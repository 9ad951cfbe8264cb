"""The SEO and accessibility basics every generated page carries: `lang` on `<html>`, a `<title>`, a
meta description, a viewport, Open Graph title and description, and alt text on every image.

The model is asked for them (`generate.SYSTEM_PROMPT`); `complete_pages` then checks each HTML file
and adds what is still missing rather than failing the round: the title from the file set's, the
description from the brief, `lang="en"`, and for an image without `alt` a text made from its file
name. An explicit `alt=""` is kept: it is how a page marks an image as decorative.

The standard library's HTML parser reads the page (it knows that `<script>` text holds no tags);
each addition is inserted at the position the parser reports, so the model's attribute order,
quoting and letter case do not matter and nothing else in the file changes.
"""
from __future__ import annotations

import html
import posixpath
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

DEFAULT_LANG = "en"
VIEWPORT = "width=device-width, initial-scale=1"
DESCRIPTION_CHARS = 160  # what search results show of a description
HTML_SUFFIXES = (".html", ".htm")


@dataclass
class PageScan:
    """What a page already has, and the offsets where additions go."""

    doctype_end: int = 0
    html_name_end: int | None = None  # just after "<html", where `lang` goes
    html_tag_end: int | None = None  # just after the whole `<html ...>` start tag
    has_lang: bool = False
    head_tag_end: int | None = None
    head_close: int | None = None  # the start of "</head>"
    title: str | None = None  # the text of the first `<title>` before `<body>`
    title_tag_end: int | None = None
    metas: dict[str, str] = field(default_factory=dict)  # name or property (lower case) -> content
    images_without_alt: list[tuple[int, str]] = field(default_factory=list)  # (just after "<img", src)


class _Scanner(HTMLParser):
    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.scan = PageScan()
        self.line_starts = [0] + [match.end() for match in re.finditer("\n", text)]  # as the parser counts lines
        self.in_title = self.in_body = False
        self.feed(text)
        self.close()

    def here(self) -> int:
        """The offset in the text of what is being handled (HTMLParser itself uses `offset`)."""
        line, column = self.getpos()
        return self.line_starts[line - 1] + column

    def handle_decl(self, decl: str) -> None:
        if decl.lower().startswith("doctype"):
            self.scan.doctype_end = self.here() + len(f"<!{decl}>")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        start, raw, values = self.here(), self.get_starttag_text() or "", dict(attrs)
        scan = self.scan
        if tag == "html" and scan.html_name_end is None:
            scan.html_name_end, scan.html_tag_end = start + len("<html"), start + len(raw)
            scan.has_lang = bool((values.get("lang") or "").strip())
        elif tag == "head" and scan.head_tag_end is None:
            scan.head_tag_end = start + len(raw)
        elif tag == "body":
            self.in_body = True
        elif tag == "title" and scan.title is None and not self.in_body:
            self.in_title, scan.title, scan.title_tag_end = True, "", start + len(raw)
        elif tag == "meta":
            key = (values.get("name") or values.get("property") or "").strip().lower()
            if key:
                scan.metas.setdefault(key, (values.get("content") or "").strip())
        elif tag == "img" and "alt" not in values:
            scan.images_without_alt.append((start + len("<img"), values.get("src") or ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        elif tag == "head" and self.scan.head_close is None:
            self.scan.head_close = self.here()

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.scan.title = (self.scan.title or "") + data


def scan_page(text: str) -> PageScan:
    return _Scanner(text).scan


def complete_pages(files: dict[str, str], *, title: str, description: str) -> dict[str, str]:
    """`files` with every HTML page completed (see `complete_page`); other files as they are."""
    return {path: complete_page(content, title=title, description=description)
            if path.lower().endswith(HTML_SUFFIXES) else content for path, content in files.items()}


def complete_page(text: str, *, title: str, description: str) -> str:
    """`text` with whatever of the basics it lacks added; a page that has them all comes back unchanged."""
    scan = scan_page(text)
    page_title = (scan.title or "").strip() or title
    page_description = scan.metas.get("description") or summarize(description)
    insertions: list[tuple[int, str]] = []
    if scan.html_name_end is None:
        insertions.append((scan.doctype_end, f'\n<html lang="{DEFAULT_LANG}">'))
    elif not scan.has_lang:
        insertions.append((scan.html_name_end, f' lang="{DEFAULT_LANG}"'))
    if scan.title is not None and not scan.title.strip():
        insertions.append((scan.title_tag_end or 0, html.escape(title)))
    head = missing_head_tags(scan, page_title, page_description)
    if head:
        insertions.append(head_insertion(scan, "\n".join(head)))
    for position, src in scan.images_without_alt:
        insertions.append((position, f' alt="{html.escape(alt_from_src(src))}"'))
    return insert(text, insertions)


def missing_head_tags(scan: PageScan, title: str, description: str) -> list[str]:
    tags = []
    if scan.title is None:
        tags.append(f"<title>{html.escape(title)}</title>")
    wanted = [("name", "description", description), ("name", "viewport", VIEWPORT),
              ("property", "og:title", title), ("property", "og:description", description)]
    for attribute, key, content in wanted:
        if not scan.metas.get(key) and content:
            tags.append(f'<meta {attribute}="{key}" content="{html.escape(content)}">')
    return tags


def head_insertion(scan: PageScan, tags: str) -> tuple[int, str]:
    """Where the missing head tags go: before `</head>`, else after `<head>`, else in a new head after
    `<html>`, else (a page with neither) after the doctype and the `<html lang>` added there."""
    if scan.head_close is not None:
        return scan.head_close, f"{tags}\n"
    if scan.head_tag_end is not None:
        return scan.head_tag_end, f"\n{tags}"
    return scan.html_tag_end or scan.doctype_end, f"\n<head>\n{tags}\n</head>"


def insert(text: str, insertions: list[tuple[int, str]]) -> str:
    """`text` with each (offset, addition) made, from the end so earlier offsets stay true; additions at
    one offset keep their order."""
    ordered = sorted(enumerate(insertions), key=lambda item: (item[1][0], item[0]), reverse=True)
    for _, (position, addition) in ordered:
        text = text[:position] + addition + text[position:]
    return text


def summarize(text: str) -> str:
    """`text` on one line, cut at a word to fit a meta description."""
    line = " ".join(text.split())
    if len(line) <= DESCRIPTION_CHARS:
        return line
    return line[:DESCRIPTION_CHARS - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"


def alt_from_src(src: str) -> str:
    """A readable alt text from an image's file name: "img/red-panda_2.png" -> "Red panda 2"."""
    if src.startswith("data:"):
        return "Image"
    stem = posixpath.splitext(posixpath.basename(unquote(urlsplit(src).path)))[0]
    words = " ".join(re.sub(r"[-_.+]+", " ", stem).split())
    return words[:1].upper() + words[1:] if words else "Image"
