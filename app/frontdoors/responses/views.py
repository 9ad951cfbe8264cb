"""OpenAI's Responses API: `client.responses.create`, `client.responses.stream`, `retrieve`, `delete` and
`input_items.list` of the openai SDK pointed at `http://host:5001/v1` work unchanged, for any model
this server routes. Responses are stored unless `store` is false, and belong to the caller's key.
A model served by an upstream with the Responses API itself (OpenAI) receives the body as it came
(`app.frontdoors.responses.native`); any other its translation."""
from __future__ import annotations

import logging
from typing import Any

from flask import jsonify
from flask_smorest import Blueprint

from app.core.caller import current_caller
from app.core.errors import BadRequest
from app.core.http import json_object, load, parse_query
from app.core.openapi import errors, json_body, query_args, streams
from app.frontdoors.responses import service as stored
from app.frontdoors.responses.native import answered, native_body, request_for, translated_chain
from app.frontdoors.responses.schemas import (
    RESPONSES_EVENT_NAMES,
    RESPONSES_EVENTS,
    RESPONSES_STREAM,
    InputItemListSchema,
    InputItemsQueryDocument,
    InputItemsQuerySchema,
    ResponseDeletedSchema,
    ResponseObjectSchema,
    ResponsesSchema,
    RetrieveQueryDocument,
    RetrieveQuerySchema,
)
from app.frontdoors.responses.translate import completion_request, envelope, response_body, stored_items
from app.llm.responses import GATEWAY_ERRORS, answer_response, registry
from app.llm.sse import ResponsesEvents

log = logging.getLogger("aiserver.responses")
bp = Blueprint("responses", __name__, description="OpenAI's Responses API (point the openai SDK at /v1).")
NOT_FOUND = (404, "No stored response with this id that this key may read.")


@bp.post("/v1/responses")
@bp.post("/api/v1/responses")
@json_body(ResponsesSchema)
@bp.response(200, ResponseObjectSchema, description="The response; with `stream: true`, the SSE event stream.")
@streams(RESPONSES_STREAM, *RESPONSES_EVENTS, events=RESPONSES_EVENT_NAMES)
@errors(*GATEWAY_ERRORS, (404, "Unknown provider or model, or no stored `previous_response_id` this key may read."))
def create_response():
    """Create a model response: text, function calls, structured output, reasoning, streaming; stored
    (with its input) unless `store` is false, continuing a stored one with `previous_response_id`."""
    raw = json_object()
    body = load(ResponsesSchema, raw)
    if body["extra"].get("background"):
        raise BadRequest("The parameter 'background' is not supported: responses are answered within the request "
                         "(stream them to see them grow).", code="unsupported_parameter",
                         details={"param": "background"})
    caller = current_caller()
    given = stored.resolve_references(body["input"], caller.reader)
    items = stored_items(given)
    chain = stored.chain_items(body["previous_response_id"], caller.reader) if body["previous_response_id"] else []
    request, routes = request_for(registry().routes_for_model(body["model"]), native_body(raw, chain, given),
                                  lambda: completion_request({**body, "input": given}, translated_chain(chain)))
    echo = envelope(body)
    events = ResponsesEvents(echo)
    keep = body["store"] is not False

    def whole(answer) -> dict[str, Any]:
        if answer.native is not None:
            response = answered(answer.native, echo, answer.provider)
        else:
            response = response_body(echo, answer)
        if keep:
            stored.save(response, items, caller.owner)
        return response

    def stream_ended() -> None:
        response = events.final()
        if keep and response is not None:
            save_streamed(response, items, caller.owner)

    return answer_response(request, routes, body["stream"], events, whole, on_end=stream_ended)


def save_streamed(response: dict[str, Any], items: list[dict[str, Any]], owner: str | None) -> None:
    """Store a streamed response once it ended; the client already has it, so a failure is only logged."""
    try:
        stored.save(response, items, owner)
    except Exception:
        log.exception("could not store response %s", response["id"])


@bp.get("/v1/responses/<response_id>")
@bp.get("/api/v1/responses/<response_id>")
@query_args(RetrieveQueryDocument)
@bp.response(200, ResponseObjectSchema)
@errors(NOT_FOUND, (400, "`stream`, `starting_after` or `include`, which a stored response cannot honour."))
def retrieve_response(response_id: str):
    """A stored response, as it was answered."""
    refuse_given(parse_query(RetrieveQuerySchema), "stream", "starting_after", "include")
    return jsonify(stored.get(response_id, current_caller().reader))


@bp.delete("/v1/responses/<response_id>")
@bp.delete("/api/v1/responses/<response_id>")
@bp.response(200, ResponseDeletedSchema)
@errors(NOT_FOUND)
def delete_response(response_id: str):
    """Delete a stored response and its input items; responses continuing from it no longer carry it."""
    stored.delete(response_id, current_caller().reader)
    return jsonify({"id": response_id, "object": "response.deleted", "deleted": True})


@bp.get("/v1/responses/<response_id>/input_items")
@bp.get("/api/v1/responses/<response_id>/input_items")
@query_args(InputItemsQueryDocument)
@bp.response(200, InputItemListSchema)
@errors(NOT_FOUND, (400, "An invalid limit or order, an `after` that is not an item of this response, "
                         "or `before` or `include`."))
def list_input_items(response_id: str):
    """A page of the input items a stored response was given (not those of the responses it continues)."""
    query = parse_query(InputItemsQuerySchema)
    refuse_given(query, "before", "include")
    return jsonify(stored.input_items(response_id, current_caller().reader, query["limit"], query["order"],
                                      query["after"]))


def refuse_given(query: dict[str, Any], *names: str) -> None:
    """400 naming the first of `names` the query gives (a false `stream` is not given)."""
    given = next((name for name in names if query[name] not in (None, False)), None)
    if given:
        raise BadRequest(f"The parameter '{given}' is not supported for stored responses.",
                         code="unsupported_parameter", details={"param": given})
