"""`POST /chat`, `POST /chat/{provider}` and the persisted chat history.

`POST /chat` serves two shapes, and the body decides: `{"messages": [...]}` is stateless (the
client sends the whole conversation; nothing is stored), `{"message": "...", "chat_id": ...}` is a
persisted conversation (see `app.conversations.service`). Both answer one JSON unless `"stream": true`.
`/chat/{provider}` is stateless and streams by default (as the older server did) and picks the model
itself (a `model` field is ignored); a persisted chat takes a `model` of `GET /v1/models`.
"""
from __future__ import annotations

from typing import Any

from flask import current_app, jsonify
from flask_smorest import Blueprint
from werkzeug.routing import BaseConverter

from app.conversations import service as conversations
from app.conversations.files import FileLimits, file_texts
from app.conversations.schemas import (
    RESUMED_EVENTS,
    STORED_CHAT_EVENTS,
    STORED_STREAM,
    ChatDeletedSchema,
    ChatHistorySchema,
    ChatListSchema,
    ChatSearchSchema,
    ConversationChatSchema,
    HistoryQuerySchema,
    RenamedChatSchema,
    ResumeQuerySchema,
    SearchQuerySchema,
    StoppingSchema,
    StoredChatAnswerSchema,
    UpdateChatSchema,
)
from app.core.caller import current_caller
from app.core.errors import APIError
from app.core.http import json_object, load, parse_body, parse_query
from app.core.openapi import errors, json_body, query_args, streams
from app.llm.providers.base import CompletionRequest
from app.llm.responses import (
    GATEWAY_ERRORS,
    answer_headers,
    event_stream,
    gateway,
    honouring_routes,
    note_answer,
    registry,
)
from app.llm.schemas import NATIVE_EVENTS, NATIVE_STREAM, ChatAnswerSchema, ChatMessagesSchema
from app.llm.sse import NativeEvents

bp = Blueprint("chat", __name__, description="Chat with a provider, stateless or as a stored conversation.")

STORE_ERRORS = ((400, "An invalid chat_id (the message gives the rule) or cursor."),
                (404, "No such chat."),
                (503, "The database is unavailable or busy."))


class ProviderName(BaseConverter):
    """`/chat/<provider:provider>`: any path segment but the names of `/chat/...` routes of their own, so
    `/chat/history` is not also `POST /chat/{provider}` (its `Allow` advertised POST)."""

    regex = r"(?!(?:history|search|delete|gist)$)[^/]+"


@bp.record_once
def register_converter(state: Any) -> None:
    """Before the routes below are added (deferred in order) the URL map must know the converter."""
    state.app.url_map.converters["provider"] = ProviderName


@bp.post("/chat/<provider:provider>")
@json_body(ChatMessagesSchema)
@bp.response(200, ChatAnswerSchema, description='The answer, with `"stream": false`; an SSE stream by default.')
@streams(NATIVE_STREAM, *NATIVE_EVENTS)
@errors(*GATEWAY_ERRORS)
def chat_with_provider(provider: str):
    """Chat with a provider (gpt, claude, gemini, ...); streams SSE unless "stream": false."""
    body = parse_body(ChatMessagesSchema)
    registry().get(provider)
    return stateless_chat(body, provider, stream_by_default=True)


@bp.post("/chat")
@json_body(ChatMessagesSchema, ConversationChatSchema,
           description='`{"messages": [...]}` is stateless; `{"message", "chat_id"?}` is a stored conversation.')
@bp.response(200, {"oneOf": [ChatAnswerSchema, StoredChatAnswerSchema]},
             description='The answer (stateless, or stored with its chat_id); with `"stream": true`, an SSE stream.')
@streams(NATIVE_STREAM + STORED_STREAM, *NATIVE_EVENTS, *STORED_CHAT_EVENTS)
@errors(*GATEWAY_ERRORS, *STORE_ERRORS,
        (409, "Another request is answering this chat (`chat_busy`), it changed since `after` (`chat_changed`), or "
              "the message to redo is not shown (`message_not_active`)."),
        (413, "An attached file is too large or has too much text."))
