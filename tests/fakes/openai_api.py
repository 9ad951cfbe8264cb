"""Fake of OpenAI's Chat Completions and Embeddings APIs; also stands in for Ollama and other
OpenAI-compatible servers (whose reasoning comes back as ``reasoning_content``, as vLLM and DeepSeek
send it; OpenAI itself only counts reasoning tokens).

Like the real API it refuses an agent history that does not add up: a ``tool`` message answering
no earlier call, or an assistant's tool calls not each answered by a ``tool`` message."""

from __future__ import annotations

import base64
import struct
import time
import uuid
from typing import Iterator

from .server import FakeServer, Frame, Handler, RecordedRequest, Reply, embedding, fragments, sse, text_of

SYSTEM_FINGERPRINT = "fp_fake0001"
FINISH_REASONS = {"stop": "stop", "length": "length"}
EMBEDDING_DIMENSIONS = 8  # the fakes' full vector length; ``dimensions`` shortens it
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
        elif (request.method, request.path) == ("POST", "/v1/embeddings"):
            handler.send_json(200, self.embeddings(request.json), self.response_headers())
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

    def invalid(self, request: RecordedRequest) -> str | None:
        if request.path != "/v1/chat/completions":
            return None
        pending: list[str] = []
        for message in request.json.get("messages") or ():
            if message.get("role") == "tool":
                if message.get("tool_call_id") not in pending:
                    return ("Invalid parameter: messages with role 'tool' must be a response to a preceeding "
                            "message with 'tool_calls'.")
                pending.remove(message["tool_call_id"])
                continue
            if pending:
                return ("An assistant message with 'tool_calls' must be followed by tool messages responding to "
                        f"each 'tool_call_id'. The following tool_call_ids did not have response messages: "
                        f"{', '.join(pending)}")
            pending = [call["id"] for call in message.get("tool_calls") or ()]
        return None

    def embeddings(self, body: dict) -> dict:
        texts = [body["input"]] if isinstance(body.get("input"), str) else list(body.get("input") or ())
        dimensions = body.get("dimensions") or EMBEDDING_DIMENSIONS
        data = []
        for index, text in enumerate(texts):
            vector = embedding(text, dimensions)
            if body.get("encoding_format") == "base64":
                vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = sum(len(text.split()) for text in texts)
        return {"object": "list", "data": data, "model": body.get("model"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    def last_user_text(self, request: RecordedRequest) -> str:
        users = [m for m in request.json.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
        return text_of(users[-1].get("content")) if users else ""

    def offered_tools(self, request: RecordedRequest) -> list[tuple[str, dict]]:
        return [(t["function"]["name"], t["function"].get("parameters") or {}) for t in request.json.get("tools") or ()]

    def tool_result(self, request: RecordedRequest) -> str | None:
        messages = request.json.get("messages") or [{}]
        return text_of(messages[-1].get("content")) if messages[-1].get("role") == "tool" else None

    def completion(self, reply: Reply, model: str, request: RecordedRequest) -> dict:
        message = {"role": "assistant", "content": reply.full_text or None, "refusal": None, "annotations": []}
        if reply.tool_calls:
            message["tool_calls"] = [{"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
                                     for call_id, name, args in _calls(reply, request)]
        if reply.reasoning:
            message["reasoning_content"] = reply.reasoning
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
        for piece in fragments(reply.reasoning) if reply.reasoning else ():
            yield chunk({"reasoning_content": piece}, content=True)
        for piece in reply.pieces():
            yield chunk({"content": piece}, content=True)
        for index, (call_id, name, arguments) in enumerate(_calls(reply, request)):
            start = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
            yield chunk({"tool_calls": [start]}, content=True)
            for piece in fragments(arguments):
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}, content=True)
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


def _calls(reply: Reply, request: RecordedRequest) -> list[tuple[str, str, str]]:
    offered = [tool["function"]["name"] for tool in request.json.get("tools") or ()]
    return [(f"call_{uuid.uuid4().hex[:24]}", name, args) for name, args in reply.calls(offered)]


def first_image_part(messages: object) -> str | None:
    """Where the first image_url part is, in the real API's `param` notation, e.g. `messages.[0].content.[1].type`."""
    for i, message in enumerate(messages if isinstance(messages, list) else []):
        content = message.get("content") if isinstance(message, dict) else None
        for j, part in enumerate(content if isinstance(content, list) else []):
            if isinstance(part, dict) and part.get("type") == "image_url":
                return f"messages.[{i}].content.[{j}].type"
    return None


def _finish(reply: Reply) -> str:
    if reply.tool_calls:
        return "tool_calls"
    return FINISH_REASONS.get(reply.finish_reason, reply.finish_reason)


def _usage(reply: Reply) -> dict:
    reasoning = len(fragments(reply.reasoning)) if reply.reasoning else 0
    completion = reply.output_tokens + reasoning
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": reply.prompt_tokens + completion,
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }
