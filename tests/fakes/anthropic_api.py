"""Fake of Anthropic's Messages API: text, thinking blocks, tool_use blocks (several, their input
streamed in ``input_json_delta`` fragments), token counting (``count_tokens``: one token per four
characters of the JSON of the system prompt, messages and tools, so a test can predict it), and
the 400s the real API answers for top-level fields it does not know, a thinking budget out of
range, tool results that do not match the previous turn's tool_use blocks, tool ids outside
``^[a-zA-Z0-9_-]+$``, ``temperature`` other than 1 or ``top_p`` below 0.95 while thinking is on, a
tool loop whose last assistant turn does not start with its thinking block while thinking is on, and
a thinking block whose signature is not the one the fake gave it (a signature here is a hash of the
block's text, so one that was altered or made up is refused, as the real API refuses it).

Prompt caching as Anthropic documents it: only what a ``cache_control`` mark ends is cached (a mark
on a tool, a system block or a message's content block; a top-level ``cache_control`` marks the last
block), the prefix in the order tools, system, messages, and only from MIN_CACHED_PREFIX tokens (one
token per four characters of its JSON). A request whose marked prefix was cached reads it
(``cache_read_input_tokens``), one whose marked prefix was not writes it
(``cache_creation_input_tokens``; in ``cache_creation``, what each breakpoint adds counted for its
``ttl``); ``input_tokens`` is the
scripted reply's, the tokens after the last breakpoint. ``received_marks`` lists the marks each
request carried, by where they were."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from typing import Iterator

from .server import MIN_CACHED_PREFIX, FakeServer, Frame, Handler, RecordedRequest, Reply, fragments, sse, text_of

CACHE_CONTROL = "cache_control"
CACHE_COUNTS = ("cache_creation_input_tokens", "cache_read_input_tokens")  # also in a stream's message_delta

FINISH_REASONS = {"stop": "end_turn", "length": "max_tokens"}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
# the Messages API's top-level fields; any other is refused ("Extra inputs are not permitted")
FIELDS = {"model", "messages", "max_tokens", "system", "stop_sequences", "stream", "metadata", "tools", "tool_choice",
          "thinking", "output_config", "temperature", "top_p", "top_k", "service_tier", "container", "mcp_servers",
          "cache_control", "inference_geo", "speed", "diagnostics", "user_profile_id", "workspace_id"}
# the fields `POST /v1/messages/count_tokens` takes
COUNT_FIELDS = {"model", "messages", "system", "tools", "tool_choice", "thinking", "output_config", "cache_control",
                "mcp_servers", "speed", "user_profile_id", "workspace_id"}
MIN_THINKING_BUDGET = 1024
TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
THINKING_TYPES = ("thinking", "redacted_thinking")
DOCS = "Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"


class FakeAnthropic(FakeServer):
    default_models = ("claude-sonnet-4-5", "claude-haiku-4-5")

    def route(self, handler: Handler, request: RecordedRequest) -> None:
        if (request.method, request.path) == ("POST", "/v1/messages"):
            body = request.json
            self.serve(handler, request, str(body.get("model", "")), stream=bool(body.get("stream")))
        elif (request.method, request.path) == ("POST", "/v1/messages/count_tokens"):
            handler.send_json(200, {"input_tokens": counted_tokens(request.json)}, self.response_headers())
        elif (request.method, request.path) == ("GET", "/v1/models"):
            handler.send_json(200, self._models_page(), self.response_headers())
        else:
            self.reject(handler, 404, f"Not found: {request.method} {request.path}")

    def auth_error(self, request: RecordedRequest) -> tuple[int, str] | None:
        """Accept the key as ``x-api-key`` or as a bearer token, which the 2.x SDK sends instead."""
        headers = request.headers
        if self.api_key in (headers.get("x-api-key"), headers.get("authorization", "").removeprefix("Bearer ")):
            return None
        return 401, "invalid x-api-key"

    def error_body(self, status: int, message: str, reply: Reply | None = None) -> dict:
        error_type = ERROR_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": error_type, "message": message}, "request_id": _id("req_")}

    def stream_error(self, status: int, message: str) -> Frame:
        """Anthropic's `error` event, as its streaming docs show it (no request id in the event)."""
        return _event("error", error={"type": ERROR_TYPES.get(status, "api_error"), "message": message})

    def response_headers(self) -> dict[str, str]:
        return {"request-id": _id("req_")}

    def invalid(self, request: RecordedRequest) -> str | None:
        if request.path not in ("/v1/messages", "/v1/messages/count_tokens"):
            return None
        body = request.json
        extra = sorted(set(body) - (FIELDS if request.path == "/v1/messages" else COUNT_FIELDS))
        if extra:
            return f"{extra[0]}: Extra inputs are not permitted"
        thinking = body.get("thinking") or {}
        if thinking.get("type") == "enabled" and request.path == "/v1/messages":
            budget = thinking.get("budget_tokens") or 0
            if budget < MIN_THINKING_BUDGET or budget >= (body.get("max_tokens") or 0):
                return "thinking.budget_tokens: must be >= 1024 and less than max_tokens"
        messages = body.get("messages") or []
        thinking_on = thinking.get("type") in ("enabled", "adaptive")
        return (_sampling_problem(body, thinking_on) or _tool_id_problem(messages) or _signature_problem(messages)
                or _tool_history_problem(messages) or (_thinking_problem(messages) if thinking_on else None))

    @property
    def received_marks(self) -> list[list[tuple[str, dict]]]:
        """The ``cache_control`` marks of each Messages request, as (where, mark), in the prompt's order."""
        return [[(where, mark) for where, _, mark in cache_segments(r.json) if mark]
                for r in self.requests if isinstance(r.json, dict) and "messages" in r.json
                and not r.path.endswith("count_tokens")]

    def cache_usage(self, body: dict) -> dict:
        """The usage's cache counts for ``body``, reading and writing this fake's prompt cache."""
        segments = cache_segments(body)
        breakpoints = [([block for _, block, _ in segments[:end + 1]], mark)
                       for end, (_, _, mark) in enumerate(segments) if mark]
        prefixes = [prefix for prefix, _ in breakpoints]
        read = self.prompt_cache.hit(prefixes)
        written = {"5m": 0, "1h": 0}  # each breakpoint writes what it adds, for its own ttl
        end = read
        for prefix, mark in breakpoints:
            tokens = self.prompt_cache.tokens(prefix)
            if tokens >= MIN_CACHED_PREFIX and tokens > end:
                written[mark.get("ttl", "5m")] += tokens - end
                end = tokens
        self.prompt_cache.store(prefixes)
        return {"cache_creation_input_tokens": sum(written.values()), "cache_read_input_tokens": read,
                "cache_creation": {"ephemeral_5m_input_tokens": written["5m"],
                                   "ephemeral_1h_input_tokens": written["1h"]}}

    def last_user_text(self, request: RecordedRequest) -> str:
        users = [m for m in request.json.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
        return text_of(users[-1].get("content")) if users else ""

    def offered_tools(self, request: RecordedRequest) -> list[tuple[str, dict]]:
        return [(tool["name"], tool.get("input_schema") or {}) for tool in request.json.get("tools") or ()]

    def tool_result(self, request: RecordedRequest) -> str | None:
        last = (request.json.get("messages") or [{}])[-1].get("content")
        results = [b for b in last if b.get("type") == "tool_result"] if isinstance(last, list) else []
        return " ".join(text_of(b.get("content")) for b in results) if results else None

    def completion(self, reply: Reply, model: str, request: RecordedRequest) -> dict:
        blocks = [{**start, **({"thinking": reply.reasoning} if start["type"] == "thinking" else {}),
                   **({"text": reply.full_text} if start["type"] == "text" else {}),
                   **({"input": json.loads(arguments)} if start["type"] == "tool_use" else {})}
                  for start, arguments in self._blocks(reply, request)]
        usage = {"input_tokens": reply.prompt_tokens, **_output_usage(reply, blocks), **self.cache_usage(request.json)}
        return {**self._message(model, usage), "content": blocks, "stop_reason": _stop_reason(reply)}

    def frames(self, reply: Reply, model: str, request: RecordedRequest) -> Iterator[Frame]:
        """The Messages streaming sequence, every event named by an ``event:`` line as the SDK requires."""
        cache = self.cache_usage(request.json)
        start_usage = {"input_tokens": reply.prompt_tokens, "output_tokens": 1, **cache}
        yield _event("message_start", message={**self._message(model, start_usage), "content": [], "stop_reason": None})
        yield _event("ping")
        blocks = self._blocks(reply, request)
        for index, (start, arguments) in enumerate(blocks):
            if start["type"] == "thinking":
                block = {**start, "thinking": "", "signature": ""}
                deltas = [{"type": "thinking_delta", "thinking": piece} for piece in fragments(reply.reasoning)]
                deltas.append({"type": "signature_delta", "signature": start["signature"]})
            elif start["type"] == "tool_use":
                block = {**start, "input": {}}
                deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in fragments(arguments)]
            else:
                block = {"type": "text", "text": ""}
                deltas = [{"type": "text_delta", "text": piece} for piece in reply.pieces()]
            yield _event("content_block_start", index=index, content_block=block)
            for delta in deltas:
                yield _event("content_block_delta", content=True, index=index, delta=delta)
            yield _event("content_block_stop", index=index)
        yield _event(
            "message_delta",
            delta={"stop_reason": _stop_reason(reply), "stop_sequence": None},
            usage={"input_tokens": reply.prompt_tokens, **{name: cache[name] for name in CACHE_COUNTS},
                   **_output_usage(reply, [start for start, _ in blocks])},
        )
        yield _event("message_stop")

    @staticmethod
    def _blocks(reply: Reply, request: RecordedRequest) -> list[tuple[dict, str]]:
        """(block without its content, JSON arguments of a tool_use) for each block of the answer:
        thinking when asked for and scripted, the text, then one tool_use per call."""
        blocks: list[tuple[dict, str]] = []
        if reply.reasoning and (request.json.get("thinking") or {}).get("type") in ("enabled", "adaptive"):
            blocks.append(({"type": "thinking", "signature": signature_of(reply.reasoning)}, ""))
        if reply.pieces() or not reply.tool_calls:
            blocks.append(({"type": "text"}, ""))
        choice = request.json.get("tool_choice") or {}
        offered = [choice["name"]] if choice.get("name") else [t.get("name") for t in request.json.get("tools") or ()]
        for name, arguments in reply.calls(offered):
            blocks.append(({"type": "tool_use", "id": _id("toolu_"), "name": name}, arguments))
        return blocks

    def _models_page(self) -> dict:
        models = [
            {
                "type": "model",
                "id": model,
                "display_name": model.replace("-", " ").title(),
                "created_at": "2025-01-01T00:00:00Z",
                "lifecycle": "active",
            }
            for model in self.models()
        ]
        ids = [model["id"] for model in models] or [None]
        return {"data": models, "has_more": False, "first_id": ids[0], "last_id": ids[-1]}

    @staticmethod
    def _message(model: str, usage: dict) -> dict:
        usage = {"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, **usage, "service_tier": "standard"}
        return {"id": _id("msg_"), "type": "message", "role": "assistant", "model": model,
                "stop_sequence": None, "usage": usage}


def cache_segments(body: dict) -> list[tuple[str, dict, dict | None]]:
    """(where, block without its mark, mark) of each block the prompt cache covers, in its order: tools,
    system, then each message's blocks (a string content as one text block); a top-level
    ``cache_control`` marks the last block."""
    blocks: list[tuple[str, dict]] = [(f"tools.{i}", tool) for i, tool in enumerate(body.get("tools") or ())]
    system = body.get("system")
    if isinstance(system, str) and system:
        blocks.append(("system", {"type": "text", "text": system}))
    elif isinstance(system, list):
        blocks += [(f"system.{i}", block) for i, block in enumerate(system)]
    for i, message in enumerate(body.get("messages") or ()):
        content = message.get("content")
        if isinstance(content, str):
            blocks.append((f"messages.{i}", {"role": message.get("role"), "type": "text", "text": content}))
        else:
            blocks += [(f"messages.{i}.content.{j}", {"role": message.get("role"), **block})
                       for j, block in enumerate(content or ())]
    segments = [(where, {k: v for k, v in block.items() if k != CACHE_CONTROL}, block.get(CACHE_CONTROL))
                for where, block in blocks]
    if body.get(CACHE_CONTROL) and segments:
        where, block, _ = segments[-1]
        segments[-1] = (where, block, body[CACHE_CONTROL])
    return segments


def counted_tokens(body: dict) -> int:
    """The fake's token count of a request: a quarter of the length of its system, messages and tools as JSON."""
    return len(json.dumps([body.get("system"), body.get("messages"), body.get("tools")])) // 4


def _event(kind: str, content: bool = False, **fields: object) -> Frame:
    return sse({"type": kind, **fields}, event=kind, content=content)


def signature_of(thinking: str) -> str:
    """The fake's signature of a thinking block: a hash of its text, so an altered block is caught."""
    return "sig_" + hashlib.sha256(thinking.encode()).hexdigest()[:32]


def _blocks(message: dict) -> list[dict]:
    content = message.get("content")
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _sampling_problem(body: dict, thinking_on: bool) -> str | None:
    """The real API's 400s for sampling settings it refuses while thinking is on."""
    if thinking_on and body.get("temperature", 1) != 1:
        return f"`temperature` may only be set to 1 when thinking is enabled or in adaptive mode. {DOCS}"
    if thinking_on and body.get("top_p", 1) < 0.95:
        return f"`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled. {DOCS}"
    return None


def _tool_id_problem(messages: list[dict]) -> str | None:
    """The real API's 400 for a tool_use id (or the tool_result's tool_use_id) outside its pattern."""
    for index, message in enumerate(messages):
        for number, block in enumerate(_blocks(message)):
            key = {"tool_use": "id", "tool_result": "tool_use_id"}.get(block.get("type"))
            if key and not TOOL_ID.match(str(block.get(key, ""))):
                return (f"messages.{index}.content.{number}.{block['type']}.{key}: String should match pattern "
                        "'^[a-zA-Z0-9_-]+$'")
    return None


def _signature_problem(messages: list[dict]) -> str | None:
    """The real API's 400 for a thinking block whose signature does not cover it."""
    for index, message in enumerate(messages):
        for number, block in enumerate(_blocks(message)):
            if block.get("type") == "thinking" and block.get("signature") != signature_of(block.get("thinking", "")):
                return f"messages.{index}.content.{number}: Invalid `signature` in `thinking` block"
    return None


def _thinking_problem(messages: list[dict]) -> str | None:
    """The real API's 400 for a tool loop (the request ends with tool results) whose last assistant turn
    does not start with its thinking block, while thinking is on."""
    if not messages or not any(b.get("type") == "tool_result" for b in _blocks(messages[-1])):
        return None
    index = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    if index is None:
        return None
    blocks = _blocks(messages[index])
    found = blocks[0].get("type") if blocks else "text"
    if found in THINKING_TYPES:
        return None
    return (f"messages.{index}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{found}`. "
            "When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding "
            "the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from "
            f"previous turns. To avoid this requirement, disable `thinking`. {DOCS}")


def _tool_history_problem(messages: list[dict]) -> str | None:
    """The real API's 400 when a turn's tool_result blocks do not answer the tool_use blocks of the turn before."""
    asked: set[str] = set()
    for index, message in enumerate(messages):
        blocks = message.get("content") if isinstance(message.get("content"), list) else []
        answered = {b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"}
        if answered - asked:
            return (f"messages.{index}.content: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{sorted(answered - asked)[0]}. Each `tool_result` block must have a corresponding `tool_use` "
                    "block in the previous message.")
        if asked - answered:
            return (f"messages.{index}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                    f"{sorted(asked - answered)[0]}.")
        asked = {b.get("id") for b in blocks if b.get("type") == "tool_use"}
    return None


def _output_usage(reply: Reply, blocks: list[dict]) -> dict:
    """``output_tokens`` and, when the answer thought, how many of them were thinking."""
    usage: dict = {"output_tokens": _output_tokens(reply)}
    if reply.reasoning and any(block["type"] == "thinking" for block in blocks):
        usage["output_tokens_details"] = {"thinking_tokens": len(fragments(reply.reasoning))}
    return usage


def _output_tokens(reply: Reply) -> int:
    if reply.completion_tokens is not None:
        return reply.output_tokens
    arguments = sum(len(fragments(args)) for _, args in reply.calls(["tool"]))
    return reply.output_tokens + arguments + (len(fragments(reply.reasoning)) if reply.reasoning else 0)


def _stop_reason(reply: Reply) -> str:
    if reply.tool_calls:
        return "tool_use"
    return FINISH_REASONS.get(reply.finish_reason, reply.finish_reason)


def _id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]