def chat():
    """Chat: {"message", "chat_id"?} is stored as a conversation; {"messages": [...]} is stateless.

    One JSON answer unless "stream": true; a streamed persisted chat's last event carries chat_id."""
    data = json_object()
    if "messages" in data:
        body = load(ChatMessagesSchema, data)
        return stateless_chat(body, body["provider"], stream_by_default=False)
    return persisted_chat(load(ConversationChatSchema, data))


def stateless_chat(body: dict, provider: str | None, stream_by_default: bool):
    request = CompletionRequest(body["messages"], max_tokens=body["max_tokens"], temperature=body["temperature"])
    routes = honouring_routes(request, registry().plan(provider))
    stream = stream_by_default if body["stream"] is None else body["stream"]
    if stream:
        return event_stream(gateway().stream(request, routes), NativeEvents())
    answer = gateway().complete(request, routes)
    note_answer(answer.provider, answer.model, answer.usage.total_tokens)
    response = jsonify({"response": answer.text, "provider": answer.provider, "model": answer.model,
                        "finish_reason": answer.finish_reason, "usage": answer.usage.to_dict(),
                        "attempts": [a.to_dict() for a in answer.attempts], "success": True})
    response.headers.update(answer_headers(answer))
    return response


def persisted_chat(body: dict):
    """Store the user's message (before any provider call or response byte), then answer or stream."""
    params = {"max_tokens": body["max_tokens"], "temperature": body["temperature"]}
    routes = honouring_routes(CompletionRequest([], **params), chosen_routes(body["provider"], body["model"]))
    files = file_texts(body["files"], FileLimits.from_config(current_app.config)) if body["files"] else ()
    ask = conversations.Ask(content=body["message"], files=files, after=body["after"], regenerate=body["regenerate"],
                            edit=body["edit"], replace=body["replace"], system=body["system"],
                            temperature=body["temperature"])
    system_prompt = current_app.extensions["system_prompt"].text()
    settings = conversations.ChatSettings.from_config(current_app.config)
    turn = conversations.begin_turn(body["chat_id"] or conversations.new_chat_id(), None, system_prompt, settings,
                                    owner=current_caller().owner, ask=ask)
    if params["temperature"] is None:
        params["temperature"] = turn.temperature
    ids = {"chat_id": turn.chat_id, "message_id": turn.question_id, "answer_id": turn.answer_id}
    if body["stream"]:
        events = conversations.stream_reply(gateway(), routes, turn, current_app.extensions["price"], **params)
        if body["resumable"]:
            events = conversations.Detached(events).start().follow(settings.turn_deadline_s)
        try:
            response = event_stream(events, NativeEvents(extra_done=ids, extra_start=ids, reasoning=True))
        except APIError as error:
            error.details.update({key: value for key, value in ids.items() if key not in error.details})
            raise
        response.headers["X-Chat-ID"] = turn.chat_id
        response.headers["X-Answer-ID"] = str(turn.answer_id)
        return response
    answer, cost = conversations.reply(gateway(), routes, turn, current_app.extensions["price"], **params)
    note_answer(answer.provider, answer.model, answer.usage.total_tokens)
    priced = {} if cost is None else {"cost_usd": cost}
    response = jsonify({"response": answer.text, "provider": answer.provider, "model": answer.model, **ids,
                        "usage": answer.usage.to_dict(), **priced, "reasoning": answer.reasoning, "success": True})
    response.headers.update(answer_headers(answer))
    response.headers["X-Chat-ID"] = turn.chat_id
    response.headers["X-Answer-ID"] = str(turn.answer_id)
    return response


def chosen_routes(provider: str | None, model: str | None):
    """The routes for a chosen model (as `/v1/chat/completions` resolves it), else for a provider."""
    return registry().routes_for_model(model) if model else registry().plan(provider)


@bp.get("/chat/history")
@query_args(HistoryQuerySchema)
@bp.response(200, ChatListSchema)
@errors((400, "An invalid limit or cursor."), (503, "The database is unavailable or busy."))
def history():
    """Chats, newest first: {"chats": {id: {created_at, last_updated, message_count}}, "next_cursor"}."""
    query = parse_query(HistoryQuerySchema)
    chats, next_cursor = conversations.list_chats(query["limit"], query["cursor"], owner=current_caller().reader)
    return jsonify({"chats": chats, "next_cursor": next_cursor, "success": True})


