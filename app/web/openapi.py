"""The OpenAPI document, generated from the routes and the marshmallow schemas views declare.

A view declares what it reads with `@documented(body=Schema)` or `@documented(query=Schema)`;
`build_spec` walks the URL map, so a new endpoint is documented by existing at all.
"""
from __future__ import annotations

from typing import Any, Callable

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask

from app.core.version import __version__

SKIP_PREFIXES = ("/static", "/docs", "/openapi.json", "/api/v1/")


def build_spec(app: Flask) -> dict[str, Any]:
    spec = APISpec(title="aiserver", version=__version__, openapi_version="3.0.3",
                   plugins=[MarshmallowPlugin()],
                   info={"description": "One API over OpenAI, Anthropic, Gemini, Ollama and OpenAI-compatible "
                                        "endpoints; conversations, gists and deployments."})
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.rule.startswith(SKIP_PREFIXES):
            continue
        view = app.view_functions[rule.endpoint]
        path = rule.rule.replace("<", "{").replace(">", "}")
        path = "/".join(part.split(":")[-1] if part.startswith("{") else part for part in path.split("/"))
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = operation(view, rule.arguments)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def operation(view: Callable, arguments: set[str]) -> dict[str, Any]:
    doc = (view.__doc__ or view.__name__.replace("_", " ")).strip()
    op: dict[str, Any] = {"summary": doc.splitlines()[0], "description": doc,
                          "responses": {"200": {"description": "Success"},
                                        "default": {"description": "A JSON error: {\"error\": {\"message\", "
                                                                   "\"type\", \"code\"}}"}}}
    parameters = [{"in": "path", "name": name, "required": True, "schema": {"type": "string"}}
                  for name in sorted(arguments)]
    if getattr(view, "openapi_query", None):
        parameters.append({"in": "query", "schema": view.openapi_query})
    if parameters:
        op["parameters"] = parameters
    if getattr(view, "openapi_body", None):
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": view.openapi_body}}}
    return op
