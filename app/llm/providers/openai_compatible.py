"""OpenAI chat completions through the official `openai` SDK: OpenAI itself, Ollama, LiteLLM and any
other OpenAI-compatible endpoint (vLLM, llama.cpp server, LM Studio...).

The SDK makes every request (auth, headers, timeouts, connection pool, status errors) through its
generic `client.post` (the SDK's documented way to call an endpoint with a raw body), asking for the
raw `httpx2.Response`. That skips two costs that were most of this gateway's CPU per request: the
SDK's recursive transform of typed parameters (about 1.3 ms for a small chat) and building pydantic
objects for every chunk. Our messages are already validated by our own schema.

Every parameter of the request is sent under its OpenAI name, and fields the front door did not
know (`CompletionRequest.extra`) are sent as they came: the upstream judges them. Reasoning comes
back as `reasoning_content` (vLLM, DeepSeek, LiteLLM) or `reasoning` (Ollama, OpenRouter). With
`n` > 1 every choice comes back: whole in `Completion.choices`, streamed as the upstream's chunks
(`NativeEvent`s, each choice's deltas under its `index`).

An upstream that offers OpenAI's Responses API (`responses_api`: OpenAI itself, or a compatible one
so configured) takes a Responses request as it came (`CompletionRequest.native`, wire
OPENAI_RESPONSES) at `POST /responses`, with the route's model: its answer is `Completion.native`,
its stream `NativeEvent`s, and the usage is read from the response's `usage` (cached and reasoning
tokens included).
"""
from __future__ import annotations

import functools
import json
import types
from contextlib import closing
from typing import TYPE_CHECKING, Any, Generator, Iterator

import httpx2

from app.llm.providers.base import (
    CACHE_CONTROL,
    OPENAI_RESPONSES,
    CallerFault,
    Completion,
    CompletionRequest,
    Embeddings,
    FirstByteTransport,
    MadeOnFirstUse,
    NativeEvent,
    ProviderFailure,
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
    parse_retry_after,
    unsupported_params,
)

CHAT_PATH = "/chat/completions"
RESPONSES_PATH = "/responses"
EMBEDDINGS_PATH = "/embeddings"
# sent under the same name
PLAIN_PARAMS = ("temperature", "top_p", "stop", "n", "seed", "reasoning_effort", "logprobs", "top_logprobs",
                "presence_penalty", "frequency_penalty", "logit_bias", "user", "metadata", "parallel_tool_calls")
SUPPORTED = frozenset({*PLAIN_PARAMS, "max_tokens", "json_schema", "tools", "tool_choice", "messages.name"})
# the events that end a Responses stream, each with the whole response (and its usage)
RESPONSES_ENDS = ("response.completed", "response.incomplete", "response.failed")

if TYPE_CHECKING:
    import openai


def sdk() -> types.ModuleType:
    """The `openai` package, imported when a provider first calls its upstream rather than at start-up:
    its import is about half of the app's (0.5 s of CPU, `openai.types`), and a worker that serves only
    other routes never needs it (docs/performance.md, "Third cut")."""
    import openai

    return openai


@functools.cache
def raw_stream() -> dict[str, Any]:
    """Request options with which the SDK returns the raw response with its body unread (to stream it)."""
    from openai._constants import RAW_RESPONSE_HEADER

    return {"headers": {RAW_RESPONSE_HEADER: "stream"}}


