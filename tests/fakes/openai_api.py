"""Fake of OpenAI's Chat Completions, Responses and Embeddings APIs; also stands in for Ollama and other
OpenAI-compatible servers (whose reasoning comes back as ``reasoning_content``, as vLLM and DeepSeek
send it; OpenAI itself only counts reasoning tokens).

Like the real API it refuses an agent history that does not add up: a ``tool`` message answering
no earlier call, or an assistant's tool calls not each answered by a ``tool`` message. It refuses
what the real API refuses of a body: an argument the chat API does not have ("Unrecognized request
argument supplied: include", the wording the API has long used, with ``param`` and ``code`` null),
a field the Responses API does not have ("Unknown parameter: 'x'.", code ``unknown_parameter``), and
a tool-call id longer than 40 characters (``string_above_max_length``; reported by many clients
since 2025; one 2026 reproduction saw a longer id pass, so the fake keeps the stricter rule: what
passes it passes the real API either way).

``POST /v1/responses`` answers as the Responses API reference and the SDK's types
(``openai/types/responses/``) describe: a whole ``response`` object, or the typed events
(``response.created``, ``response.in_progress``, per item ``response.output_item.added``, its
deltas and ``.done`` events, then ``response.completed``, or ``response.incomplete`` at the token
limit). A reply with ``reasoning`` has a reasoning item first, its text the summary, with
``encrypted_content`` when ``include`` asks for ``reasoning.encrypted_content``; a ``web_search``
tool offered makes a ``web_search_call`` item before the message. With ``store: false`` nothing is
kept, so a reasoning item sent back needs its encrypted content (one this fake made), an
``item_reference`` or ``previous_response_id`` is not found, and a ``function_call_output`` needs its
``function_call`` in the input.

Prompt caching is automatic, as OpenAI documents it: a prompt of MIN_CACHED_PREFIX tokens or more
(one per four characters of its JSON: tools, the response format, then the messages or the
instructions and input items) is cached by its prefixes at each message, and a later prompt that
starts with one reads it: ``prompt_tokens_details.cached_tokens`` (``input_tokens_details`` on the
Responses API) in increments of 128 tokens; ``prompt_tokens`` then counts the whole prompt."""

from __future__ import annotations

import base64
import re
import struct
import time
import uuid
from typing import Iterator

from .server import (
    FakeServer,
    Frame,
    Handler,
    RecordedRequest,
    Reply,
    embedding,
    fragments,
    sse,
    text_of,
)

CACHE_INCREMENT = 128  # OpenAI counts cache hits in steps of 128 tokens past the first 1024

# the arguments of `POST /v1/chat/completions` (the pinned SDK's `completion_create_params`)
CHAT_ARGUMENTS = frozenset({
    "messages", "model", "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs",
    "max_completion_tokens", "max_tokens", "metadata", "modalities", "moderation", "n", "parallel_tool_calls",
    "prediction", "presence_penalty", "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention",
    "reasoning_effort", "response_format", "safety_identifier", "seed", "service_tier", "stop", "store", "stream",
    "stream_options", "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity",
    "web_search_options"})
# the fields of `POST /v1/responses` (the pinned SDK's `response_create_params`)
RESPONSES_FIELDS = frozenset({
    "access_programs", "background", "background_options", "context_management", "conversation", "image", "include",
    "input", "instructions", "max_output_tokens", "max_tool_calls", "metadata", "model", "moderation",
    "parallel_tool_calls", "previous_response_id", "prompt", "prompt_cache_key", "prompt_cache_options",
    "prompt_cache_retention", "reasoning", "safety_identifier", "service_tier", "store", "stream", "stream_options",
    "temperature", "text", "tool_choice", "tools", "top_logprobs", "top_p", "truncation", "user"})
