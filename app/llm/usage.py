"""What one LLM call cost: the event the gateway hands to its `record` callback after every attempt.

The factory's callback turns it into a usage row (`app.keys.usage`, written in batches off the hot
path) and into this instance's Prometheus counters (`app.core.metrics`)."""
from __future__ import annotations

from dataclasses import dataclass


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
