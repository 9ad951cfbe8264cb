"""What a view declares for the OpenAPI document, beyond flask-smorest's `@bp.response`.

Views keep reading their input with `app.core.http` (our 415/400 errors, `param` naming the field),
so these decorators only document: `json_body(Schema, ...)` (several schemas: `oneOf`),
`query_args(Schema)`, `streams(...)` (`text/event-stream` as a second 200 content type, one event's
schema) and `errors(404, (409, "why"), ...)`. `ErrorResponses`, an apispec plugin, then writes every error
response's body in the shape of the API its path belongs to (`error_schema_name`) and
adds the statuses every route can answer, so no view has to repeat them.
"""
from __future__ import annotations

import http
from collections.abc import Callable, Sequence
from typing import Any

from apispec import APISpec, BasePlugin
from apispec.ext.marshmallow import MarshmallowPlugin
from flask_smorest import Blueprint
from marshmallow import INCLUDE, RAISE, Schema, fields

from app.core.errors import anthropic_shaped, openai_shaped

ErrorStatus = int | tuple[int, str]
EVENT_STREAM = "text/event-stream"
UNNAMED_EVENT = "message"  # the name of an event sent without an `event:` line (the SSE standard's)
CONTENT_SCHEMA = "x-contentSchema"
JSON_OBJECT_TEXT = r"^\{[\s\S]*\}$"

EVERY_ROUTE = {400: "A NUL character (%00) in the URL.",
               414: "The URL is longer than 4,096 bytes.",
               431: "A header is longer than 8,192 bytes.",
               500: "An unexpected error; the request id is in X-Request-ID."}
WITH_A_BODY = {400: "Malformed JSON, a body that is not an object, a NUL character, or an invalid field "
                    "(`param` names it).",
               413: "The body is larger than MAX_BODY_BYTES.",
               415: "The body is not `application/json`."}


class ErrorDetailSchema(Schema):
    """The error's fields; other details (`chat_id`, `attempts`, `provider`...) may follow."""

    class Meta:
        unknown = INCLUDE

    message = fields.String(required=True, metadata={"description": "What went wrong, safe to show."})
    type = fields.String(required=True, metadata={"description": "The error's family (OpenAI's types)."})
    code = fields.String(required=True, metadata={"description": "A stable machine-readable code."})
    param = fields.String(allow_none=True, metadata={"description": "The request field at fault, when one is."})
    fields_ = fields.Dict(data_key="fields", metadata={"description": "Each invalid field and its problems."})


class ErrorSchema(Schema):
    """This server's error body: the error's fields (and any details, such as `chat_id` or `attempts`)
    under `error`, and `success: false`."""

    class Meta:
        unknown = RAISE

    error = fields.Nested(ErrorDetailSchema, required=True)
    success = fields.Boolean(required=True, metadata={"description": "Always false."})


class OpenAIErrorDetailSchema(Schema):
    class Meta:
        unknown = RAISE

    message = fields.String(required=True)
    type = fields.String(required=True)
    code = fields.String(required=True, allow_none=True)
    param = fields.String(required=True, allow_none=True)


class OpenAIErrorSchema(Schema):
    """OpenAI's error body, answered under `/v1/` and `/api/v1/` so the openai SDK raises its own errors."""

    class Meta:
        unknown = RAISE

    error = fields.Nested(OpenAIErrorDetailSchema, required=True)


class AnthropicErrorDetailSchema(Schema):
    class Meta:
        unknown = RAISE

    type = fields.String(required=True, metadata={"description": "Anthropic's error type for the status."})
    message = fields.String(required=True)


class AnthropicErrorSchema(Schema):
    """Anthropic's error body, answered by its Messages API so the anthropic SDK raises its own errors."""

    class Meta:
        unknown = RAISE

    type = fields.String(required=True, metadata={"enum": ["error"]})
    error = fields.Nested(AnthropicErrorDetailSchema, required=True)


def error_schema_name(path: str) -> str:
    """The name of the error schema of the API `path` belongs to."""
    if anthropic_shaped(path):
        return "AnthropicError"
    return "OpenAIError" if openai_shaped(path) else "Error"


def json_body(*schemas: type[Schema], description: str | None = None) -> Callable:
    """Document the JSON body a view reads with `parse_body` (or `load`): one schema, or `oneOf` several."""
    schema: Any = schemas[0] if len(schemas) == 1 else {"oneOf": list(schemas)}
    body = {"required": True, "content": {"application/json": {"schema": schema}}}
    if description:
        body["description"] = description
    return Blueprint.doc(requestBody=body)


def query_args(schema: type[Schema]) -> Callable:
    """Document the query string a view reads with `parse_query(schema)`."""
    return Blueprint.doc(parameters=[{"in": "query", "schema": schema}])


