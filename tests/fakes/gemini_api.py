"""Fake of the Gemini Developer API, as google-genai calls it.

google-genai joins ``base_url``, ``api_version`` and ``models/{model}:{method}``, so
with ``HttpOptions(base_url=fake.url, api_version="v1beta")`` requests arrive at
``/v1beta/models/gemini-2.5-flash:generateContent``. Streams are requested with
``?alt=sse`` and parsed line by line: only ``data: `` lines count (with the space).
"""

from __future__ import annotations

import re
import uuid
from typing import Iterator

from .server import FakeServer, Frame, Handler, RecordedRequest, Reply, sse, text_of

FINISH_REASONS = {"stop": "STOP", "length": "MAX_TOKENS"}
STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
GENERATE = re.compile(r"^/(?:v1|v1beta|v1alpha)/models/([^/:]+):(generateContent|streamGenerateContent)$")
LIST_MODELS = re.compile(r"^/(?:v1|v1beta|v1alpha)/models$")


class FakeGemini(FakeServer):
    default_models = ("gemini-2.5-flash", "gemini-2.5-pro")

    def route(self, handler: Handler, request: RecordedRequest) -> None:
        generate = GENERATE.match(request.path)
        if request.method == "POST" and generate:
            model, method = generate.groups()
            self.serve(handler, request, model, stream=method == "streamGenerateContent")
        elif request.method == "GET" and LIST_MODELS.match(request.path):
            handler.send_json(200, {"models": [_model_info(model) for model in self.models()]})
        else:
            self.reject(handler, 404, f"The requested URL {request.path} was not found on this server.")

    def auth_error(self, request: RecordedRequest) -> tuple[int, str] | None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if key is None:
            return 403, "Method doesn't allow unregistered callers. Please use API Key or other form of API consumer."
        return None if key == self.api_key else (400, "API key not valid. Please pass a valid API key.")

    def error_body(self, status: int, message: str, reply: Reply | None = None) -> dict:
        error = {"code": status, "message": message, "status": STATUSES.get(status, "UNKNOWN")}
        if reply is not None and reply.retry_after is not None:
            # The real API tells the delay in the body rather than in headers.
            retry_info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{reply.retry_after:g}s"}
            error["details"] = [retry_info]
        return {"error": error}

    def retry_headers(self, reply: Reply) -> dict[str, str]:
        return {} if reply.retry_after is None else {"Retry-After": f"{reply.retry_after:g}"}

    def last_user_text(self, request: RecordedRequest) -> str:
        contents = [c for c in request.json.get("contents", []) if isinstance(c, dict)]
        users = [c for c in contents if c.get("role", "user") == "user"]
        return text_of(users[-1].get("parts")) if users else ""

    def completion(self, reply: Reply, model: str, request: RecordedRequest) -> dict:
        return _response(model, reply.full_text, reply, response_id=_response_id(), final=True)

    def frames(self, reply: Reply, model: str, request: RecordedRequest) -> Iterator[Frame]:
        """One response per piece; the last carries finishReason and usageMetadata."""
        pieces, response_id = reply.pieces() or [""], _response_id()
        for index, piece in enumerate(pieces):
            response = _response(model, piece, reply, response_id=response_id, final=index == len(pieces) - 1)
            yield sse(response, content=True, eol="\r\n")


def _response(model: str, text: str, reply: Reply, *, response_id: str, final: bool) -> dict:
    candidate: dict = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
    response: dict = {"candidates": [candidate], "modelVersion": model, "responseId": response_id}
    if final:
        candidate["finishReason"] = FINISH_REASONS.get(reply.finish_reason, reply.finish_reason)
        response["usageMetadata"] = {
            "promptTokenCount": reply.prompt_tokens,
            "candidatesTokenCount": reply.output_tokens,
            "totalTokenCount": reply.prompt_tokens + reply.output_tokens,
        }
    return response


def _response_id() -> str:
    return uuid.uuid4().hex[:22]


def _model_info(model: str) -> dict:
    return {
        "name": f"models/{model}",
        "version": "001",
        "displayName": model.replace("-", " ").title(),
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
    }
