"""Anthropic's Messages API: the anthropic SDK (or an agent honouring `ANTHROPIC_BASE_URL`) pointed at
`http://host:5001` or `http://host:5001/anthropic` works unchanged, for a Claude model or any other."""
from __future__ import annotations

from typing import Any

from flask import jsonify, request
from flask_smorest import Blueprint

from app.core.http import json_object, load
from app.core.openapi import errors, json_body, streams
from app.frontdoors.anthropic.schemas import (
    ANTHROPIC_EVENT_NAMES,
    ANTHROPIC_EVENTS,
    ANTHROPIC_STREAM,
    CountTokensSchema,
    MessageAnswerSchema,
    MessagesSchema,
    TokenCountSchema,
)
from app.frontdoors.anthropic.translate import WIRE_NAMES, message_body, native_body, request_for
from app.llm.registry import Route
from app.llm.responses import GATEWAY_ERRORS, answer_response, gateway, registry
from app.llm.sse import AnthropicEvents
from app.llm.usage import estimate_tokens

bp = Blueprint("anthropic_messages", __name__,
               description="Anthropic's Messages API (point the anthropic SDK at this server, or at /anthropic).")


@bp.post("/v1/messages")
@bp.post("/anthropic/v1/messages")
@json_body(MessagesSchema)
@bp.response(200, MessageAnswerSchema, description="The message; with `stream: true`, Anthropic's SSE stream.")
@streams(ANTHROPIC_STREAM, *ANTHROPIC_EVENTS, events=ANTHROPIC_EVENT_NAMES)
@errors(*GATEWAY_ERRORS)
def messages():
    """Create a message: a Claude model receives the body as it came; any other is translated."""
    body = json_object()
    checked = load(MessagesSchema, body)
    routes = registry().routes_for_model(checked["model"])
    completion = request_for(routes, checked, native_body(body, request.headers))
    return answer_response(completion, routes, checked["stream"], AnthropicEvents(), message_body,
                           wire_names=WIRE_NAMES)


@bp.post("/v1/messages/count_tokens")
@bp.post("/anthropic/v1/messages/count_tokens")
@json_body(CountTokensSchema)
@bp.response(200, TokenCountSchema, description="The input tokens: Anthropic's count for a Claude model, else "
                                                "an estimate (`estimated: true`, header `X-Token-Count: estimate`).")
@errors(*GATEWAY_ERRORS)
def count_tokens():
    """Count a message's input tokens without creating it."""
    body = json_object()
    checked = load(CountTokensSchema, body)
    provider, model = registry().resolve_model(checked["model"])
    completion = request_for([Route(provider, model)], checked, native_body(body, request.headers))
    counted = gateway().count_tokens(Route(provider, model), completion)
    if counted is not None:
        return jsonify({"input_tokens": counted})
    response = jsonify({"input_tokens": estimate_input_tokens(checked), "estimated": True})
    response.headers["X-Token-Count"] = "estimate"
    return response


def estimate_input_tokens(checked: dict[str, Any]) -> int:
    """About four characters a token over the system prompt, the messages and the tools (images at
    IMAGE_TOKENS each, their data not counted): `app.llm.usage.estimate_tokens`."""
    return estimate_tokens([checked["system"], checked["messages"], checked["tools"]])
