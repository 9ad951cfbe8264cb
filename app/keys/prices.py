"""What a call cost: a price table per model (USD per million prompt, completion and cached tokens),
read from a JSON file (the shipped `prices.json`, or PRICES_FILE) with PRICE_OVERRIDES on top."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from app.core.config import project_root

SHIPPED = os.path.join(os.path.dirname(__file__), "prices.json")


@dataclass(frozen=True)
class Price:
    prompt: float
    completion: float
    cached: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.prompt + completion_tokens * self.completion) / 1_000_000


class PriceTable:
    def __init__(self, prices: dict[str, Price]):
        self.prices = prices
        self._by_length = sorted(prices, key=len, reverse=True)

    @classmethod
    def from_config(cls, config: dict[str, Any], configured: dict[str, dict[str, float]] | None = None) -> "PriceTable":
        """The shipped table (or PRICES_FILE), then `configured` prices (the models file's
        `{input, output, cached_input}`), then PRICE_OVERRIDES."""
        path = config.get("PRICES_FILE") or SHIPPED
        if not os.path.isabs(path):
            path = os.path.join(project_root(), path)
        with open(path, encoding="utf-8") as handle:
            table = {name: Price(**values) for name, values in json.load(handle)["models"].items()}
        table.update({name: Price(price["input"], price["output"], price.get("cached_input", 0.0))
                      for name, price in (configured or {}).items()})
        table.update(parse_overrides(config.get("PRICE_OVERRIDES") or []))
        return cls(table)

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        """What a call of `model` cost in USD; 0 for a model the table does not price."""
        price = self.price(model)
        return price.cost(prompt_tokens, completion_tokens) if price else 0.0

    def price(self, model: str) -> Price | None:
        """The price of `model`: its own entry, else the longest entry it starts with; None if unknown."""
        if model in self.prices:
            return self.prices[model]
        bare = model.rsplit("/", 1)[-1]  # "models/gemini-2.5-flash", "openai/gpt-4o"
        return next((self.prices[name] for name in self._by_length if bare.startswith(name)), None)


def parse_overrides(entries: list[str]) -> dict[str, Price]:
    """`model=prompt/completion[/cached]` entries (USD per million tokens) as prices."""
    prices = {}
    for entry in entries:
        model, _, numbers = entry.partition("=")
        try:
            values = [float(n) for n in numbers.split("/")]
            prices[model.strip()] = Price(*values)
        except (TypeError, ValueError):
            raise ValueError(f"PRICE_OVERRIDES entry {entry!r} is not model=prompt/completion[/cached]") from None
    return prices