def streams(description: str, *payloads: Any, events: Sequence[str] = (UNNAMED_EVENT,),
            end: str | None = None) -> Callable:
    """Document `text/event-stream` as the other 200 content type of a view that can stream.

    Its schema is one server-sent event as a client reads it (and as schemathesis checks each event
    of a streamed answer): `event`, the name its `event:` line gives (`message` without one: one of
    `events`), and `data`, its text: one JSON object matching one of `payloads` (marshmallow schemas
    or schema objects), or `end`, a marker that ends the stream (OpenAI's `[DONE]`). Comment lines
    (`: heartbeat`) are not events. OpenAPI 3.0 has no keyword for "this string is JSON of that
    schema", so the payload is JSON Schema's `contentMediaType`/`contentSchema` as the extensions
    `x-contentMediaType`/`x-contentSchema` (`EventStreams` turns marshmallow schemas there into
    references); `tests/test_openapi.py` holds every streamed event to them."""
    payload: Any = payloads[0] if len(payloads) == 1 else {"oneOf": list(payloads)}
    data: dict[str, Any] = {"type": "string", "pattern": JSON_OBJECT_TEXT,
                            "description": "One JSON object (its schema: `x-contentSchema`).",
                            "x-contentMediaType": "application/json", CONTENT_SCHEMA: payload}
    if end is not None:
        data = {"oneOf": [data, {"type": "string", "enum": [end], "description": "The end of the stream."}]}
    event = {"type": "object", "description": description, "required": ["event", "data"],
             "additionalProperties": False,
             "properties": {"event": {"type": "string", "enum": list(events),
                                      "description": f"The event's name (`{UNNAMED_EVENT}`: no `event:` line)."},
                            "data": data}}
    return Blueprint.doc(responses={"200": {"content": {EVENT_STREAM: {"schema": event}}}})


def errors(*statuses: ErrorStatus) -> Callable:
    """Document the error statuses a view answers besides those of every route (see `ErrorResponses`):
    `errors(404, (409, "Another request is answering this chat."))`. The body's schema is filled in
    from the path."""
    responses: dict[str, Any] = {}
    for status in statuses:
        code, why = status if isinstance(status, tuple) else (status, http.HTTPStatus(status).phrase)
        add_reason(responses, str(code), why)
    return Blueprint.doc(responses=responses)


def text_answer(media_type: str, description: str) -> Callable:
    """Document a view whose 200 is not JSON: a `text/html` page, `text/plain` metrics."""
    return Blueprint.doc(responses={"200": {"description": description,
                                            "content": {media_type: {"schema": {"type": "string"}}}}})


class ErrorResponses(BasePlugin):
    """Every operation's error responses: the statuses every route (and every route with a body) can
    answer are added, and each error's body is the error schema of the path's API (unless the view
    documented another, as `/health` does for its 503)."""

    def init_spec(self, spec) -> None:
        super().init_spec(spec)
        spec.components.schema("Error", schema=ErrorSchema)
        spec.components.schema("OpenAIError", schema=OpenAIErrorSchema)
        spec.components.schema("AnthropicError", schema=AnthropicErrorSchema)

    def operation_helper(self, path: str | None = None, operations: dict | None = None, **kwargs: Any) -> None:
        error_ref = {"$ref": "#/components/schemas/" + error_schema_name(path or "")}
        for operation in (operations or {}).values():
            responses = operation["responses"] = by_status_text(operation.get("responses", {}))
            implied = {**EVERY_ROUTE, **(WITH_A_BODY if "requestBody" in operation else {})}
            for code, why in implied.items():
                add_reason(responses, str(code), why)
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400:
                    response.setdefault("content", {"application/json": {"schema": error_ref}})


def by_status_text(responses: dict[Any, Any]) -> dict[str, Any]:
    """The responses keyed by status text: `@bp.response(200)` keys an int, `Blueprint.doc` a string,
    and the same status documented both ways is one response (its content types merged)."""
    merged: dict[str, Any] = {}
    for status, response in responses.items():
        into = merged.setdefault(str(status), {})
        content = {**into.get("content", {}), **response.get("content", {})}
        into.update(response)
        if content:
            into["content"] = content
    return merged


def add_reason(responses: dict[str, Any], status: str, why: str) -> None:
    """Add `why` to the description of the response for `status`, making it if absent."""
    response = responses.setdefault(status, {})
    described = response.get("description")
    if described in (None, http.HTTPStatus(int(status)).phrase):
        response["description"] = why
    elif why not in described:
        response["description"] = f"{described} Or: {why}"


class SchemaRules(BasePlugin):
    """A schema's rules across its fields, which marshmallow checks in `validates_schema` and field
    types cannot say (`anyOf`, `not`...): a schema class's `DOCUMENT_RULES`, added to its component; and
    its `UNDOCUMENTED` fields (where a view keeps what the client sent: not a field a client sends) left out."""

    def schema_helper(self, name: str, definition: dict, **kwargs: Any) -> dict | None:
        for field in getattr(kwargs.get("schema"), "UNDOCUMENTED", ()):
            definition.get("properties", {}).pop(field, None)
        return getattr(kwargs.get("schema"), "DOCUMENT_RULES", None)


class EventStreams(BasePlugin):
    """The payload schemas `streams` puts under `x-contentSchema` as references to components, as the
    marshmallow plugin does for the schemas of the keywords it knows (it does not look in extensions)."""

    def init_spec(self, spec: APISpec) -> None:
        super().init_spec(spec)
        self.spec = spec

    def operation_helper(self, path: str | None = None, operations: dict | None = None, **kwargs: Any) -> None:
        resolver = next(plugin.resolver for plugin in self.spec.plugins if isinstance(plugin, MarshmallowPlugin))
        assert resolver is not None, "the marshmallow plugin's init_spec has run"
        for operation in (operations or {}).values():
            for response in operation.get("responses", {}).values():
                event = response.get("content", {}).get(EVENT_STREAM, {}).get("schema", {})
                data = event.get("properties", {}).get("data", {})
                for text in data.get("oneOf", [data]):
                    if CONTENT_SCHEMA in text:
                        text[CONTENT_SCHEMA] = resolver.resolve_schema_dict(text[CONTENT_SCHEMA])
