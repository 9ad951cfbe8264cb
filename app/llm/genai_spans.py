"""One span per upstream attempt, in OpenTelemetry's GenAI semantic conventions (client inference
spans): what the gateway calls around each try, so retries and fallbacks are sibling spans under the
request's server span.

`AttemptSpans.start` returns `NO_ATTEMPT` while tracing is off, whose methods do nothing, so an
attempt then costs one attribute read. Prompt and answer text (`gen_ai.input.messages`,
`gen_ai.system_instructions`, `gen_ai.output.messages`) are recorded only when
`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` asks for it, redacted like log lines; image data
never is (a part says only that an image was there).
"""
from __future__ import annotations

import json
import time
from typing import Any, Callable, Generator

from app.core.tracing import OFF, Tracing, record_failure
from app.llm.providers.base import Completion, ProviderFailure, StreamItem, UpstreamTimedOut, Usage

Stream = Generator[StreamItem, None, None]

# gen_ai.provider.name's well-known values (semantic conventions' registry), by provider class
WELL_KNOWN_PROVIDERS = {"AnthropicProvider": "anthropic", "BedrockProvider": "aws.bedrock",
                        "GeminiProvider": "gcp.gemini", "VertexGeminiProvider": "gcp.vertex_ai",
                        "VertexClaudeProvider": "gcp.vertex_ai"}


def provider_name(provider: Any) -> str:
    """`gen_ai.provider.name` of `provider`: the well-known value of its vendor (an Azure OpenAI
    client is `azure.ai.openai`, the OpenAI endpoint `openai`), else the name it was configured under
    (an OpenAI-compatible endpoint: `ollama`, `vllm`...)."""
    kind = type(provider).__name__
    if kind in WELL_KNOWN_PROVIDERS:
        return WELL_KNOWN_PROVIDERS[kind]
    if type(getattr(provider, "client", None)).__name__ == "AzureOpenAI":
        return "azure.ai.openai"
    return provider.name


class NoAttempt:
    """An attempt's span while tracing is off."""

    def first_item(self) -> None:
        pass

    def answered(self, model: str, finish_reason: str | None, usage: Usage, text: str | None = None,
                 finish_reasons: list[str] | None = None) -> None:
        """What answered: the model, why it stopped (None: an embedding), tokens and, when content is
        captured, the text (a stream's was collected by `watch`)."""

    def failed(self, failure: ProviderFailure) -> None:
        pass

    def ended(self, outcome: str) -> None:
        pass

    def watch(self, items: Stream) -> Stream:
        return items

    def __enter__(self) -> "NoAttempt":
        return self

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        pass


NO_ATTEMPT = NoAttempt()


