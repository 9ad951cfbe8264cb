"""Answers in OpenAI's chat-completion shapes, shared by `/v1/chat/completions` and `/v1/ask`."""
from __future__ import annotations

import time
import uuid
from typing import Any

from flask import Response, jsonify

from app.llm.providers.base import CompletionRequest
from app.llm.registry import Route
from app.llm.responses import answer_headers, event_stream, gateway, note_answer
from app.llm.sse import OpenAIChunks


def completion_body(answer) -> dict[str, Any]:
    body = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
        "model": answer.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                     "finish_reason": answer.finish_reason}],
        "usage": answer.usage.to_dict(), "provider": answer.provider,
    }
    if answer.attempts:
        body["attempts"] = [a.to_dict() for a in answer.attempts]
    return body


def openai_response(request: CompletionRequest, routes: list[Route], stream: bool,
                    include_usage: bool = False) -> Response:
    if stream:
        return event_stream(gateway().stream(request, routes), OpenAIChunks(include_usage=include_usage))
    answer = gateway().complete(request, routes)
    note_answer(answer.provider, answer.model, answer.usage.total_tokens)
    response = jsonify(completion_body(answer))
    response.headers.update(answer_headers(answer))
    return response
