"""Google Gemini through the official `google-genai` SDK (not `google-generativeai`, whose support
has ended). Assistant turns are the `model` role; system messages become `system_instruction`;
structured output uses `response_mime_type=application/json` with `response_json_schema`.
"""
from __future__ import annotations

import base64
from typing import Any, Iterator

import httpx2
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from app.llm.providers.base import (
    Completion,
    CompletionRequest,
    ProviderFailure,
    ProviderRejected,
    StreamEnd,
    StreamItem,
    TransientFailure,
    UpstreamTimedOut,
    Usage,
    classify_status,
    connection_limits,
    parse_retry_after,
)

FINISH_REASONS = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter",
                  "RECITATION": "content_filter", "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter"}


class ConnectTimeout(httpx2.HTTPTransport):
    """google-genai applies its one `timeout` to every phase of a request; this keeps it for reads but
    caps the connect, so an unreachable endpoint fails over in CONNECT_TIMEOUT_S, not READ_TIMEOUT_S."""

    def __init__(self, connect_timeout: float, max_connections: int):
        super().__init__(limits=connection_limits(max_connections))
        self.connect_timeout = connect_timeout

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        request.extensions["timeout"] = {**request.extensions.get("timeout", {}), "connect": self.connect_timeout}
        return super().handle_request(request)


class GeminiProvider:
    def __init__(self, *, api_key: str, base_url: str | None, default_model: str, fallback_models: list[str],
                 connect_timeout: float, read_timeout: float, max_connections: int = 1000, name: str = "gemini"):
        self.name = name
        self.default_model = default_model
        self.fallback_models = fallback_models
        options = types.HttpOptions(base_url=base_url or None, timeout=int(read_timeout * 1000),
                                    retry_options=types.HttpRetryOptions(attempts=1),
                                    httpx_client=httpx2.Client(
                                        transport=ConnectTimeout(connect_timeout, max_connections)))
        self.client = genai.Client(api_key=api_key, http_options=options)

    def list_models(self) -> list[str]:
        return [self.default_model, *self.fallback_models]

    def check(self) -> None:
        try:
            next(iter(self.client.models.list(config={"page_size": 1, "http_options": {"timeout": 5000}})), None)
        except (genai_errors.APIError, httpx2.HTTPError) as exc:
            raise translate_error(exc) from None

    def complete(self, request: CompletionRequest, model: str) -> Completion:
        try:
            response = self.client.models.generate_content(model=model, contents=to_contents(request.messages),
                                                           config=self._config(request))
        except (genai_errors.APIError, httpx2.HTTPError) as exc:
            raise translate_error(exc) from None
        candidate = (response.candidates or [None])[0]
        return Completion(text=response_text(response), model=response.model_version or model,
                          finish_reason=finish_reason(candidate), usage=usage_from(response.usage_metadata))

    def stream(self, request: CompletionRequest, model: str) -> Iterator[StreamItem]:
        answered_model, reason, usage = model, "stop", Usage()
        responses = self.client.models.generate_content_stream(model=model, contents=to_contents(request.messages),
                                                               config=self._config(request))
        try:
            for response in responses:
                text = response_text(response)
                if text:
                    yield text
                answered_model = response.model_version or answered_model
                if response.candidates and response.candidates[0].finish_reason:
                    reason = finish_reason(response.candidates[0])
                if response.usage_metadata:
                    usage = usage_from(response.usage_metadata)
        except (genai_errors.APIError, httpx2.HTTPError) as exc:
            raise translate_error(exc) from None
        finally:
            responses.close()
        yield StreamEnd(answered_model, reason, usage)

    def _config(self, request: CompletionRequest) -> types.GenerateContentConfig:
        system = "\n\n".join(m["content"] for m in request.messages
                             if m["role"] == "system" and isinstance(m["content"], str))
        config: dict[str, Any] = {"system_instruction": system or None, "max_output_tokens": request.max_tokens,
                                  "temperature": request.temperature, "top_p": request.top_p,
                                  "stop_sequences": request.stop or None}
        if request.json_schema:
            config.update(response_mime_type="application/json",
                          response_json_schema=request.json_schema["schema"])
        return types.GenerateContentConfig(**{k: v for k, v in config.items() if v is not None})


def to_contents(messages: list[dict[str, Any]]) -> list[types.Content]:
    contents = []
    for message in messages:
        if message["role"] == "system":
            continue
        content = message["content"]
        if isinstance(content, str):
            parts = [types.Part(text=content)]
        else:
            parts = [types.Part(inline_data=types.Blob(mime_type=p["media_type"], data=base64.b64decode(p["data"])))
                     if p["type"] == "image" else types.Part(text=p["text"]) for p in content]
        contents.append(types.Content(role="model" if message["role"] == "assistant" else "user", parts=parts))
    return contents


def response_text(response: types.GenerateContentResponse) -> str:
    """Text parts only (not `response.text`, which warns on non-text parts)."""
    if not response.candidates or not response.candidates[0].content:
        return ""
    return "".join(part.text for part in response.candidates[0].content.parts or () if part.text and not part.thought)


def finish_reason(candidate: types.Candidate | None) -> str:
    reason = candidate.finish_reason if candidate else None
    name = getattr(reason, "value", reason) or "STOP"
    return FINISH_REASONS.get(str(name), "stop")


def usage_from(metadata: types.GenerateContentResponseUsageMetadata | None) -> Usage:
    if metadata is None:
        return Usage()
    return Usage(metadata.prompt_token_count or 0,
                 (metadata.candidates_token_count or 0) + (metadata.thoughts_token_count or 0))


def translate_error(exc: Exception) -> ProviderFailure:
    if isinstance(exc, httpx2.TimeoutException):
        return UpstreamTimedOut("timed out waiting for the provider")
    if isinstance(exc, genai_errors.APIError):
        message = f"{exc.code}: {exc.message or exc.status}"
        if exc.code == 400 and "API_KEY_INVALID" in str(exc.details) + message or "API key not valid" in message:
            return ProviderRejected(message, status=exc.code)  # Gemini answers a bad key with a 400
        headers = getattr(exc.response, "headers", None)
        return classify_status(exc.code, message, parse_retry_after(headers))
    return TransientFailure(f"connection to the provider failed: {type(exc).__name__}")
