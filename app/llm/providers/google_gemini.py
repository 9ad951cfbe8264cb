"""Google Gemini through the official `google-genai` SDK (not `google-generativeai`, whose support
has ended). Assistant turns are the `model` role; system and developer messages become
`system_instruction`; structured output uses `response_mime_type=application/json` with
`response_json_schema`; tools are `function_declarations`, tool calls `function_call` parts and
tool results `function_response` parts.

Gemini's function calls carry no id, so each gets one made here (`call_` and 24 hex digits: short
and valid for every vendor's id rules); a tool result is matched back to its call's name through the
assistant message that made it. Gemini 3 attaches a thought signature to the first function call of
a step, which must return with the call on the next turn: it travels beside the call
(`ToolCall.signature`, base64), and each front door puts it where its clients keep it. An id of the
older form (`call_..__thought__<base64>`) still gives its signature back. A call that comes back
without one (a history from another model, a fallback mid-loop, a client that kept only the id) gets
the dummy signature Google documents for calls Gemini did not make, so Gemini 3 still answers.

Gemini has no switch for parallel calls: `parallel_tool_calls: false` is honoured by keeping the
first call of an answer (the one that carries the step's signature), as if the model had made one.
Embeddings are counted by the vendor's token statistics when it reports them (Vertex AI), else
estimated at four characters a token (`Embeddings.estimated`). Images given by URL are fetched (the
API takes bytes) with the `fetch_image` the registry passes in (`app.llm.images.ImageFetcher`), once
per request: the request's `FetchedImages` keeps them for every retry and fallback.

`n` > 1 is Gemini's `candidate_count`: every candidate comes back as a choice, under its `index`
(a whole answer's `Completion.choices`, in OpenAI's shape; a stream's parts as `ChoicePart`s, each
candidate's end with its finish reason). The usage Gemini reports counts every candidate together.
"""
from __future__ import annotations

import base64
import json
import re
import uuid
from typing import Any, Callable, Generator

import httpx2
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from app.llm.providers.base import (
    CallerFault,
    ChoicePart,
    Completion,
    CompletionRequest,
    Embeddings,
    FetchedImages,
    FirstByteTransport,
    ProviderFailure,
    ProviderRejected,
    ReasoningDelta,
    StreamEnd,
    StreamItem,
    ToolCall,
    ToolCallDelta,
    TransientFailure,
    UpstreamTimedOut,
    Usage,
    classify_status,
    connection_limits,
    openai_choice,
    parse_retry_after,
    text_of,
    unsupported_params,
)

FINISH_REASONS = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter",
                  "RECITATION": "content_filter", "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter"}
SUPPORTED = frozenset({"max_tokens", "temperature", "top_p", "stop", "json_schema", "tools", "tool_choice", "seed",
                       "presence_penalty", "frequency_penalty", "reasoning_effort", "parallel_tool_calls", "n"})
TOOL_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
VALID_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")  # an id every vendor takes (Anthropic's rule, OpenAI's length)
THOUGHT_SEPARATOR = "__thought__"  # the older ids, which carried the signature inside
# Google's documented thought signature for a function call Gemini did not make (the JSON value as it is)
DUMMY_SIGNATURE = "skip_thought_signature_validator"
CHARS_PER_TOKEN = 4  # the estimate's rule of thumb, where the vendor counts no tokens
# Gemini 2.x takes a thinking budget in tokens (0 turns thinking off); Gemini 3 takes a level
THINKING_BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 32768}
THINKING_LEVELS = {"none": "MINIMAL", "minimal": "MINIMAL", "low": "LOW", "medium": "MEDIUM", "high": "HIGH",
                   "xhigh": "XHIGH"}
ImageFetcher = Callable[[str, FetchedImages], tuple[str, bytes]]


def no_image_urls(url: str, fetched: FetchedImages) -> tuple[str, bytes]:
    raise CallerFault("Image URLs cannot be fetched for Gemini here; send the image as a data: URI.", status=400)


class ConnectTimeout(FirstByteTransport):
    """google-genai applies its one `timeout` to every phase of a request; this keeps it for reads but
    caps the connect, so an unreachable endpoint fails over in CONNECT_TIMEOUT_S, not READ_TIMEOUT_S."""

    def __init__(self, connect_timeout: float, max_connections: int):
        super().__init__(limits=connection_limits(max_connections))
        self.connect_timeout = connect_timeout

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        request.extensions["timeout"] = {**request.extensions.get("timeout", {}), "connect": self.connect_timeout}
        return super().handle_request(request)


def http_options(base_url: str | None, connect_timeout: float, read_timeout: float,
                 max_connections: int) -> types.HttpOptions:
    """The SDK's HTTP options with this server's transport and timeouts, and no retries of its own."""
    transport = ConnectTimeout(connect_timeout, max_connections)
    return types.HttpOptions(base_url=base_url or None, timeout=int(read_timeout * 1000),
                             retry_options=types.HttpRetryOptions(attempts=1),
                             httpx_client=httpx2.Client(transport=transport))


class GeminiProvider:
    native_wires: frozenset[str] = frozenset()

    def __init__(self, *, api_key: str = "", base_url: str | None = None, default_model: str,
                 fallback_models: list[str], connect_timeout: float, read_timeout: float, max_connections: int = 1000,
                 name: str = "gemini", embedding_models: list[str] | None = None,
                 fetch_image: ImageFetcher = no_image_urls, client: genai.Client | None = None):
        """`client`: an SDK client made elsewhere (Vertex AI's, `vertexai=True`), used instead of one
        built from `api_key` and `base_url`."""
        self.name = name
        self.default_model = default_model
        self.fallback_models = fallback_models
        self.embedding_models = embedding_models or []
        self.fetch_image = fetch_image
        self.client = client or genai.Client(
            api_key=api_key, http_options=http_options(base_url, connect_timeout, read_timeout, max_connections))

    def list_models(self) -> list[str]:
        return [self.default_model, *self.fallback_models]

    def unsupported(self, request: CompletionRequest) -> list[str]:
        return unsupported_params(request, SUPPORTED)

    def count_tokens(self, request: CompletionRequest, model: str) -> None:
        return None  # no counting API this server uses; the front door estimates

    def check(self) -> None:
        try:
            next(iter(self.client.models.list(config={"page_size": 1, "http_options": {"timeout": 5000}})), None)
        except (genai_errors.APIError, httpx2.HTTPError) as exc:
            raise translate_error(exc) from None

    def complete(self, request: CompletionRequest, model: str) -> Completion:
        try:
            response = self.client.models.generate_content(
                model=model, contents=self.to_contents(request.messages, model, request.images),
                config=self._config(request, model))
        except (genai_errors.APIError, httpx2.HTTPError) as exc:
            raise translate_error(exc) from None
        candidates = sorted(response.candidates or (), key=lambda candidate: candidate.index or 0)
        answers = [candidate_answer(candidate, request.parallel_tool_calls) for candidate in candidates]
        text, calls, reason, reasoning = answers[0] if answers else ("", [], "stop", "")
        choices = [openai_choice(candidate.index or 0, *answer)
                   for candidate, answer in zip(candidates, answers)] if (request.n or 1) > 1 else []
        return Completion(text=text, model=response.model_version or model, finish_reason=reason,
                          usage=usage_from(response.usage_metadata), tool_calls=calls, reasoning=reasoning,
                          choices=choices)

    def stream(self, request: CompletionRequest, model: str) -> Generator[StreamItem, None, None]:
        """The answer's parts; with several candidates (`n` > 1) each wrapped in a `ChoicePart` naming its
        candidate, and each candidate's end as one, its finish reason read from it."""
        several = (request.n or 1) > 1
        answered_model, usage = model, Usage()
        calls: dict[int, int] = {}  # each candidate's tool calls so far
        reasons: dict[int, str] = {}  # each ended candidate's finish reason
        responses = self.client.models.generate_content_stream(
            model=model, contents=self.to_contents(request.messages, model, request.images),
            config=self._config(request, model))
        try:
            for response in responses:
                candidates = response.candidates or []
                for candidate in candidates if several else candidates[:1]:
                    index = (candidate.index or 0) if several else 0
                    for item in candidate_deltas(candidate, calls.setdefault(index, 0), request.parallel_tool_calls):
                        calls[index] += isinstance(item, ToolCallDelta)
                        yield ChoicePart(index, item) if several else item
                    if candidate.finish_reason:
                        ended = index in reasons
                        reasons[index] = finish_reason(candidate, calls[index] > 0)
                        if several and not ended:
                            yield ChoicePart(index, finish_reason=reasons[index])
                answered_model = response.model_version or answered_model
                if response.usage_metadata:
                    usage = usage_from(response.usage_metadata)
        except (genai_errors.APIError, httpx2.HTTPError) as exc:
            raise translate_error(exc) from None
        finally:
            responses.close()  # type: ignore[attr-defined]  # the SDK's stream is a generator
        for index in sorted(set(calls) - set(reasons)) if several else ():
            reasons[index] = "tool_calls" if calls[index] else "stop"  # a candidate that never said it ended
            yield ChoicePart(index, finish_reason=reasons[index])
        yield StreamEnd(answered_model, reasons.get(0, "stop"), usage)

    def embed(self, inputs: list[str], model: str, dimensions: int | None) -> Embeddings:
        config = types.EmbedContentConfig(output_dimensionality=dimensions) if dimensions else None
        try:
            response = self.client.models.embed_content(model=model, contents=inputs, config=config)
        except (genai_errors.APIError, httpx2.HTTPError) as exc:
            raise translate_error(exc) from None
        vectors = [list(e.values or ()) for e in response.embeddings or ()]
        counted = [e.statistics.token_count for e in response.embeddings or () if e.statistics]
        if counted and all(count is not None for count in counted):
            return Embeddings(vectors, model, Usage(int(sum(counted))))  # type: ignore[arg-type]
        estimate = sum(-(-len(text) // CHARS_PER_TOKEN) for text in inputs)
        return Embeddings(vectors, model, Usage(estimate), estimated=True)

    def _config(self, request: CompletionRequest, model: str) -> types.GenerateContentConfig:
        system = "\n\n".join(text_of(m["content"]) for m in request.messages if m["role"] in ("system", "developer"))
        config: dict[str, Any] = {"system_instruction": system or None, "max_output_tokens": request.max_tokens,
                                  "temperature": request.temperature, "top_p": request.top_p,
                                  "stop_sequences": request.stop or None, "seed": request.seed,
                                  "presence_penalty": request.presence_penalty,
                                  "frequency_penalty": request.frequency_penalty,
                                  "candidate_count": request.n if (request.n or 1) > 1 else None}
        if request.json_schema:
            config.update(response_mime_type="application/json",
                          response_json_schema=request.json_schema["schema"])
        if request.tools:
            config["tools"] = [types.Tool(function_declarations=[function_declaration(t) for t in request.tools])]
            config["automatic_function_calling"] = types.AutomaticFunctionCallingConfig(disable=True)
        if request.tool_choice is not None:
            config["tool_config"] = tool_config(request.tool_choice)
        if request.reasoning_effort:
            config["thinking_config"] = thinking_config(request.reasoning_effort, model)
        return types.GenerateContentConfig(**{k: v for k, v in config.items() if v is not None})

    def to_contents(self, messages: list[dict[str, Any]], model: str = "",
                    images: FetchedImages | None = None) -> list[types.Content]:
        """The conversation as Gemini turns; consecutive messages of one role share one turn, so the
        results of parallel calls answer them together, as Gemini expects. For Gemini 3, the first call
        of each model turn that came back without a signature gets the dummy one."""
        names = {call["id"]: call["name"] for m in messages for call in m.get("tool_calls") or ()}
        images = images if images is not None else FetchedImages()
        contents: list[types.Content] = []
        for message in messages:
            if message["role"] in ("system", "developer"):
                continue
            role = "model" if message["role"] == "assistant" else "user"
            parts = self.message_parts(message, names, images)
            if contents and contents[-1].role == role:
                contents[-1].parts = [*(contents[-1].parts or []), *parts]
            else:
                contents.append(types.Content(role=role, parts=parts))
        if not model.startswith("gemini-2"):
            for content in contents:
                sign_first_call(content)
        return contents

    def message_parts(self, message: dict[str, Any], names: dict[str, str], images: FetchedImages) -> list[types.Part]:
        if message["role"] == "tool":
            call_id = message["tool_call_id"]
            if call_id not in names:
                raise CallerFault(f"The tool message's tool_call_id {call_id!r} answers no earlier tool call.",
                                  status=400)
            response = tool_response(text_of(message["content"]))
            return [types.Part(function_response=types.FunctionResponse(name=names[call_id], response=response))]
        parts = self.content_parts(message.get("content"), images)
        for call in message.get("tool_calls") or ():
            parts.append(function_call_part(call))
        return parts

    def content_parts(self, content: str | list[dict[str, Any]] | None, images: FetchedImages) -> list[types.Part]:
        if not content:
            return []
        if isinstance(content, str):
            return [types.Part(text=content)]
        parts = []
        for part in content:
            if part["type"] == "image":
                media_type, data = (self.fetch_image(part["url"], images) if part.get("url")
                                    else (part["media_type"], base64.b64decode(part["data"])))
                parts.append(types.Part(inline_data=types.Blob(mime_type=media_type, data=data)))
            else:
                parts.append(types.Part(text=part["text"]))
        return parts


def function_declaration(tool: dict[str, Any]) -> types.FunctionDeclaration:
    return types.FunctionDeclaration(name=tool["name"], description=tool.get("description") or None,
                                     parameters_json_schema=tool.get("parameters") or None)


def tool_config(choice: str | dict[str, str]) -> types.ToolConfig:
    if isinstance(choice, dict):
        calling = types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode.ANY,
                                              allowed_function_names=[choice["name"]])
    else:
        calling = types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode(TOOL_MODES[choice]))
    return types.ToolConfig(function_calling_config=calling)


def thinking_config(effort: str, model: str) -> types.ThinkingConfig:
    """Gemini 2.x models take a token budget, later ones a level; thought summaries are asked for so
    they reach the caller as reasoning."""
    if model.startswith("gemini-2"):
        budget = THINKING_BUDGETS.get(effort, THINKING_BUDGETS["medium"])
        return types.ThinkingConfig(thinking_budget=budget, include_thoughts=budget > 0)
    level = types.ThinkingLevel(THINKING_LEVELS.get(effort, "MEDIUM"))
    return types.ThinkingConfig(thinking_level=level, include_thoughts=True)


def tool_call(part: types.Part) -> ToolCall:
    """A Gemini function call with an id made for it, and its thought signature (base64) when it has one."""
    call = part.function_call or types.FunctionCall()
    call_id = call.id if call.id and VALID_ID.match(call.id) else f"call_{uuid.uuid4().hex[:24]}"
    signature = base64.b64encode(part.thought_signature).decode("ascii") if part.thought_signature else ""
    return ToolCall(call_id, call.name or "", json.dumps(call.args or {}), signature)


def function_call_part(call: dict[str, Any]) -> types.Part:
    """An assistant's tool call as Gemini's function_call part, with its thought signature: the call's
    own, or the one an id of the older form carries."""
    _, _, in_id = call["id"].partition(THOUGHT_SEPARATOR)
    try:
        args = json.loads(call["arguments"] or "{}")
    except ValueError:
        raise CallerFault("A tool call's function.arguments is not valid JSON.", status=400) from None
    part = types.Part(function_call=types.FunctionCall(name=call["name"], args=args))
    signature = call.get("signature") or in_id
    if signature:
        part.thought_signature = signature_bytes(signature)
    return part


def signature_bytes(signature: str) -> bytes:
    """A thought signature's bytes from its base64 (standard or URL-safe, padded or not); the dummy
    signature is sent as the very string Google documents."""
    text = signature.strip().replace("+", "-").replace("/", "_")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise CallerFault("A tool call's thought signature is not base64.", status=400) from None


def sign_first_call(content: types.Content) -> None:
    """Give the first function call of a model turn the dummy signature when none of its calls has one
    (Gemini 3 checks the first call of each step)."""
    calls = [part for part in content.parts or () if part.function_call]
    if content.role == "model" and calls and not any(part.thought_signature for part in calls):
        calls[0].thought_signature = signature_bytes(DUMMY_SIGNATURE)


def tool_response(text: str) -> dict[str, Any]:
    """A tool's result as the object Gemini wants: a JSON object as it is, anything else under `result`."""
    try:
        value = json.loads(text)
    except ValueError:
        return {"result": text}
    return value if isinstance(value, dict) else {"result": value}


def candidate_parts(candidate: types.Candidate) -> list[types.Part]:
    return list(candidate.content.parts or ()) if candidate.content else []


def candidate_deltas(candidate: types.Candidate, calls: int,
                     parallel_tool_calls: bool | None) -> list[str | ReasoningDelta | ToolCallDelta]:
    """The parts of one streamed response of a candidate that has made `calls` tool calls so far: its
    text, reasoning and tool calls (numbered on from `calls`; `parallel_tool_calls: false` keeps the
    first call of the answer)."""
    deltas: list[str | ReasoningDelta | ToolCallDelta] = []
    for part in candidate_parts(candidate):
        if part.function_call and (calls == 0 or parallel_tool_calls is not False):
            call = tool_call(part)
            deltas.append(ToolCallDelta(calls, call.id, call.name, call.arguments, call.signature or None))
            calls += 1
        elif part.text and not part.function_call:
            deltas.append(ReasoningDelta(part.text) if part.thought else part.text)
    return deltas


def candidate_answer(candidate: types.Candidate,
                     parallel_tool_calls: bool | None) -> tuple[str, list[ToolCall], str, str]:
    """One candidate's text, tool calls (only the first with `parallel_tool_calls: false`), finish reason
    and reasoning."""
    parts = candidate_parts(candidate)
    calls = [tool_call(part) for part in parts if part.function_call]
    if parallel_tool_calls is False:
        calls = calls[:1]
    return ("".join(p.text for p in parts if p.text and not p.thought), calls, finish_reason(candidate, bool(calls)),
            "".join(p.text for p in parts if p.text and p.thought))


def finish_reason(candidate: types.Candidate | None, called_tools: bool = False) -> str:
    reason = candidate.finish_reason if candidate else None
    name = str(getattr(reason, "value", reason) or "STOP")
    if called_tools and name == "STOP":
        return "tool_calls"
    return FINISH_REASONS.get(name, "stop")


def usage_from(metadata: types.GenerateContentResponseUsageMetadata | None) -> Usage:
    """Gemini's `promptTokenCount` includes its cached tokens (`cachedContentTokenCount`, read from an
    implicit or explicit cache), as the neutral `prompt_tokens` does."""
    if metadata is None:
        return Usage()
    thoughts = metadata.thoughts_token_count or 0
    return Usage(metadata.prompt_token_count or 0, (metadata.candidates_token_count or 0) + thoughts, thoughts,
                 metadata.cached_content_token_count or 0)


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
