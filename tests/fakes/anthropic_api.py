"""Fake of Anthropic's Messages API."""

from __future__ import annotations

import json
import uuid
from typing import Iterator

from .server import FakeServer, Frame, Handler, RecordedRequest, Reply, sse, text_of

FINISH_REASONS = {"stop": "end_turn", "length": "max_tokens"}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
TOOL_JSON_PIECE = 8  # characters of tool input per input_json_delta


class FakeAnthropic(FakeServer):
    default_models = ("claude-sonnet-4-5", "claude-haiku-4-5")

    def route(self, handler: Handler, request: RecordedRequest) -> None:
        if (request.method, request.path) == ("POST", "/v1/messages"):
            body = request.json
            self.serve(handler, request, str(body.get("model", "")), stream=bool(body.get("stream")))
        elif (request.method, request.path) == ("GET", "/v1/models"):
            handler.send_json(200, self._models_page(), self.response_headers())
        else:
            self.reject(handler, 404, f"Not found: {request.method} {request.path}")

    def auth_error(self, request: RecordedRequest) -> tuple[int, str] | None:
        """Accept the key as ``x-api-key`` or as a bearer token, which the 2.x SDK sends instead."""
        headers = request.headers
        if self.api_key in (headers.get("x-api-key"), headers.get("authorization", "").removeprefix("Bearer ")):
            return None
        return 401, "invalid x-api-key"

    def error_body(self, status: int, message: str, reply: Reply | None = None) -> dict:
        error_type = ERROR_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": error_type, "message": message}, "request_id": _id("req_")}

    def response_headers(self) -> dict[str, str]:
        return {"request-id": _id("req_")}

    def last_user_text(self, request: RecordedRequest) -> str:
        users = [m for m in request.json.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
        return text_of(users[-1].get("content")) if users else ""

    def completion(self, reply: Reply, model: str, request: RecordedRequest) -> dict:
        if reply.tool_input is not None:
            block = {**self._tool_block(request), "input": reply.tool_input}
        else:
            block = {"type": "text", "text": reply.full_text}
        usage = {"input_tokens": reply.prompt_tokens, "output_tokens": _output_tokens(reply)}
        return {**self._message(model, usage), "content": [block], "stop_reason": _stop_reason(reply)}

    def frames(self, reply: Reply, model: str, request: RecordedRequest) -> Iterator[Frame]:
        """The Messages streaming sequence, every event named by an ``event:`` line as the SDK requires."""
        start_usage = {"input_tokens": reply.prompt_tokens, "output_tokens": 1}
        yield _event("message_start", message={**self._message(model, start_usage), "content": [], "stop_reason": None})
        if reply.tool_input is not None:
            block = {**self._tool_block(request), "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in _tool_json_pieces(reply)]
        else:
            block = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": piece} for piece in reply.pieces()]
        yield _event("content_block_start", index=0, content_block=block)
        yield _event("ping")
        for delta in deltas:
            yield _event("content_block_delta", content=True, index=0, delta=delta)
        yield _event("content_block_stop", index=0)
        yield _event(
            "message_delta",
            delta={"stop_reason": _stop_reason(reply), "stop_sequence": None},
            usage={"output_tokens": _output_tokens(reply)},
        )
        yield _event("message_stop")

    def _models_page(self) -> dict:
        models = [
            {
                "type": "model",
                "id": model,
                "display_name": model.replace("-", " ").title(),
                "created_at": "2025-01-01T00:00:00Z",
                "lifecycle": "active",
            }
            for model in self.models()
        ]
        ids = [model["id"] for model in models] or [None]
        return {"data": models, "has_more": False, "first_id": ids[0], "last_id": ids[-1]}

    @staticmethod
    def _message(model: str, usage: dict) -> dict:
        usage = {**usage, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "service_tier": "standard"}
        return {"id": _id("msg_"), "type": "message", "role": "assistant", "model": model,
                "stop_sequence": None, "usage": usage}

    @staticmethod
    def _tool_block(request: RecordedRequest) -> dict:
        """A tool_use block for the forced tool, else the first one offered."""
        choice = request.json.get("tool_choice") or {}
        tools = request.json.get("tools") or [{}]
        name = choice.get("name") or tools[0].get("name") or "tool"
        return {"type": "tool_use", "id": _id("toolu_"), "name": name}


def _event(kind: str, content: bool = False, **fields: object) -> Frame:
    return sse({"type": kind, **fields}, event=kind, content=content)


def _tool_json_pieces(reply: Reply) -> list[str]:
    encoded = json.dumps(reply.tool_input)
    return [encoded[i : i + TOOL_JSON_PIECE] for i in range(0, len(encoded), TOOL_JSON_PIECE)]


def _output_tokens(reply: Reply) -> int:
    if reply.tool_input is None or reply.completion_tokens is not None:
        return reply.output_tokens
    return len(_tool_json_pieces(reply))


def _stop_reason(reply: Reply) -> str:
    if reply.tool_input is not None:
        return "tool_use"
    return FINISH_REASONS.get(reply.finish_reason, reply.finish_reason)


def _id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]
