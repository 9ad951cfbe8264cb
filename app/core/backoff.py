"""Exponential backoff, the one formula every retry here waits by (LLM routes, deployment stages and
the evaluator's notification; GitHub's session uses urllib3's `Retry`, which has its own)."""
from __future__ import annotations

import math
import random


def backoff_delay(retry_number: int, first: float, cap: float = math.inf, jitter: float = 0.0) -> float:
    """Seconds to wait before retry `retry_number` (1 for the first): `first`, doubled on each retry, at
    most `cap`, then spread by up to ±`jitter` (a fraction) so clients that failed together do not
    retry together."""
    delay = min(cap, first * 2 ** (retry_number - 1))
    return delay * random.uniform(1 - jitter, 1 + jitter) if jitter else delay
