"""JSON in a model's answer: models asked for JSON still wrap it in a code fence or a sentence, and
while it streams the JSON is unfinished. jiter (installed with the openai SDK) parses both."""
from __future__ import annotations

import json
import re
from typing import Any

import jiter

FENCE = re.compile(r"^\s*```(?:json)?\s*|\s*```\s*$")


def json_in_text(text: str) -> Any:
    """The JSON in `text`: all of it, inside a code fence, or the first object in prose; raises
    ValueError (about the whole text) when none parses."""
    cleaned = FENCE.sub("", text)
    try:
        return json.loads(cleaned)
    except ValueError as whole:
        start = cleaned.find("{")
        if start < 0:
            raise whole from None
        try:
            return json.JSONDecoder().raw_decode(cleaned, start)[0]
        except ValueError:
            raise whole from None


class GrowingField:
    """The text of one top-level string field of a JSON object that is still being written, fed piece
    by piece: `feed` returns what the field gained (decoded; an escape is held back until complete)."""

    def __init__(self, key: str):
        self.key = key
        self.received: list[str] = []
        self.shown = 0

    def feed(self, piece: str) -> str:
        self.received.append(piece)
        value = self._value_so_far()
        gained, self.shown = value[self.shown:], max(self.shown, len(value))
        return gained

    def _value_so_far(self) -> str:
        text = "".join(self.received)
        start = text.find("{")
        if start < 0:
            return ""
        try:
            data = jiter.from_json(text[start:].encode(), partial_mode="trailing-strings")
        except ValueError:  # not JSON (yet, or at all): nothing to show
            return ""
        value = data.get(self.key) if isinstance(data, dict) else None
        return value if isinstance(value, str) else ""
