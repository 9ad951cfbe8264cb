"""OpenAI's Responses API: `client.responses.create` and `client.responses.stream` of the openai SDK
pointed at `http://host:5001/v1` work unchanged, for any model this server routes."""
from __future__ import annotations

import functools

from flask_smorest import Blueprint

from app.core.http import parse_body
from app.core.openapi import errors, json_body, streams
from app.frontdoors.responses.schemas import RESPONSES_STREAM, ResponseObjectSchema, ResponsesSchema
from app.frontdoors.responses.translate import completion_request, envelope, response_body
from app.llm.responses import GATEWAY_ERRORS, answer_response, registry
from app.llm.sse import ResponsesEvents

bp = Blueprint("responses", __name__, description="OpenAI's Responses API (point the openai SDK at /v1).")


@bp.post("/v1/responses")
@bp.post("/api/v1/responses")
@json_body(ResponsesSchema)
@bp.response(200, ResponseObjectSchema, description="The response; with `stream: true`, the SSE event stream.")
@streams(RESPONSES_STREAM)
@errors(*GATEWAY_ERRORS)
def create_response():
    """Create a model response: text, function calls, structured output, reasoning, streaming."""
    body = parse_body(ResponsesSchema)
    request = completion_request(body)
    echo = envelope(body)
    return answer_response(request, registry().routes_for_model(body["model"]), body["stream"],
                           ResponsesEvents(echo), functools.partial(response_body, echo))
