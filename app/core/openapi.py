"""What a view declares for the OpenAPI document (`app.web.openapi` builds it from the URL map)."""
from __future__ import annotations

from typing import Callable


def documented(body: type | None = None, query: type | None = None) -> Callable:
    def mark(view: Callable) -> Callable:
        view.openapi_body = body
        view.openapi_query = query
        return view
    return mark
