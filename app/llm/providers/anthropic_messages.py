"""Anthropic's Messages API through the official `anthropic` SDK.

System messages become the `system` parameter; structured output is a single forced tool whose
input schema is the requested JSON schema (the Messages API's way of guaranteeing JSON), and its
input is returned as the answer's text (streamed as the tool's `input_json_delta` pieces).
"""
from __future__ import annotations

import json
from typing import Any, Iterator

import anthropic
import httpx2

from app.llm.providers.base import (
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

FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "stop",
                  "refusal": "content_filter", "pause_turn": "stop"}


class AnthropicProvider:
    def __init__(self, *, api_key: str, base_url: str | None, default_model: str, fallback_models: list[str],
                 connect_timeout: float, read_timeout: float, max_tokens: int, max_connections: int = 1000,
                 name: str = "anthropic"):
        self.name = name
        self.default_model = default_model
        self.fallback_models = fallback_models
        self.max_tokens = max_tokens
        self.client = anthropic.Anthropic(
            api_key=api_key, base_url=base_url or None, max_retries=0,
            timeout=httpx2.Timeout(read_timeout, connect=connect_timeout),
            http_client=anthropic.DefaultHttpxClient(limits=connection_limits(max_connections)))

    def list_models(self) -> list[str]:
        return [self.default_model, *self.fallback_models]

    def check(self) -> None:
        try:
            self.client.with_options(timeout=5).models.list(limit=1)
        except anthropic.APIError as exc:
            raise translate_error(exc) from None

    def complete(self, request: CompletionRequest, model: str) -> Completion:
        try:
            message = self.client.messages.create(**self._params(request, model))
        except (anthropic.APIError, httpx2.HTTPError) as exc:
            raise translate_error(exc) from None
        texts = [json.dumps(block.input) if block.type == "tool_use" else block.text
                 for block in message.content if block.type in ("text", "tool_use")]
        return Completion(text="".join(texts), model=message.model,
                          finish_reason=FINISH_REASONS.get(message.stop_reason or "", "stop"),
                          usage=Usage(message.usage.input_tokens, message.usage.output_tokens))

    def stream(self, request: CompletionRequest, model: str) -> Iterator[StreamItem]:
        answered_model, finish_reason, input_tokens, output_tokens = model, "stop", 0, 0
        try:
            with self.client.messages.create(**self._params(request, model), stream=True) as events:
                for event in events:
                    if event.type == "content_block_delta":
                        delta = event.delta
                        text = delta.text if delta.type == "text_delta" else getattr(delta, "partial_json", "")
                        if text:
                            yield text
                    elif event.type == "message_start":
                        answered_model = event.message.model or model
                        input_tokens = event.message.usage.input_tokens or 0
                    elif event.type == "message_delta":
                        finish_reason = FINISH_REASONS.get(event.delta.stop_reason or "", "stop")
                        output_tokens = event.usage.output_tokens or output_tokens
        except (anthropic.APIError, httpx2.HTTPError) as exc:
            raise translate_error(exc) from None
        yield StreamEnd(answered_model, finish_reason, Usage(input_tokens, output_tokens))

    def _params(self, request: CompletionRequest, model: str) -> dict[str, Any]:
        system = "\n\n".join(m["content"] for m in request.messages
                             if m["role"] == "system" and isinstance(m["content"], str))
        params: dict[str, Any] = {
            "model": model, "max_tokens": request.max_tokens or self.max_tokens,
            "messages": [to_anthropic_message(m) for m in request.messages if m["role"] != "system"],
        }
        if system:
            params["system"] = system
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.top_p is not None:
            params["top_p"] = request.top_p
        if request.stop:
            params["stop_sequences"] = request.stop
        if request.json_schema:
            name = request.json_schema["name"]
            params["tools"] = [{"name": name, "description": request.json_schema.get("description", name),
                                "input_schema": request.json_schema["schema"]}]
            params["tool_choice"] = {"type": "tool", "name": name}
        return params


def to_anthropic_message(message: dict[str, Any]) -> dict[str, Any]:
    content = message["content"]
    if isinstance(content, str):
        return {"role": message["role"], "content": content}
    blocks = []
    for part in content:
        if part["type"] == "image":
            blocks.append({"type": "image", "source": {"type": "base64", "media_type": part["media_type"],
                                                       "data": part["data"]}})
        else:
            blocks.append({"type": "text", "text": part["text"]})
    return {"role": message["role"], "content": blocks}


def translate_error(exc: Exception) -> ProviderFailure:
    if isinstance(exc, (anthropic.APITimeoutError, httpx2.TimeoutException)):
        return UpstreamTimedOut("timed out waiting for the provider")
    if isinstance(exc, anthropic.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error") if isinstance(body.get("error"), dict) else body
        message = f"{exc.status_code}: {error.get('message') or exc.message}"
        return classify_status(exc.status_code, message, parse_retry_after(exc.response.headers))
    if isinstance(exc, (anthropic.APIConnectionError, httpx2.HTTPError)):
        return TransientFailure(f"connection to the provider failed: {type(exc).__name__}")
    if isinstance(exc, anthropic.APIError):
        return TransientFailure(f"provider error: {exc.message}")
    return TransientFailure(str(exc))