class Attempt(NoAttempt):
    """One attempt's span: started with the request's attributes, ended by `ended` (or by leaving
    its `with` block, which records a `ProviderFailure` that escapes it)."""

    def __init__(self, span: Any, started: float, redact: Callable[[str], str], capture: bool):
        self.span = span
        self.started = started
        self.redact = redact
        self.capture = capture
        self.text: list[str] = []
        self.done = False

    def first_item(self) -> None:
        """The answer's first item arrived (a stream's time to first token)."""
        seconds = time.perf_counter() - self.started
        self.span.set_attribute("gen_ai.response.time_to_first_chunk", round(seconds, 6))
        self.span.add_event("gen_ai.first_token", {"gen_ai.response.time_to_first_chunk": round(seconds, 6)})

    def answered(self, model: str, finish_reason: str | None, usage: Usage, text: str | None = None,
                 finish_reasons: list[str] | None = None) -> None:
        attributes: dict[str, Any] = {"gen_ai.response.model": model, "gen_ai.usage.input_tokens": usage.prompt_tokens,
                                      "gen_ai.usage.output_tokens": usage.completion_tokens}
        if finish_reason is not None:
            attributes["gen_ai.response.finish_reasons"] = finish_reasons or [finish_reason]
        if usage.cached_tokens:
            attributes["gen_ai.usage.cache_read.input_tokens"] = usage.cached_tokens
        if usage.reasoning_tokens:
            attributes["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning_tokens
        if self.capture and finish_reason is not None:
            answer = "".join(self.text) if text is None else text
            attributes["gen_ai.output.messages"] = self.redact(json.dumps(
                [{"role": "assistant", "parts": [{"type": "text", "content": answer}],
                  "finish_reason": finish_reason}], ensure_ascii=False))
        self.span.set_attributes(attributes)

    def failed(self, failure: ProviderFailure) -> None:
        kind = "timeout" if isinstance(failure, UpstreamTimedOut) else type(failure).__name__
        if failure.status is not None:
            self.span.set_attribute("http.response.status_code", failure.status)
        record_failure(self.span, kind, self.redact(failure.message))

    def ended(self, outcome: str) -> None:
        """End the span; `outcome` is the gateway's (ok, interrupted, cancelled, attempt_failed)."""
        if not self.done:
            self.done = True
            self.span.set_attribute("aiserver.outcome", outcome)
            if outcome in ("interrupted", "cancelled"):
                self.span.set_attribute("gen_ai.response.finish_reasons", ["error"])
            self.span.end()

    def watch(self, items: Stream) -> Stream:
        """`items`, their text kept for `gen_ai.output.messages` when content is captured."""
        return self._collected(items) if self.capture else items

    def _collected(self, items: Stream) -> Stream:
        try:
            for item in items:
                if isinstance(item, str):
                    self.text.append(item)
                yield item
        finally:
            items.close()  # closing this generator closes the upstream's

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        if isinstance(error, ProviderFailure):
            self.failed(error)
        elif error is not None:
            record_failure(self.span, type(error).__name__)
        self.ended("ok" if error is None else "attempt_failed")


class AttemptSpans:
    """Starts the span of each upstream attempt (`Gateway` holds one)."""

    def __init__(self, tracing: Tracing = OFF, redact: Callable[[str], str] = str):
        self.tracing = tracing
        self.redact = redact

    def start(self, route: Any, request: Any = None, operation: str = "chat", stream: bool = False,
              number: int = 1) -> NoAttempt:
        """The span of attempt `number` (1-based) of `route` for `request`, started now."""
        if not self.tracing.enabled:
            return NO_ATTEMPT
        attributes: dict[str, Any] = {"gen_ai.operation.name": operation,
                                      "gen_ai.provider.name": provider_name(route.provider),
                                      "gen_ai.request.model": route.model, "aiserver.provider": route.provider.name,
                                      "aiserver.attempt": number, "aiserver.route.tier": route.tier,
                                      "aiserver.route.fallback": route.fallback}
        if stream:
            attributes["gen_ai.request.stream"] = True
        if request is not None:
            attributes.update(request_attributes(request))
            if self.tracing.capture_content:
                attributes.update(content_attributes(request, self.redact))
        span = self.tracing.start(f"{operation} {route.model}", attributes, client=True)
        return Attempt(span, time.perf_counter(), self.redact, self.tracing.capture_content)


def request_attributes(request: Any) -> dict[str, Any]:
    """The request's parameters that the conventions name (those it sets)."""
    pairs = {"gen_ai.request.max_tokens": request.max_tokens, "gen_ai.request.temperature": request.temperature,
             "gen_ai.request.top_p": request.top_p, "gen_ai.request.seed": request.seed,
             "gen_ai.request.presence_penalty": request.presence_penalty,
             "gen_ai.request.frequency_penalty": request.frequency_penalty,
             "gen_ai.request.stop_sequences": request.stop, "gen_ai.request.reasoning.level": request.reasoning_effort}
    attributes = {key: value for key, value in pairs.items() if value is not None}
    if request.n and request.n != 1:
        attributes["gen_ai.request.choice.count"] = request.n
    if request.json_schema:
        attributes["gen_ai.output.type"] = "json"
    return attributes


def content_attributes(request: Any, redact: Callable[[str], str]) -> dict[str, Any]:
    """`gen_ai.system_instructions` and `gen_ai.input.messages` (JSON text, as the conventions allow on
    spans), redacted."""
    system = [part for message in request.messages if message.get("role") in ("system", "developer")
              for part in parts(message.get("content"))]
    chat = [{"role": message.get("role"), "parts": message_parts(message)}
            for message in request.messages if message.get("role") not in ("system", "developer")]
    attributes = {"gen_ai.input.messages": redact(json.dumps(chat, ensure_ascii=False))}
    if system:
        attributes["gen_ai.system_instructions"] = redact(json.dumps(system, ensure_ascii=False))
    return attributes


def parts(content: Any) -> list[dict[str, Any]]:
    """A message's content as the conventions' parts: text as it is, an image named but not included."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    found: list[dict[str, Any]] = []
    for part in content:
        if part.get("type") == "text":
            found.append({"type": "text", "content": part.get("text", "")})
        elif part.get("type") == "image":
            found.append({"type": "blob", "modality": "image", "mime_type": part.get("media_type")})
    return found


def message_parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A chat message's parts: its content, then its tool calls; a tool message is the response to one."""
    if message.get("role") == "tool":
        text = "".join(part.get("content", "") for part in parts(message.get("content")))
        return [{"type": "tool_call_response", "id": message.get("tool_call_id"), "response": text}]
    calls = [{"type": "tool_call", "id": call.get("id"), "name": call.get("name"), "arguments": call.get("arguments")}
             for call in message.get("tool_calls") or []]
    return parts(message.get("content")) + calls


def finish_reasons(result: Completion) -> list[str]:
    """One finish reason per choice (several when `n` > 1)."""
    return [choice.get("finish_reason") or "stop" for choice in result.choices] or [result.finish_reason]