class OpenAICompatibleProvider:
    def __init__(self, name: str, *, api_key: str = "", base_url: str | None = None, default_model: str,
                 fallback_models: list[str], connect_timeout: float, read_timeout: float,
                 max_connections: int = 1000, max_tokens_field: str = "max_tokens", developer_role: bool = False,
                 embedding_models: list[str] | None = None, client: openai.OpenAI | None = None,
                 responses_api: bool = False):
        """`max_tokens_field`: OpenAI's current models accept only `max_completion_tokens`, while many
        compatible servers know only `max_tokens`. `developer_role`: whether the upstream knows the
        `developer` role (OpenAI does); otherwise such messages are sent as `system`. `client`: an SDK
        client made elsewhere (`openai.AzureOpenAI`), used instead of one built from `api_key` and `base_url`.
        `responses_api`: whether the upstream offers OpenAI's Responses API (`POST /responses`), which
        then receives Responses requests as they came."""
        self.name = name
        self.native_wires = frozenset({OPENAI_RESPONSES}) if responses_api else frozenset()
        self.max_tokens_field = max_tokens_field
        self.developer_role = developer_role
        self.embedding_models = embedding_models or []
        self.default_model = default_model
        self.fallback_models = fallback_models
        self._client = MadeOnFirstUse(lambda: client or sdk().OpenAI(
            api_key=api_key or "not-needed", base_url=base_url or None, max_retries=0,
            timeout=client_timeout(connect_timeout, read_timeout), http_client=http_client(max_connections)))
        # a client made elsewhere (Azure's) builds each request its own way (deployment paths, token
        # providers): it keeps the SDK's whole request path
        self._posts = MadeOnFirstUse(lambda: None if client is not None else PreparedPosts(self.client))

    @property
    def client(self) -> openai.OpenAI:
        """The SDK client, made at the first call and then kept (`sdk`)."""
        return self._client.get()

    def list_models(self) -> list[str]:
        return [self.default_model, *self.fallback_models]

    def unsupported(self, request: CompletionRequest) -> list[str]:
        if request.native is not None and self._native(request) is not None:
            # sent as it came: the upstream itself judges every field, but Anthropic's cache marks go
            return [CACHE_CONTROL] if responses_cache_marked(request.native.body) else []
        return unsupported_params(request, SUPPORTED | set(request.extra))

    def count_tokens(self, request: CompletionRequest, model: str) -> None:
        return None  # no counting API this server uses; the front door estimates

    def check(self) -> None:
        try:
            self.client.with_options(timeout=5).models.list()
        except sdk().APIError as exc:
            raise translate_error(exc) from None

    def complete(self, request: CompletionRequest, model: str) -> Completion:
        native = self._native(request)
        body = self._post(RESPONSES_PATH if native else CHAT_PATH, {**native, "model": model} if native
                          else self._params(request, model))
        if native:
            return responses_completion(body, model)
        choices = body.get("choices") or [{}]
        message = choices[0].get("message") or {}
        return Completion(text=message.get("content") or "", model=body.get("model") or model,
                          finish_reason=choices[0].get("finish_reason") or "stop",
                          usage=usage_from(body.get("usage")),
                          tool_calls=[tool_call_from(call) for call in message.get("tool_calls") or ()],
                          reasoning=reasoning_of(message), logprobs=choices[0].get("logprobs"),
                          choices=choices if (request.n or 1) > 1 else [])

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """The upstream's JSON answer to `body` at `path`."""
        try:
            response = self._send(path, body, stream=False)
            answer = json.loads(response.content)
        except (sdk().APIError, httpx2.HTTPError) as exc:
            raise translate_error(exc) from None
        except ValueError:
            raise TransientFailure(f"{self.name} answered with invalid JSON") from None
        if not isinstance(answer, dict):
            raise TransientFailure(f"{self.name} answered with a body that is not an object")
        return answer

    def _send(self, path: str, body: dict[str, Any], stream: bool) -> httpx2.Response:
        """The upstream's response to `body` POSTed at `path` (its body unread when `stream`); a status
        that is not a success raises the SDK's typed error."""
        posts = self._posts.get()
        if posts is not None:
            return posts.send(path, body, stream)
        if stream:
            return self.client.post(  # type: ignore[call-overload]  # raw stream, see raw_stream
                path, body=body, cast_to=httpx2.Response, options=raw_stream())
        return self.client.post(path, body=body, cast_to=httpx2.Response)

    def stream(self, request: CompletionRequest, model: str) -> Generator[StreamItem, None, None]:
        native = self._native(request)
        if native is not None:
            return self._stream_responses({**native, "model": model, "stream": True}, model)
        params = self._params(request, model)
        params.update(stream=True, stream_options={"include_usage": True})
        return self._stream_chat(params, model, (request.n or 1) > 1)

    def _events(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The JSON objects of the `data:` lines of a stream from `path` (up to `[DONE]`)."""
        try:
            response = self._send(path, params, stream=True)
            with closing(response):
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        continue  # read on to the end of the body, so the connection returns to the pool
                    event = json.loads(data)
                    if not isinstance(event, dict):
                        raise ValueError("a stream event is not an object")
                    yield event
        except (sdk().APIError, httpx2.HTTPError) as exc:
            raise translate_error(exc) from None
        except ValueError:
            raise TransientFailure(f"{self.name} sent an invalid stream event") from None

    def _stream_chat(self, params: dict[str, Any], model: str, several: bool) -> Generator[StreamItem, None, None]:
        """A chat completion's parts; with `several` choices, the chunks themselves (each choice has its
        `index` there, which the neutral parts have not)."""
        answered_model, finish_reason, usage = model, "stop", Usage()
        for chunk in self._events(CHAT_PATH, params):
            if "error" in chunk:
                raise stream_error(chunk["error"])
            answered_model = chunk.get("model") or answered_model
            if several and chunk.get("choices"):
                yield NativeEvent(chunk)
            for choice in chunk.get("choices") or ():
                if not several:
                    yield from delta_parts(choice.get("delta") or {})
                finish_reason = choice.get("finish_reason") or finish_reason
            if chunk.get("usage"):
                usage = usage_from(chunk["usage"])
        yield StreamEnd(answered_model, finish_reason, usage)

    def _stream_responses(self, params: dict[str, Any], model: str) -> Generator[StreamItem, None, None]:
        """A Responses stream's events as they came, then the end read from its last event."""
        end = StreamEnd(model, "stop")
        for event in self._events(RESPONSES_PATH, params):
            if event.get("type") == "error":
                raise stream_error(event)
            yield NativeEvent(event)
            if event.get("type") in RESPONSES_ENDS and isinstance(event.get("response"), dict):
                end = responses_end(event["response"], model)
        yield end

    def _native(self, request: CompletionRequest) -> dict[str, Any] | None:
        """The body of a Responses request this upstream takes as it came, without `stream`; else None."""
        native = request.native
        if native is None or native.wire != OPENAI_RESPONSES or OPENAI_RESPONSES not in self.native_wires:
            return None
        return without_cache_marks({name: value for name, value in native.body.items() if name != "stream"})

    def embed(self, inputs: list[str], model: str, dimensions: int | None) -> Embeddings:
        body: dict[str, Any] = {"model": model, "input": inputs, "encoding_format": "float"}
        if dimensions is not None:
            body["dimensions"] = dimensions
        answer = self._post(EMBEDDINGS_PATH, body)
        vectors = [item["embedding"] for item in sorted(answer.get("data") or (), key=lambda item: item["index"])]
        return Embeddings(vectors, answer.get("model") or model, usage_from(answer.get("usage")))

    def _params(self, request: CompletionRequest, model: str) -> dict[str, Any]:
        params: dict[str, Any] = {**request.extra, "model": model,
                                  "messages": [self.to_openai_message(m) for m in request.messages]}
        if request.max_tokens is not None:
            params[self.max_tokens_field] = request.max_tokens
        params.update({name: getattr(request, name) for name in PLAIN_PARAMS if getattr(request, name) is not None})
        if request.json_schema:
            params["response_format"] = response_format(request.json_schema)
        if request.tools:
            params["tools"] = [{"type": "function", "function": tool} for tool in request.tools]
        if request.tool_choice is not None:
            choice = request.tool_choice
            params["tool_choice"] = choice if isinstance(choice, str) else {"type": "function", "function": choice}
        return params

    def to_openai_message(self, message: dict[str, Any]) -> dict[str, Any]:
        role = message["role"]
        wire: dict[str, Any] = {"role": "system" if role == "developer" and not self.developer_role else role,
                                "content": openai_content(message.get("content"))}
        for key in ("name", "tool_call_id"):
            if message.get(key):
                wire[key] = message[key]
        if message.get("tool_calls"):
            wire["tool_calls"] = [{"id": call["id"], "type": "function",
                                   "function": {"name": call["name"], "arguments": call["arguments"]}}
                                  for call in message["tool_calls"]]
        return wire


def cache_mark_places(body: dict[str, Any]) -> Iterator[Any]:
    """Where a Responses body may carry a `cache_control` mark: its input items, their parts, its tools."""
    items = body.get("input")
    for item in items if isinstance(items, list) else ():
        yield item
        if isinstance(item, dict) and isinstance(item.get("content"), list):
            yield from item["content"]
    tools = body.get("tools")
    yield from tools if isinstance(tools, list) else ()


def responses_cache_marked(body: dict[str, Any]) -> bool:
    return any(isinstance(place, dict) and CACHE_CONTROL in place for place in cache_mark_places(body))


def without_cache_marks(body: dict[str, Any]) -> dict[str, Any]:
    """A Responses body without Anthropic's `cache_control` marks, which OpenAI's API refuses as unknown
    (it caches a repeated prefix by itself); `body` itself when it has none."""
    if not responses_cache_marked(body):
        return body

    def unmarked(entry: Any) -> Any:
        if not isinstance(entry, dict):
            return entry
        entry = {key: value for key, value in entry.items() if key != CACHE_CONTROL}
        if isinstance(entry.get("content"), list):
            entry["content"] = [unmarked(part) for part in entry["content"]]
        return entry

    body = dict(body)
    for name in ("input", "tools"):
        if isinstance(body.get(name), list):
            body[name] = [unmarked(entry) for entry in body[name]]
    return body


class PreparedPosts:
    """JSON POSTs through an SDK client we made (a fixed key, the base URL), each sent on the SDK's own
    HTTP client as the request the SDK itself built for the first POST to its path (URL, authentication,
    its headers, timeout) with only the body changed. The SDK's building of every request (an options
    model, header merging, URL joining: ~0.35-0.45 ms of CPU a call, a tenth of a request; the retries it
    exists to drive are off, ours are the gateway's) is paid once per path; a status that is not a
    success still becomes the SDK's typed error, made by the SDK (`_make_status_error_from_response`)."""

    def __init__(self, client: openai.OpenAI):
        self.client = client
        self.prepared: dict[str, httpx2.Request] = {}

    def send(self, path: str, body: dict[str, Any], stream: bool) -> httpx2.Response:
        prepared = self.prepared.get(path) or self.prepare(path)
        request = httpx2.Request("POST", prepared.url, headers=prepared.headers, content=json_bytes()(body),
                                 extensions=prepared.extensions)
        response = self.client._client.send(request, stream=stream)
        if not response.is_success:  # as the SDK's `raise_for_status`
            response.read()
            raise self.client._make_status_error_from_response(response)
        return response

    def prepare(self, path: str) -> httpx2.Request:
        from openai._models import FinalRequestOptions

        built = self.client._build_request(FinalRequestOptions.construct(method="post", url=path, json_data={}))
        built.headers.pop("Content-Length", None)  # each body sets its own
        self.prepared[path] = built
        return built


@functools.cache
def json_bytes() -> Any:
    """The SDK's own JSON encoding of a request body (UTF-8, compact)."""
    from openai._utils._json import openapi_dumps

    return openapi_dumps


def client_timeout(connect_timeout: float, read_timeout: float) -> httpx2.Timeout:
    return httpx2.Timeout(read_timeout, connect=connect_timeout)


