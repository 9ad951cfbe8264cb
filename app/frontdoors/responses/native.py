"""A Responses request for an upstream that offers OpenAI's Responses API itself (OpenAI; an
OpenAI-compatible endpoint with NAME_RESPONSES_API): the body is sent as it came, so built-in tools,
encrypted reasoning, `include`, `truncation`, `text.verbosity` and Responses-only models all work.

Only the chain is this server's: responses are stored here (`store`, true by default), never at the
upstream. So the upstream receives `store: false` and no `previous_response_id`; the chain that
`previous_response_id` names is read from this server's store and sent as input items before the
new input, and `item_reference` items are replaced by the stored items they name. The answer and its
events come back as the upstream sent them, with `previous_response_id` and `store` saying what this
server did with them.

Replaying stored items follows OpenAI's rules for `store: false`: a reasoning item goes back only
with its `encrypted_content` (ask `include: ["reasoning.encrypted_content"]` to have it kept), and
input messages go without the `id` this server gave them (OpenAI's input messages have none). A
reasoning item the client sends back itself without `encrypted_content` (the OpenAI Agents SDK does,
believing the response stored upstream) is left out for the same reason: with `store: false` the
upstream kept nothing to find it by, and refuses the whole request for it.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from app.core.errors import BadRequest
from app.llm.providers.base import OPENAI_RESPONSES, CompletionRequest, NativeBody
from app.llm.registry import Route

OURS = ("stream", "previous_response_id", "store")  # what this server answers for, never sent upstream
TRANSLATED_ITEMS = ("message", "function_call", "function_call_output", "reasoning")


def speaks_responses(route: Route) -> bool:
    return OPENAI_RESPONSES in route.provider.native_wires


def request_for(routes: list[Route], native: NativeBody,
                translate: Any) -> tuple[CompletionRequest, list[Route]]:
    """What the gateway is asked, and over which routes: the body as it came when every route speaks
    the Responses API; else also its translation (`translate()`), for the routes that do not. A body
    that cannot be translated (a built-in tool...) goes only to the routes that take it as it came,
    when the first one does; otherwise its 400 stands."""
    if all(speaks_responses(route) for route in routes):
        return CompletionRequest(messages=[], native=native), routes
    try:
        translated: CompletionRequest = translate()
    except BadRequest:
        if not speaks_responses(routes[0]):
            raise
        return CompletionRequest(messages=[], native=native), [r for r in routes if speaks_responses(r)]
    return replace(translated, native=native), routes


def native_body(body: dict[str, Any], chain: list[dict[str, Any]], given: str | list[dict[str, Any]]) -> NativeBody:
    """The body sent upstream: as it came, without what is ours (`OURS`), with `store: false`, and its
    input after the chain's items. `given` is the input with its item references resolved (one item
    for each): those are sent as stored items are replayed, the rest as they came."""
    sent = {name: value for name, value in body.items() if name not in OURS}
    sent["store"] = False
    if isinstance(given, str):
        items: Any = [{"role": "user", "content": given}] if chain else given
    else:
        items = [replayed for item, came in zip(given, body["input"])
                 if (replayed := replay(item) if is_reference(came) else sendable(came)) is not None]
    if chain:
        items = [replayed for item in chain if (replayed := replay(item)) is not None] + items
    sent["input"] = items
    return NativeBody(OPENAI_RESPONSES, sent)


def is_reference(item: Any) -> bool:
    return isinstance(item, dict) and item.get("type") == "item_reference"


def sendable(item: Any) -> Any:
    """An input item as it came, or None for a reasoning item without its encrypted content."""
    bare = isinstance(item, dict) and item.get("type") == "reasoning" and not item.get("encrypted_content")
    return None if bare else item


def replay(item: dict[str, Any]) -> dict[str, Any] | None:
    """A stored item as the upstream takes it back with `store: false`; None for a reasoning item
    without its encrypted content (the upstream kept nothing to find it by)."""
    kind = item.get("type", "message")
    if kind == "reasoning" and not item.get("encrypted_content"):
        return None
    if kind == "message" and item.get("role") != "assistant":
        return {key: value for key, value in item.items() if key != "id"}
    return item


def translated_chain(chain: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chain's items another vendor is sent: the results of OpenAI's built-in tools (a
    `web_search_call`...) stay with OpenAI; what they found is in the messages that follow them."""
    return [item for item in chain if item.get("type", "message") in TRANSLATED_ITEMS]


def answered(native: dict[str, Any], echo: dict[str, Any], provider: str | None) -> dict[str, Any]:
    """The upstream's response object as it came, saying what this server did with it: the chain it
    continues (`previous_response_id`), whether it is kept (`store`), and who answered."""
    return {**native, "previous_response_id": echo["previous_response_id"], "store": echo["store"],
            "provider": provider}
