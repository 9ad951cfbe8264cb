"""What a call cost: a price table per model (USD per million tokens: prompt, completion, and prompt
tokens read from or written to the vendor's prompt cache), read from a JSON file (the shipped
`prices.json`, or PRICES_FILE) with PRICE_OVERRIDES on top.

Cached tokens are counted inside the prompt tokens (`app.llm.providers.base.Usage`), so a call costs
its uncached prompt tokens at the prompt rate, its cache reads at `cached` and its cache writes at
`cache_write`. A price without `cached` charges cache reads at the prompt rate (no discount known);
one without `cache_write` charges writes at CACHE_WRITE_MARKUP times the prompt rate (Anthropic's
rate for a 5-minute cache write, the only vendor that reports writes), and writes kept an hour
(Anthropic's `ttl: "1h"`) at `cache_write_1h`, else CACHE_WRITE_1H_MARKUP times the prompt rate.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from app.core.config import project_root
from app.llm.providers.base import Usage
from app.llm.usage import UsageEvent

SHIPPED = os.path.join(os.path.dirname(__file__), "prices.json")
CACHE_WRITE_MARKUP = 1.25
CACHE_WRITE_1H_MARKUP = 2.0


@dataclass(frozen=True)
class Price:
    prompt: float
    completion: float
    cached: float | None = None  # a prompt token read from the cache; None: the prompt rate
    cache_write: float | None = None  # a prompt token written to the cache; None: the prompt rate x 1.25
    cache_write_1h: float | None = None  # one written for an hour; None: the prompt rate x 2

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0,
             cache_write_tokens: int = 0, cache_write_1h_tokens: int = 0) -> float:
        """USD for the tokens, `cached_tokens` and `cache_write_tokens` being part of `prompt_tokens`, and
        `cache_write_1h_tokens` part of `cache_write_tokens`."""
        cached_rate = self.prompt if self.cached is None else self.cached
        write_rate = self.prompt * CACHE_WRITE_MARKUP if self.cache_write is None else self.cache_write
        hour_rate = self.prompt * CACHE_WRITE_1H_MARKUP if self.cache_write_1h is None else self.cache_write_1h
        uncached = max(0, prompt_tokens - cached_tokens - cache_write_tokens)
        hour = min(cache_write_1h_tokens, cache_write_tokens)
        return (uncached * self.prompt + cached_tokens * cached_rate + (cache_write_tokens - hour) * write_rate
                + hour * hour_rate + completion_tokens * self.completion) / 1_000_000


class PriceTable:
    def __init__(self, prices: dict[str, Price]):
        self.prices = prices
        self._by_length = sorted(prices, key=len, reverse=True)

    @classmethod
    def from_config(cls, config: dict[str, Any], configured: dict[str, dict[str, float]] | None = None) -> "PriceTable":
        """The shipped table (or PRICES_FILE), then `configured` prices (the models file's
        `{input, output, cached_input, cache_write_input, cache_write_1h_input}`), then PRICE_OVERRIDES."""
        path = config.get("PRICES_FILE") or SHIPPED
        if not os.path.isabs(path):
            path = os.path.join(project_root(), path)
        with open(path, encoding="utf-8") as handle:
            table = {name: Price(**values) for name, values in json.load(handle)["models"].items()}
        table.update({name: Price(price["input"], price["output"], price.get("cached_input"),
                                  price.get("cache_write_input"), price.get("cache_write_1h_input"))
                      for name, price in (configured or {}).items()})
        table.update(parse_overrides(config.get("PRICE_OVERRIDES") or []))
        return cls(table)

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0,
             cache_write_tokens: int = 0, cache_write_1h_tokens: int = 0) -> float:
        """What a call of `model` cost in USD; 0 for a model the table does not price."""
        price = self.price(model)
        return (price.cost(prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens, cache_write_1h_tokens)
                if price else 0.0)

    def cost_of(self, event: UsageEvent) -> float:
        """What the call `event` reports cost in USD, its cached prompt tokens at the cached rates."""
        return self.cost_of_usage(event.model, event) or 0.0

    def cost_of_usage(self, model: str, usage: Usage | UsageEvent) -> float | None:
        """What `usage` of `model` cost in USD, as `cost_of` prices a call (the factory hands this to
        the features that show a cost but may not import this package); None for a model the table
        does not price, where `cost` says 0."""
        price = self.price(model)
        return price.cost(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens,
                          usage.cache_write_tokens, usage.cache_write_1h_tokens) if price else None

    def price(self, model: str) -> Price | None:
        """The price of `model`: its own entry, else the longest entry it starts with; None if unknown."""
        if model in self.prices:
            return self.prices[model]
        bare = model.rsplit("/", 1)[-1]  # "models/gemini-2.5-flash", "openai/gpt-4o"
        return next((self.prices[name] for name in self._by_length if bare.startswith(name)), None)


def parse_overrides(entries: list[str]) -> dict[str, Price]:
    """`model=prompt/completion[/cached[/cache_write[/cache_write_1h]]]` entries (USD per million tokens)."""
    prices = {}
    for entry in entries:
        model, _, numbers = entry.partition("=")
        try:
            values = [float(n) for n in numbers.split("/")]
            prices[model.strip()] = Price(*values)
        except (TypeError, ValueError):
            raise ValueError(f"PRICE_OVERRIDES entry {entry!r} is not "
                             "model=prompt/completion[/cached[/cache_write[/cache_write_1h]]]") from None
    return prices