def http_client(max_connections: int) -> httpx2.Client:
    """The SDK's HTTP client with this server's transport: one pool, the first-byte timeout."""
    return sdk().DefaultHttpxClient(transport=FirstByteTransport(limits=connection_limits(max_connections)))


def openai_content(content: str | list[dict[str, Any]] | None) -> Any:
    if content is None or isinstance(content, str):
        return content
    parts = []
    for part in content:
        if part["type"] == "image":
            url = part.get("url") or f"data:{part['media_type']};base64,{part['data']}"
            parts.append({"type": "image_url", "image_url": {"url": url}})
        else:
            parts.append({"type": "text", "text": part["text"]})
    return parts


def response_format(json_schema: dict[str, Any]) -> dict[str, Any]:
    if json_schema["name"] == "json_object":
        return {"type": "json_object"}
    spec = {"name": json_schema["name"], "schema": json_schema["schema"], "strict": bool(json_schema.get("strict"))}
    return {"type": "json_schema", "json_schema": spec}


def tool_call_from(call: dict[str, Any]) -> ToolCall:
    function = call.get("function") or {}
    return ToolCall(call.get("id") or "", function.get("name") or "", function.get("arguments") or "{}")


def reasoning_of(message: dict[str, Any]) -> str:
    return message.get("reasoning_content") or message.get("reasoning") or ""


def delta_parts(delta: dict[str, Any]) -> Iterator[StreamItem]:
    """The parts of one chunk's delta: reasoning, text, then tool-call fragments."""
    reasoning = reasoning_of(delta)
    if reasoning:
        yield ReasoningDelta(reasoning)
    if delta.get("content"):
        yield delta["content"]
    for call in delta.get("tool_calls") or ():
        function = call.get("function") or {}
        yield ToolCallDelta(call.get("index", 0), call.get("id"), function.get("name"),
                            function.get("arguments") or "")


def usage_from(usage: dict[str, Any] | None) -> Usage:
    usage = usage or {}
    details = usage.get("completion_tokens_details") or {}
    return Usage(usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0,
                 details.get("reasoning_tokens") or 0, (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
                 or 0)


def responses_usage_from(usage: dict[str, Any] | None) -> Usage:
    """The usage of a Responses API answer (`input_tokens`, `output_tokens` and their details)."""
    usage = usage or {}
    return Usage(usage.get("input_tokens") or 0, usage.get("output_tokens") or 0,
                 (usage.get("output_tokens_details") or {}).get("reasoning_tokens") or 0,
                 (usage.get("input_tokens_details") or {}).get("cached_tokens") or 0)


def responses_end(response: dict[str, Any], model: str) -> StreamEnd:
    """How a Responses answer ended: its model, `length` when it stopped at `max_output_tokens`
    (`content_filter` when filtered), and its usage."""
    reason = (response.get("incomplete_details") or {}).get("reason")
    finish = {"max_output_tokens": "length", "content_filter": "content_filter"}.get(reason or "", "stop")
    if any(item.get("type") == "function_call" for item in response.get("output") or ()) and finish == "stop":
        finish = "tool_calls"
    return StreamEnd(response.get("model") or model, finish, responses_usage_from(response.get("usage")))


def responses_completion(body: dict[str, Any], model: str) -> Completion:
    """A whole Responses answer: the body as it came (`native`), with its text, end and usage."""
    end = responses_end(body, model)
    text = "".join(part.get("text", "") for item in body.get("output") or () if item.get("type") == "message"
                   for part in item.get("content") or () if part.get("type") == "output_text")
    return Completion(text=text, model=end.model, finish_reason=end.finish_reason, usage=end.usage, native=body)


def stream_error(error: Any) -> ProviderFailure:
    message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
    return TransientFailure(f"stream error: {message}")


def translate_error(exc: Exception) -> ProviderFailure:
    """One mapping from the SDK's (and httpx2's) exceptions to ours."""
    openai = sdk()
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
