"""Reading a request: its JSON body or query string, loaded by a marshmallow schema into typed errors."""
from __future__ import annotations

import functools
import json
from typing import Any

from flask import request
from marshmallow import Schema, ValidationError

from app.core.errors import BadRequest, UnsupportedMediaType, ValidationFailed


def parse_body(schema: type[Schema]) -> dict[str, Any]:
    """The request's JSON body loaded by `schema`: 415 if not JSON, 400 if malformed or invalid."""
    return load(schema, json_object())


def json_object() -> dict[str, Any]:
    """The request's body as a JSON object: 415 if not JSON, 400 if malformed, not an object or holding NUL."""
    if not request.mimetype or request.mimetype != "application/json" and not request.mimetype.endswith("+json"):
        raise UnsupportedMediaType("Send a JSON body with 'Content-Type: application/json'.")
    raw = request.get_data(cache=True)
    try:
        data = json.loads(raw) if raw else None
    except ValueError as exc:
        raise BadRequest(f"Malformed JSON body: {exc}", code="malformed_json") from None
    if not isinstance(data, dict):
        raise BadRequest("The JSON body must be an object.", code="malformed_json")
    if (b"\\u0000" in raw or b"\x00" in raw) and contains_nul(data):
        raise BadRequest("The body contains a NUL character (\\u0000), which no field accepts.",
                         code="nul_character")
    return data


def contains_nul(value: Any) -> bool:
    """Whether any string in a decoded JSON value holds U+0000, which no database here can store."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(contains_nul(item) for item in value)
    return False


def parse_query(schema: type[Schema]) -> dict[str, Any]:
    return load(schema, request.args.to_dict())


def load(schema: type[Schema], data: dict[str, Any]) -> dict[str, Any]:
    try:
        return schema_instance(schema).load(data)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"body": exc.messages}
        raise ValidationFailed(messages) from None


@functools.cache
def schema_instance(schema: type[Schema]) -> Schema:
    """One instance per schema class: building one costs more than loading a small body with it."""
    return schema()