MAX_TOOL_CALL_ID = 40
ENCRYPTED_PREFIX = "fake-encrypted:"

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
        elif (request.method, request.path) == ("POST", "/v1/responses"):
            self.serve(handler, request, str(request.json.get("model", "")), stream=bool(request.json.get("stream")))
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
        param = None
        named = re.match(r"(?:Unknown parameter:|Invalid) '([^']+)'", message) if status == 400 else None
        if named:
            param = named[1]
            code = "unknown_parameter" if message.startswith("Unknown") else "string_above_max_length"
        return {"error": {"message": message, "type": error_type, "param": param, "code": code}}

    def response_headers(self) -> dict[str, str]:
        return {"x-request-id": f"req_{uuid.uuid4().hex}"}

    def invalid(self, request: RecordedRequest) -> str | None:
        if request.path == "/v1/responses":
            return self.invalid_responses(request.json)
        if request.path != "/v1/chat/completions":
            return None
        unknown = sorted(set(request.json) - CHAT_ARGUMENTS)
        if unknown:
            return f"Unrecognized request argument supplied: {unknown[0]}"
        pending: list[str] = []
        for index, message in enumerate(request.json.get("messages") or ()):
            for call_index, call in enumerate(message.get("tool_calls") or ()):
                if len(str(call.get("id", ""))) > MAX_TOOL_CALL_ID:
                    return (f"Invalid 'messages[{index}].tool_calls[{call_index}].id': string too long. Expected a "
                            f"string with maximum length {MAX_TOOL_CALL_ID}, but got a string with length "
                            f"{len(call['id'])} instead.")
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

    def invalid_responses(self, body: dict) -> str | None:
        """What the Responses API refuses of a body (see the module's docstring)."""
        unknown = sorted(set(body) - RESPONSES_FIELDS)
        if unknown:
            return f"Unknown parameter: '{unknown[0]}'."
        stored = body.get("store") is not False
        if body.get("previous_response_id") and (not stored or body["previous_response_id"] not in self.kept):
            return f"Previous response with id '{body['previous_response_id']}' not found."
        calls: set[str] = set()
        for index, item in enumerate(body["input"] if isinstance(body.get("input"), list) else ()):
            kind = item.get("type", "message")
            if kind == "message" and item.get("role") != "assistant" and "id" in item:
                return f"Unknown parameter: 'input[{index}].id'."
            if kind == "item_reference" or (kind == "reasoning" and not item.get("encrypted_content")):
                if not stored or item.get("id") not in self.kept_items:
                    return (f"Item with id '{item.get('id')}' not found. Items are not persisted when `store` is "
                            "set to false. Try again with `store` set to true, or remove this item from your input.")
            if kind == "reasoning" and item.get("encrypted_content") and \
                    item["encrypted_content"] != ENCRYPTED_PREFIX + str(item.get("id")):
                return f"The encrypted content for item {item.get('id')} could not be verified."
            if kind == "function_call":
                calls.add(item.get("call_id"))
            if kind == "function_call_output" and item.get("call_id") not in calls and not stored:
                return f"No tool call found for function call output with call_id {item.get('call_id')}."
        return None

    @property
    def kept(self) -> dict[str, dict]:
        """The responses this fake stored (`store` not false), by id."""
        with self._lock:
            return self.__dict__.setdefault("_kept", {})

    @property
    def kept_items(self) -> set[str]:
        return {item["id"] for response in list(self.kept.values()) for item in response["output"]}

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
        if request.path == "/v1/responses":
            given = request.json.get("input")
            if isinstance(given, str):
                return given
            users = [i for i in given or () if isinstance(i, dict) and i.get("role") == "user"]
            return text_of(users[-1].get("content")) if users else ""
        users = [m for m in request.json.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
        return text_of(users[-1].get("content")) if users else ""

    def offered_tools(self, request: RecordedRequest) -> list[tuple[str, dict]]:
        if request.path == "/v1/responses":
            return [(t["name"], t.get("parameters") or {}) for t in request.json.get("tools") or ()
                    if t.get("type") == "function"]
        return [(t["function"]["name"], t["function"].get("parameters") or {}) for t in request.json.get("tools") or ()]

    def tool_result(self, request: RecordedRequest) -> str | None:
        if request.path == "/v1/responses":
            given = request.json.get("input")
            last = given[-1] if isinstance(given, list) and given else {}
            return text_of(last.get("output")) if last.get("type") == "function_call_output" else None
        messages = request.json.get("messages") or [{}]
        return text_of(messages[-1].get("content")) if messages[-1].get("role") == "tool" else None

    def prompt_counts(self, reply: Reply, request: RecordedRequest) -> tuple[int, int]:
        """(prompt tokens, cached tokens) of the request, reading and filling this fake's prompt cache."""
        body = request.json
        if request.path == "/v1/responses":
            given = body.get("input")
            items = [{"role": "user", "content": given}] if isinstance(given, str) else list(given or ())
            head = [body.get("tools"), body.get("instructions")]
        else:
            items, head = list(body.get("messages") or ()), [body.get("tools"), body.get("response_format")]
        prefixes = [[*head, items[:end]] for end in range(1, len(items) + 1)]
        return self.prompt_cache.automatic(reply, prefixes, CACHE_INCREMENT)

    def completion(self, reply: Reply, model: str, request: RecordedRequest) -> dict:
        if request.path == "/v1/responses":
            response = self.response_object(reply, model, request, self.output_items(reply, request))
            if request.json.get("store") is not False:
                with self._lock:
                    self.kept[response["id"]] = response
            return response
        if (request.json.get("n") or 1) > 1:
            return self.several(reply, model, request)
        message = {"role": "assistant", "content": reply.full_text or None, "refusal": None, "annotations": []}
        if reply.tool_calls:
            message["tool_calls"] = [{"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
                                     for call_id, name, args in _calls(reply, request)]
        if reply.reasoning:
            message["reasoning_content"] = reply.reasoning
        return {
            **self._envelope("chat.completion", model),
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": _finish(reply)}],
            "usage": _usage(reply, self.prompt_counts(reply, request)),
        }

    def several(self, reply: Reply, model: str, request: RecordedRequest) -> dict:
        """A completion with ``n`` choices: choice ``i`` says the reply's text followed by `` (i)``."""
        choices = [{"index": i, "message": {"role": "assistant", "content": f"{reply.full_text} ({i})", "refusal": None,
                                            "annotations": []}, "logprobs": None, "finish_reason": _finish(reply)}
                   for i in range(request.json["n"])]
        return {**self._envelope("chat.completion", model), "choices": choices,
                "usage": _usage(reply, self.prompt_counts(reply, request))}

    # -- the Responses API ---------------------------------------------------------------------------

    def output_items(self, reply: Reply, request: RecordedRequest) -> list[dict]:
        """The whole output items of ``reply``: reasoning, a web search, the message, function calls."""
        body, items = request.json, []
        if reply.reasoning:
            item_id = f"rs_{uuid.uuid4().hex}"
            item = {"id": item_id, "type": "reasoning", "summary": [{"type": "summary_text", "text": reply.reasoning}]}
            if "reasoning.encrypted_content" in (body.get("include") or ()):
                item["encrypted_content"] = ENCRYPTED_PREFIX + item_id
            items.append(item)
        searches = [t for t in body.get("tools") or () if t.get("type") in ("web_search", "web_search_preview")]
        if searches and not reply.tool_calls:
            items.append({"id": f"ws_{uuid.uuid4().hex}", "type": "web_search_call", "status": "completed",
                          "action": {"type": "search", "query": self.last_user_text(request)}})
        if reply.full_text or not reply.tool_calls:
            part = {"type": "output_text", "text": reply.full_text, "annotations": [], "logprobs": []}
            items.append({"id": f"msg_{uuid.uuid4().hex}", "type": "message", "status": "completed",
                          "role": "assistant", "content": [part]})
        offered = [name for name, _ in self.offered_tools(request)]
        items += [{"id": f"fc_{uuid.uuid4().hex}", "type": "function_call", "status": "completed",
                   "call_id": f"call_{uuid.uuid4().hex[:24]}", "name": name, "arguments": args}
                  for name, args in reply.calls(offered)]
        return items

    def response_object(self, reply: Reply, model: str, request: RecordedRequest, output: list[dict],
                        status: str | None = None, response_id: str | None = None) -> dict:
        body = request.json
        incomplete = reply.finish_reason == "length"
        status = status or ("incomplete" if incomplete else "completed")
        reasoning = len(fragments(reply.reasoning)) if reply.reasoning else 0
        prompt, cached = self.prompt_counts(reply, request) if status != "in_progress" else (0, 0)
        usage = {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached},
                 "output_tokens": reply.output_tokens + reasoning,
                 "output_tokens_details": {"reasoning_tokens": reasoning},
                 "total_tokens": prompt + reply.output_tokens + reasoning}
        return {
            "id": response_id or f"resp_{uuid.uuid4().hex}", "object": "response", "created_at": int(time.time()),
            "status": status, "background": False, "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete and status != "in_progress" else None,
            "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": body.get("max_tool_calls"), "model": model, "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": (body.get("reasoning") or {}).get("effort"), "summary": None},
            "service_tier": "default", "store": body.get("store", True), "temperature": body.get("temperature", 1.0),
            "text": {"format": {"type": "text"}, "verbosity": "medium", **(body.get("text") or {})},
            "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools") or [],
            "top_p": body.get("top_p", 1.0), "truncation": body.get("truncation", "disabled"),
            "usage": usage if status != "in_progress" else None, "user": body.get("user"),
            "metadata": body.get("metadata") or {},
        }

    def response_frames(self, reply: Reply, model: str, request: RecordedRequest) -> Iterator[Frame]:
        """The typed events of a streamed response, in the order the real API sends them."""
        sequence = iter(range(1_000_000))
        output = self.output_items(reply, request)
        response_id = f"resp_{uuid.uuid4().hex}"

        def event(kind: str, content: bool = False, **fields) -> Frame:
            return sse({"type": kind, "sequence_number": next(sequence), **fields}, event=kind, content=content)

        snapshot = self.response_object(reply, model, request, [], "in_progress", response_id)
        yield event("response.created", response=snapshot)
        yield event("response.in_progress", response=snapshot)
        for index, item in enumerate(output):
            place = {"item_id": item["id"], "output_index": index}
            if item["type"] == "reasoning":
                yield event("response.output_item.added", output_index=index, item={**item, "summary": []})
                text = item["summary"][0]["text"]
                part = {"type": "summary_text", "text": ""}
                yield event("response.reasoning_summary_part.added", **place, summary_index=0, part=part)
                for piece in fragments(text):
                    yield event("response.reasoning_summary_text.delta", True, **place, summary_index=0, delta=piece)
                yield event("response.reasoning_summary_text.done", **place, summary_index=0, text=text)
                yield event("response.reasoning_summary_part.done", **place, summary_index=0,
                            part={**part, "text": text})
            elif item["type"] == "web_search_call":
                yield event("response.output_item.added", output_index=index,
                            item={"id": item["id"], "type": "web_search_call", "status": "in_progress",
                                  "action": item["action"]})
                for stage in ("in_progress", "searching", "completed"):
                    yield event(f"response.web_search_call.{stage}", **place)
            elif item["type"] == "message":
                yield event("response.output_item.added", output_index=index,
                            item={**item, "status": "in_progress", "content": []})
                part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                yield event("response.content_part.added", **place, content_index=0, part=part)
                for piece in reply.pieces():
                    yield event("response.output_text.delta", True, **place, content_index=0, delta=piece,
                                logprobs=[])
                text = item["content"][0]["text"]
                yield event("response.output_text.done", **place, content_index=0, text=text, logprobs=[])
                yield event("response.content_part.done", **place, content_index=0, part={**part, "text": text})
            else:
                yield event("response.output_item.added", output_index=index,
                            item={**item, "status": "in_progress", "arguments": ""})
                for piece in fragments(item["arguments"]):
                    yield event("response.function_call_arguments.delta", True, **place, delta=piece)
                yield event("response.function_call_arguments.done", **place, name=item["name"],
                            arguments=item["arguments"])
            yield event("response.output_item.done", output_index=index, item=item)
        final = self.response_object(reply, model, request, output, response_id=response_id)
        if request.json.get("store") is not False:
            with self._lock:
                self.kept[response_id] = final
        yield event(f"response.{final['status']}", response=final)

    def frames(self, reply: Reply, model: str, request: RecordedRequest) -> Iterator[Frame]:
        """Role chunk, one chunk per piece, finish chunk, optional usage chunk, then ``[DONE]``."""
        if request.path == "/v1/responses":
            yield from self.response_frames(reply, model, request)
            return
        if (request.json.get("n") or 1) > 1:
            yield from self.several_frames(reply, model, request)
            return
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
            yield sse({**envelope, "choices": [], "usage": _usage(reply, self.prompt_counts(reply, request))})
        yield sse("[DONE]")

    def several_frames(self, reply: Reply, model: str, request: RecordedRequest) -> Iterator[Frame]:
        """``n`` choices streamed interleaved, each chunk's choice under its ``index``."""
        envelope, count = self._envelope("chat.completion.chunk", model), request.json["n"]

        def chunk(index: int, delta: dict, finish_reason: str | None = None, content: bool = False) -> Frame:
            choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return sse({**envelope, "choices": [choice]}, content=content)

        for index in range(count):
            yield chunk(index, {"role": "assistant", "content": "", "refusal": None})
        for piece in [*reply.pieces(), " (i)"]:
            for index in range(count):
                yield chunk(index, {"content": piece.replace("(i)", f"({index})")}, content=True)
        for index in range(count):
            yield chunk(index, {}, _finish(reply))
        if (request.json.get("stream_options") or {}).get("include_usage"):
            yield sse({**envelope, "choices": [], "usage": _usage(reply, self.prompt_counts(reply, request))})
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


def _usage(reply: Reply, counts: tuple[int, int]) -> dict:
    """The chat API's usage: ``counts`` are the (prompt, cached) tokens (`FakeOpenAI.prompt_counts`)."""
    reasoning = len(fragments(reply.reasoning)) if reply.reasoning else 0
    completion = reply.output_tokens + reasoning
    prompt, cached = counts
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }
