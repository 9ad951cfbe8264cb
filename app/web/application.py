"""The Flask class this server runs on."""
from __future__ import annotations

from typing import Any, Callable

from flask import Flask


class AiServerFlask(Flask):
    """Flask, with `ensure_sync`'s answer remembered per function: Flask asks `inspect.iscoroutinefunction`
    of every hook and view it calls, on every request (17 times a chat completion here), and none of
    ours is a coroutine function. Bounded: a function made per request (`after_this_request`) would
    otherwise be kept for ever."""

    REMEMBERED = 1000

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._sync_callables: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        found = self._sync_callables.get(func)
        if found is None:
            found = super().ensure_sync(func)
            if len(self._sync_callables) < self.REMEMBERED:
                self._sync_callables[func] = found
        return found
