"""Answers in OpenAI's chat-completion shapes, shared by `/v1/chat/completions` and `/v1/ask`.

Reasoning state that must come back with the next turn rides where the clients of OpenAI-style
gateways keep it: Claude's signed thinking blocks as the message's `thinking_blocks` (LiteLLM's
field, which the OpenAI Agents SDK and LiteLLM's own client read and send back), Gemini's thought
signature as a tool call's `extra_content.google.thought_signature` (Google's OpenAI-compatible API).
"""
from __future__ import annotations

import time
import uuid
from typing import Any

from flask import Response

from app.llm.gateway import Answer
from app.llm.providers.base import CompletionRequest
from app.llm.registry import Route
from app.llm.responses import answer_response
from app.llm.sse import OpenAIChunks, signature_content


def completion_body(answer: Answer) -> dict[str, Any]:
    """OpenAI's `chat.completion` for `answer`: its one choice, or (`n` > 1) every choice as the upstream
    gave it."""
    body = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
        "model": answer.model, "choices": answer.choices or [choice_of(answer)], "usage": answer.usage.to_dict(),
        "provider": answer.provider,
    }
    if answer.attempts:
        body["attempts"] = [a.to_dict() for a in answer.attempts]
    return body


def choice_of(answer: Answer) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.text or (None if answer.tool_calls else "")}
    if answer.tool_calls:
        message["tool_calls"] = [{"id": call.id, "type": "function",
                                  "function": {"name": call.name, "arguments": call.arguments},
                                  **signature_content(call.signature)}
                                 for call in answer.tool_calls]
    if answer.reasoning:
        message["reasoning_content"] = answer.reasoning
    if answer.thinking:
        message["thinking_blocks"] = answer.thinking
    choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": answer.finish_reason}
    if answer.logprobs is not None:
        choice["logprobs"] = answer.logprobs
    return choice


def openai_response(request: CompletionRequest, routes: list[Route], stream: bool,
                    include_usage: bool = False) -> Response:
    return answer_response(request, routes, stream, OpenAIChunks(include_usage=include_usage), completion_body)
