"""What one LLM call cost: the event the gateway hands to its `record` callback after every attempt.

The factory's callback turns it into a usage row (`app.keys.usage`, written in batches off the hot
path) and into this instance's Prometheus counters (`app.core.metrics`).

Before the call, what it may cost: the `Demand` the gateway hands to its `permit` callback (the
prompt's tokens estimated from its characters, and the completion tokens it asked for at most), and
the `Permit` it gets back, whose `settle` it calls once with the call's last usage event (None when
nothing was answered), so what was reserved for the call becomes what it used.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable

CHARS_PER_TOKEN = 4  # the rule of thumb of an estimate, where no tokenizer is at hand
IMAGE_TOKENS = 1600  # Anthropic's figure for an image of about 1.15 megapixels, its largest unscaled size


@dataclass(frozen=True)
class UsageEvent:
    provider: str
    model: str
    outcome: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: int = 0
    label: str = ""  # the model's /metrics label: `model` if configured, else "other" (callers mint no labels)
    first_item_ms: int | None = None  # a stream's time to its first item (the time to first token)
    reasoning_tokens: int = 0  # included in completion_tokens, as OpenAI counts them
    cached_tokens: int = 0  # included in prompt_tokens: read from the vendor's prompt cache
    cache_write_tokens: int = 0  # included in prompt_tokens: written to the vendor's prompt cache
    cache_write_1h_tokens: int = 0  # of cache_write_tokens, those kept an hour (priced higher)
    deployment: str = ""  # the upstream tried (`Route.upstream`: provider/model of the models file)
    status: int | None = None  # a failed attempt's upstream HTTP status, when it had one
    error_type: str = ""  # a failed attempt's failure type (`failure_type`), "" for an answer


@dataclass(frozen=True)
class Demand:
    """What a call is expected to use, known before it is made."""

    prompt_tokens: int = 0  # estimated: `estimate_tokens` of what is sent
    completion_tokens: int | None = 0  # the most it asked for (max_tokens x n); None: it set no cap

    @classmethod
    def of_request(cls, request: Any) -> "Demand":
        """A `CompletionRequest`'s demand: its messages, tools and schema, and its `max_tokens`."""
        prompt = estimate_tokens([request.messages, request.tools, request.json_schema])
        cap = request.max_tokens * (request.n or 1) if request.max_tokens else None
        return cls(prompt, cap)


@dataclass
class Permit:
    """The routes a call may take, and how to settle what was reserved for it once it ends."""

    routes: list[Any]
    settle: Callable[["UsageEvent | None"], None] = field(default=lambda event: None)


def estimate_tokens(value: Any) -> int:
    """About four characters a token over every string in `value` (a tool's schema as its JSON text),
    IMAGE_TOKENS for each image part (its data not counted)."""
    images, characters = 0, 0
    for text in strings_and_images(value):
        if text is None:
            images += 1
        else:
            characters += len(text)
    return math.ceil(characters / CHARS_PER_TOKEN) + images * IMAGE_TOKENS


def strings_and_images(value: Any):
    """Every string in `value` (a tool's schema as its JSON text), and None for each image part."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict) and value.get("type") in ("image", "image_url", "input_image"):
        yield None
    elif isinstance(value, dict) and ("input_schema" in value or "parameters" in value):
        yield json.dumps(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_and_images(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_and_images(item)
