"""OpenAI chat completions through the official `openai` SDK: OpenAI itself, Ollama, LiteLLM and any
other OpenAI-compatible endpoint (vLLM, llama.cpp server, LM Studio...).

The SDK makes every request (auth, headers, timeouts, connection pool, status errors) through its
generic `client.post` (the SDK's documented way to call an endpoint with a raw body), asking for the
raw `httpx2.Response`. That skips two costs that were most of this gateway's CPU per request: the
SDK's recursive transform of typed parameters (about 1.3 ms for a small chat) and building pydantic
objects for every chunk. Our messages are already validated by our own schema.
"""
from __future__ import annotations

import json
from contextlib import closing
from typing import Any, Iterator

import httpx2
import openai
from openai._constants import RAW_RESPONSE_HEADER

from app.llm.providers.base import (
    CallerFault,
    Completion,
    CompletionRequest,
    ProviderFailure,
    StreamEnd,
    StreamItem,
    TransientFailure,
    UpstreamTimedOut,
    Usage,
    classify_status,
    connection_limits,
    parse_retry_after,
)

CHAT_PATH = "/chat/completions"
STREAM_BODY = {"headers": {RAW_RESPONSE_HEADER: "stream"}}  # the SDK then returns the body unread


class OpenAICompatibleProvider:
    def __init__(self, name: str, *, api_key: str, base_url: str | None, default_model: str,
                 fallback_models: list[str], connect_timeout: float, read_timeout: float,
                 max_connections: int = 1000, max_tokens_field: str = "max_tokens"):
        """`max_tokens_field`: OpenAI's current models accept only `max_completion_tokens`, while many
        compatible servers know only `max_tokens`."""
        self.name = name
        self.max_tokens_field = max_tokens_field
        self.default_model = default_model
        self.fallback_models = fallback_models
        self.client = openai.OpenAI(api_key=api_key or "not-needed", base_url=base_url or None, max_retries=0,
                                    timeout=httpx2.Timeout(read_timeout, connect=connect_timeout),
                                    http_client=openai.DefaultHttpxClient(limits=connection_limits(max_connections)))

    def list_models(self) -> list[str]:
        return [self.default_model, *self.fallback_models]

    def check(self) -> None:
        try:
            self.client.with_options(timeout=5).models.list()
        except openai.APIError as exc:
            raise translate_error(exc) from None

    def complete(self, request: CompletionRequest, model: str) -> Completion:
        try:
            response = self.client.post(CHAT_PATH, body=self._params(request, model), cast_to=httpx2.Response)
            body = json.loads(response.content)
        except (openai.APIError, httpx2.HTTPError) as exc:
            raise translate_error(exc) from None
        except ValueError:
            raise TransientFailure(f"{self.name} answered with invalid JSON") from None
        choice = (body.get("choices") or [{}])[0]
        return Completion(text=(choice.get("message") or {}).get("content") or "",
                          model=body.get("model") or model, finish_reason=choice.get("finish_reason") or "stop",
                          usage=usage_from(body.get("usage")))

    def stream(self, request: CompletionRequest, model: str) -> Iterator[StreamItem]:
        params = self._params(request, model)
        params.update(stream=True, stream_options={"include_usage": True})
        answered_model, finish_reason, usage = model, "stop", Usage()
        try:
            response = self.client.post(CHAT_PATH, body=params, cast_to=httpx2.Response, options=STREAM_BODY)
            with closing(response):
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        continue  # read on to the end of the body, so the connection returns to the pool
                    chunk = json.loads(data)
                    if "error" in chunk:
                        raise stream_error(chunk["error"])
                    answered_model = chunk.get("model") or answered_model
                    for choice in chunk.get("choices") or ():
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            yield text
                        finish_reason = choice.get("finish_reason") or finish_reason
                    if chunk.get("usage"):
                        usage = usage_from(chunk["usage"])
        except (openai.APIError, httpx2.HTTPError) as exc:
            raise translate_error(exc) from None
        except ValueError:
            raise TransientFailure(f"{self.name} sent an invalid stream event") from None
        yield StreamEnd(answered_model, finish_reason, usage)

    def _params(self, request: CompletionRequest, model: str) -> dict[str, Any]:
        params: dict[str, Any] = {"model": model, "messages": [to_openai_message(m) for m in request.messages]}
        if request.max_tokens is not None:
            params[self.max_tokens_field] = request.max_tokens
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.top_p is not None:
            params["top_p"] = request.top_p
        if request.stop:
            params["stop"] = request.stop
        if request.json_schema:
            params["response_format"] = {"type": "json_schema", "json_schema": {
                "name": request.json_schema["name"], "schema": request.json_schema["schema"], "strict": False}}
        return params


def to_openai_message(message: dict[str, Any]) -> dict[str, Any]:
    content = message["content"]
    if isinstance(content, str):
        return {"role": message["role"], "content": content}
    parts = []
    for part in content:
        if part["type"] == "image":
            parts.append({"type": "image_url",
                          "image_url": {"url": f"data:{part['media_type']};base64,{part['data']}"}})
        else:
            parts.append({"type": "text", "text": part["text"]})
    return {"role": message["role"], "content": parts}


def usage_from(usage: dict[str, Any] | None) -> Usage:
    usage = usage or {}
    return Usage(usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0)


def stream_error(error: Any) -> ProviderFailure:
    message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
    return TransientFailure(f"stream error: {message}")


def translate_error(exc: Exception) -> ProviderFailure:
    """One mapping from the SDK's (and httpx2's) exceptions to ours."""
    if isinstance(exc, (openai.APITimeoutError, httpx2.TimeoutException)):
        return UpstreamTimedOut("timed out waiting for the provider")
    if isinstance(exc, openai.APIStatusError):
        return classify_status(exc.status_code, status_message(exc), parse_retry_after(exc.response.headers))
    if isinstance(exc, (openai.APIConnectionError, httpx2.HTTPError)):
        return TransientFailure(f"connection to the provider failed: {type(exc).__name__}")
    if isinstance(exc, openai.APIError):
        return CallerFault(exc.message)
    return TransientFailure(str(exc))


def status_message(exc: openai.APIStatusError) -> str:
    """The provider's own error message (the SDK keeps the body's `error` object in `exc.body`)."""
    body = exc.body if isinstance(exc.body, dict) else {}
    return f"{exc.status_code}: {body.get('message') or exc.message}"
