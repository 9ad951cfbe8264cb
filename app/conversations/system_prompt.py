"""The system prompt of persisted chats, kept in a text file an operator can edit while the server runs.

`SystemPrompt.text()` stats the file on every call (a few microseconds) and re-reads it only when its
modification time or size changed, so an edit applies to the next new chat without a restart. A
missing file is created with `DEFAULT_SYSTEM_PROMPT`; if it cannot be created (read-only disk) the
default is used from memory and a warning is logged once.
"""
from __future__ import annotations

import logging
import os

from app.core.config import project_root

log = logging.getLogger("aiserver.chat")

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful, knowledgeable assistant. Answer clearly and accurately, keep answers as short as the "
    "question allows, use Markdown for lists and code, and say so when you are not sure of something.\n"
)


class SystemPrompt:
    def __init__(self, path: str, default: str = DEFAULT_SYSTEM_PROMPT):
        self.path = path if os.path.isabs(path) else os.path.join(project_root(), path)
        self.default = default
        self._seen: tuple[int, int] | None = None
        self._text = default.strip()
        self._warned = False

    def text(self) -> str:
        """The prompt as the file says now (stripped; empty means chats get no system message)."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            if not self._create():
                return self._text
            try:
                stat = os.stat(self.path)
            except OSError as exc:
                return self._fallback(exc)
        except OSError as exc:
            return self._fallback(exc)
        key = (stat.st_mtime_ns, stat.st_size)
        if key != self._seen:
            try:
                with open(self.path, encoding="utf-8", errors="replace") as handle:
                    self._text = handle.read().strip()
            except OSError as exc:
                return self._fallback(exc)
            self._seen = key
        return self._text

    def _create(self) -> bool:
        """Write the default, unless another worker did first (open mode "x" is atomic); False if the
        file cannot be written."""
        try:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            with open(self.path, "x", encoding="utf-8") as handle:
                handle.write(self.default)
            log.info("created %s with the default system prompt", self.path)
        except FileExistsError:
            pass
        except OSError as exc:
            self._fallback(exc)
            return False
        return True

    def _fallback(self, exc: OSError) -> str:
        if not self._warned:
            log.warning("cannot use SYSTEM_PROMPT_FILE %s (%s); using the built-in prompt", self.path, exc)
            self._warned = True
        self._text = self.default.strip()
        return self._text
