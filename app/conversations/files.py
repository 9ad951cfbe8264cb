"""Files attached to a chat message, as text for the model: text, Markdown and code files as they
are (UTF-8), and the text of PDFs, extracted here with pypdf.

Every limit is a setting (`CHAT_FILES_MAX`, `CHAT_FILE_MAX_BYTES`, `CHAT_FILE_MAX_CHARS`), refused
with a 413 or a 400 whose message says the limit in words and names the file, never the setting.
"""
from __future__ import annotations

import base64
import binascii
import io
import logging
from dataclasses import dataclass
from typing import Any

from app.core.errors import BadRequest, PayloadTooLarge, size_in_words

log = logging.getLogger("aiserver.chat.files")

PDF_MAGIC = b"%PDF-"
KINDS = "text, Markdown, code or PDF files"


@dataclass(frozen=True)
class FileLimits:
    count: int = 5
    bytes: int = 2 * 1024 * 1024
    chars: int = 200_000

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "FileLimits":
        return cls(config["CHAT_FILES_MAX"], config["CHAT_FILE_MAX_BYTES"], config["CHAT_FILE_MAX_CHARS"])


class FileTooLarge(PayloadTooLarge):
    code = "file_too_large"


class FileTextTooLong(PayloadTooLarge):
    code = "file_text_too_long"


class UnsupportedFile(BadRequest):
    code = "unsupported_file"


def file_texts(files: list[dict[str, str]], limits: FileLimits) -> tuple[dict[str, str], ...]:
    """[{"name", "data" (base64)}] as [{"name", "text"}], each checked against `limits`."""
    if len(files) > limits.count:
        raise BadRequest(f"{len(files)} files attached; a message may have at most {limits.count}.",
                         code="too_many_files", details={"param": "files", "max_files": limits.count})
    return tuple({"name": file["name"], "text": file_text(file["name"], file["data"], limits)} for file in files)


def file_text(name: str, data: str, limits: FileLimits) -> str:
    details = {"param": "files", "file": name}
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise UnsupportedFile(f"{name} could not be read: its data is not base64.", details=details) from None
    if len(raw) > limits.bytes:
        raise FileTooLarge(f"{name} is {size_in_words(len(raw))}; a file may be at most {size_in_words(limits.bytes)}.",
                           details={**details, "max_bytes": limits.bytes})
    text = pdf_text(name, raw) if raw.startswith(PDF_MAGIC) else plain_text(name, raw)
    if len(text) > limits.chars:
        raise FileTextTooLong(f"{name} has {len(text):,} characters of text; a file may have at most "
                              f"{limits.chars:,}.", details={**details, "max_chars": limits.chars})
    return text


def plain_text(name: str, raw: bytes) -> str:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        raise UnsupportedFile(f"{name} is not a text file; attach {KINDS}.", details={"param": "files", "file": name})
    return text


def pdf_text(name: str, raw: bytes) -> str:
    """The text of every page, pages separated by blank lines; a PDF without text (scanned) or that
    pypdf cannot read is a 400. pypdf is imported here, on the first PDF: importing it takes about
    0.6 s, which every worker's start would otherwise pay (a worker restarted after a crash included)."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    details = {"param": "files", "file": name}
    try:
        reader = PdfReader(io.BytesIO(raw))
        if reader.is_encrypted:
            raise UnsupportedFile(f"{name} is a password-protected PDF; attach it without the password.",
                                  details=details)
        text = "\n\n".join((page.extract_text() or "").strip() for page in reader.pages).strip()
    except (PyPdfError, ValueError, KeyError, TypeError) as error:
        log.info("could not read PDF %s: %s", name, error)
        raise UnsupportedFile(f"{name} could not be read as a PDF.", details=details) from None
    if not text:
        raise UnsupportedFile(f"{name} has no text to read (a scanned PDF?); attach its text instead.",
                              details=details)
    return text