@bp.get("/chat/search")
@query_args(SearchQuerySchema)
@bp.response(200, ChatSearchSchema)
@errors((400, "An invalid q, limit or cursor."), (503, "The database is unavailable or busy."))
def search():
    """Chats whose title or messages contain q, newest first, paged as /chat/history; each with its match."""
    query = parse_query(SearchQuerySchema)
    chats, next_cursor = conversations.search_chats(query["q"], query["limit"], query["cursor"],
                                                    owner=current_caller().reader)
    return jsonify({"chats": chats, "next_cursor": next_cursor, "success": True})


@bp.patch("/chat/history/<chat_id>")
@json_body(UpdateChatSchema)
@bp.response(200, RenamedChatSchema)
@errors(*STORE_ERRORS)
def update_chat(chat_id: str):
    """Change a chat's title, system prompt or temperature: any of {"title", "system_prompt", "temperature"}."""
    conversations.require_chat_id(chat_id)
    changed = conversations.update_chat(chat_id, owner=current_caller().reader, **parse_body(UpdateChatSchema))
    return jsonify({"chat_id": chat_id, **changed, "success": True})


@bp.post("/chat/history/<chat_id>/messages/<int:message_id>/activate")
@bp.response(200, ChatHistorySchema)
@errors(*STORE_ERRORS, (409, "The chat is answering a message."))
def activate_version(chat_id: str, message_id: int):
    """Show version `message_id` of a message (and under it the newest versions); answers the chat."""
    conversations.require_chat_id(chat_id)
    history = conversations.activate(chat_id, message_id, owner=current_caller().reader)
    return jsonify({"chat_id": chat_id, "history": history, "success": True})


@bp.get("/chat/history/<chat_id>/messages/<int:answer_id>/stream")
@query_args(ResumeQuerySchema)
@bp.response(200, description="An SSE stream of the answer's text after `offset`, then how it was stored.")
@streams("`delta` events with the text after `offset`, as it is stored, then `done` (`status`, `usage`, "
         "`reasoning`) or `error` (`answer_lost`).", *RESUMED_EVENTS)
@errors(*STORE_ERRORS)
def resume_answer(chat_id: str, answer_id: int):
    """Follow an answer again (from any worker): its stored text after `offset`, then the rest as it comes."""
    conversations.require_chat_id(chat_id)
    offset = parse_query(ResumeQuerySchema)["offset"]
    key = conversations.answer_to_follow(chat_id, answer_id, owner=current_caller().reader)
    settings = conversations.ChatSettings.from_config(current_app.config)
    events = conversations.follow_stored(chat_id, key, answer_id, offset, settings)
    return event_stream(events, NativeEvents(extra_done={"chat_id": chat_id, "answer_id": answer_id}))


@bp.post("/chat/history/<chat_id>/messages/<int:answer_id>/stop")
@bp.response(200, StoppingSchema)
@errors(*STORE_ERRORS, (409, "That answer is not being produced (`not_answering`)."))
def stop_answer(chat_id: str, answer_id: int):
    """Stop an answer being produced (by any worker); it is stored `partial` within about a second."""
    conversations.require_chat_id(chat_id)
    conversations.request_stop(chat_id, answer_id, owner=current_caller().reader)
    return jsonify({"chat_id": chat_id, "answer_id": answer_id, "stopping": True, "success": True})


@bp.get("/chat/history/<chat_id>")
@bp.response(200, ChatHistorySchema)
@errors(*STORE_ERRORS)
def chat_history(chat_id: str):
    """One chat with every message, the system message first; 404 if unknown."""
    conversations.require_chat_id(chat_id)
    return jsonify({"chat_id": chat_id, "history": conversations.get_chat(chat_id, owner=current_caller().reader),
                    "success": True})


@bp.delete("/chat/delete/<chat_id>")
@bp.delete("/chat/history/<chat_id>")
@bp.response(200, ChatDeletedSchema)
@errors(*STORE_ERRORS)
def delete_chat(chat_id: str):
    """Delete a chat and its messages; 404 if unknown."""
    conversations.require_chat_id(chat_id)
    conversations.delete_chat(chat_id, owner=current_caller().reader)
    return jsonify({"message": f"Chat {chat_id} deleted successfully", "success": True})
