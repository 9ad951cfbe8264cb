"""`POST /chat/{provider}` and `POST /chat`: chat over a whole conversation sent by the client.

`/chat/{provider}` streams by default (as the older server did); `/chat` answers one JSON unless
`"stream": true`. The backend picks the model: a `model` field from the client is ignored.
"""
from __future__ import annotations

from flask import Blueprint, jsonify

from app.api.common import answer_headers, event_stream, gateway, note_answer, parse_body, registry
from app.providers.base import CompletionRequest
from app.openapi import documented
from app.schemas import ChatMessagesSchema
from app.sse import NativeEvents

bp = Blueprint("chat", __name__)


@bp.post("/chat/<provider>")
@documented(body=ChatMessagesSchema)
def chat_with_provider(provider: str):
    """Chat with a provider (gpt, claude, gemini, ...); streams SSE unless "stream": false."""
    body = parse_body(ChatMessagesSchema())
    registry().get(provider)
    return stateless_chat(body, provider, stream_by_default=True)


@bp.post("/chat")
@documented(body=ChatMessagesSchema)
def chat():
    """Chat on the default provider; one JSON answer unless "stream": true."""
    body = parse_body(ChatMessagesSchema())
    return stateless_chat(body, body["provider"], stream_by_default=False)


def stateless_chat(body: dict, provider: str | None, stream_by_default: bool):
    request = CompletionRequest(body["messages"], max_tokens=body["max_tokens"], temperature=body["temperature"])
    routes = registry().plan(provider)
    stream = stream_by_default if body["stream"] is None else body["stream"]
    if stream:
        return event_stream(gateway().stream(request, routes), NativeEvents())
    answer = gateway().complete(request, routes)
    note_answer(answer)
    response = jsonify({"response": answer.text, "provider": answer.provider, "model": answer.model,
                        "finish_reason": answer.finish_reason, "usage": answer.usage.to_dict(),
                        "attempts": [a.to_dict() for a in answer.attempts], "success": True})
    response.headers.update(answer_headers(answer))
    return response
