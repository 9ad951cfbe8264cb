"""Fake of OpenAI's Chat Completions API; also stands in for Ollama and other OpenAI-compatible servers."""

from __future__ import annotations

import time
import uuid
from typing import Iterator

from .server import FakeServer, Frame, Handler, RecordedRequest, Reply, sse, text_of

SYSTEM_FINGERPRINT = "fp_fake0001"
FINISH_REASONS = {"stop": "stop", "length": "length"}
# status of a scripted error -> (error.type, error.code), as the real API sends them
ERROR_KINDS = {
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


class FakeOpenAI(FakeServer):
    base_path = "/v1"
    default_models = ("gpt-4o-mini", "gpt-4o")
    text_only_models = ("gpt-3.5-turbo",)  # models that refuse image parts, as the real API does

    def route(self, handler: Handler, request: RecordedRequest) -> None:
        if (request.method, request.path) == ("POST", "/v1/chat/completions"):
            body = request.json
            image_at = first_image_part(body.get("messages"))
            if image_at and body.get("model") in self.text_only_models:
                error = {"message": "Invalid content type. image_url is only supported by certain models.",
                         "type": "invalid_request_error", "param": image_at, "code": None}
                handler.send_json(400, {"error": error}, self.response_headers())
                return
            self.serve(handler, request, str(body.get("model", "")), stream=bool(body.get("stream")))
        elif (request.method, request.path) == ("GET", "/v1/models"):
            models = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"} for m in self.models()]
            handler.send_json(200, {"object": "list", "data": models}, self.response_headers())
        else:
            error = {"message": f"Invalid URL ({request.method} {request.path})", "type": "invalid_request_error",
                     "param": None, "code": None}
            handler.send_json(404, {"error": error}, self.response_headers())

    def auth_error(self, request: RecordedRequest) -> tuple[int, str] | None:
        presented = request.headers.get("authorization", "")
        if presented == f"Bearer {self.api_key}":
            return None
        # OpenAI itself masks the key; some compatible servers echo it whole, the case to be safe against
        return 401, f"Incorrect API key provided: {presented.removeprefix('Bearer ')}."

    def error_body(self, status: int, message: str, reply: Reply | None = None) -> dict:
        default_type = "server_error" if status >= 500 else "invalid_request_error"
        error_type, code = ERROR_KINDS.get(status, (default_type, None))
        return {"error": {"message": message, "type": error_type, "param": None, "code": code}}

    def response_headers(self) -> dict[str, str]:
        return {"x-request-id": f"req_{uuid.uuid4().hex}"}

    def last_user_text(self, request: RecordedRequest) -> str:
        users = [m for m in request.json.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
        return text_of(users[-1].get("content")) if users else ""

    def completion(self, reply: Reply, model: str, request: RecordedRequest) -> dict:
        message = {"role": "assistant", "content": reply.full_text, "refusal": None, "annotations": []}
        return {
            **self._envelope("chat.completion", model),
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": _finish(reply)}],
            "usage": _usage(reply),
        }

    def frames(self, reply: Reply, model: str, request: RecordedRequest) -> Iterator[Frame]:
        """Role chunk, one chunk per piece, finish chunk, optional usage chunk, then ``[DONE]``."""
        include_usage = bool((request.json.get("stream_options") or {}).get("include_usage"))
        envelope = self._envelope("chat.completion.chunk", model)
        if include_usage:
            envelope["usage"] = None  # the real API sends an explicit null until the usage chunk

        def chunk(delta: dict, finish_reason: str | None = None, content: bool = False) -> Frame:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return sse({**envelope, "choices": [choice]}, content=content)

        yield chunk({"role": "assistant", "content": "", "refusal": None})
        for piece in reply.pieces():
            yield chunk({"content": piece}, content=True)
        yield chunk({}, _finish(reply))
        if include_usage:
            yield sse({**envelope, "choices": [], "usage": _usage(reply)})
        yield sse("[DONE]")

    @staticmethod
    def _envelope(kind: str, model: str) -> dict:
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": kind,
            "created": int(time.time()),
            "model": model,
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }


def first_image_part(messages: object) -> str | None:
    """Where the first image_url part is, in the real API's `param` notation, e.g. `messages.[0].content.[1].type`."""
    for i, message in enumerate(messages if isinstance(messages, list) else []):
        content = message.get("content") if isinstance(message, dict) else None
        for j, part in enumerate(content if isinstance(content, list) else []):
            if isinstance(part, dict) and part.get("type") == "image_url":
                return f"messages.[{i}].content.[{j}].type"
    return None


def _finish(reply: Reply) -> str:
    return FINISH_REASONS.get(reply.finish_reason, reply.finish_reason)


def _usage(reply: Reply) -> dict:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.prompt_tokens + reply.output_tokens,
    }
