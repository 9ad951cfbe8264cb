"""Anthropic's Messages wire shape to the neutral `CompletionRequest`, and an `Answer` back to a `message`.

A Claude model receives the body as it came (`NativeBody`); the translation is for every other
provider. It keeps what the others can honour and refuses the rest with a 400 naming it:
- `system` (a string or text blocks) becomes a system message; text and image blocks (base64 or URL)
  become parts; an assistant's `tool_use` blocks its tool calls; each `tool_result` block a `tool`
  message (`is_error: true` prefixes its text with "Error: ", as no other vendor has the flag);
- `thinking`/`redacted_thinking` blocks of earlier answers are Claude's own reasoning and are not sent
  to other vendors (none takes it back), except what this server sealed in a thinking block's
  `signature` for another vendor's answer: Gemini's thought signatures, by tool call id, which go back
  on those calls (a thinking block is the one part of an answer every Anthropic client keeps whole,
  and ids stay within Anthropic's id rule); `cache_control` marks are Anthropic's cache hints and are
  not sent either (the other vendors cache on their own), but named in X-Dropped-Params;
- `thinking` becomes `reasoning_effort` by its budget; `tool_choice` {any} is "required",
  `disable_parallel_tool_use` is `parallel_tool_calls: false`; `output_config.format` is structured
  output; `metadata.user_id` is `user`; fields the front door does not know go to `extra` (an
  OpenAI-compatible upstream receives them, any other refuses them by name).
"""
from __future__ import annotations

import json
from typing import Any

from app.core.errors import BadRequest
from app.core.schemas import check_image_type
from app.llm.gateway import Answer
from app.llm.providers.base import ANTHROPIC_MESSAGES, CACHE_CONTROL, CompletionRequest, NativeBody
from app.llm.registry import Route
from app.llm.sse import anthropic_message_id, anthropic_stop_reason, anthropic_usage, seal, unseal

TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
# the neutral parameters under the names a Messages API client sent them, for a 400 naming one
WIRE_NAMES = {"stop": "stop_sequences", "parallel_tool_calls": "tool_choice.disable_parallel_tool_use",
              "reasoning_effort": "thinking", "json_schema": "output_config.format", "user": "metadata.user_id"}
NOT_SENT_ELSEWHERE = ("thinking", "redacted_thinking")
PASSED_HEADERS = ("anthropic-beta",)


def native_body(body: dict[str, Any], headers: Any) -> NativeBody:
    """The body as it came, with the client's `anthropic-beta` header, for a Claude model."""
    return NativeBody(ANTHROPIC_MESSAGES, body, {name: headers[name] for name in PASSED_HEADERS if headers.get(name)})


def request_for(routes: list[Route], checked: dict[str, Any], native: NativeBody) -> CompletionRequest:
    """What the gateway is asked: the body as it came when every route speaks Anthropic's API, else
    also its neutral translation (for the routes that do not)."""
    if all(ANTHROPIC_MESSAGES in route.provider.native_wires for route in routes):
        return CompletionRequest(messages=[], max_tokens=checked["max_tokens"], native=native)
    return completion_request(checked, native)


def completion_request(checked: dict[str, Any], native: NativeBody) -> CompletionRequest:
    """The neutral request of a checked Messages body; 400 naming any block or tool no other vendor takes."""
    messages = system_messages(checked["system"])
    for index, message in enumerate(checked["messages"]):
        messages += neutral_messages(message, f"messages.{index}")
    choice, parallel = tool_choice(checked["tool_choice"])
    return CompletionRequest(
        messages=messages, max_tokens=checked["max_tokens"], temperature=checked["temperature"],
        top_p=checked["top_p"], stop=checked["stop_sequences"], tools=neutral_tools(checked["tools"]),
        tool_choice=choice, parallel_tool_calls=parallel, reasoning_effort=reasoning_effort(checked["thinking"]),
        json_schema=json_schema(checked["output_config"]),
        user=(checked["metadata"] or {}).get("user_id"), extra=checked["extra"], native=native)


def system_messages(system: str | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    if not system:
        return []
    return [{"role": "system", "content": system if isinstance(system, str) else text_parts(system, "system")}]


def neutral_messages(message: dict[str, Any], path: str) -> list[dict[str, Any]]:
    """One Anthropic turn as neutral messages: tool results first (each its own `tool` message), then
    the turn's text and images, with an assistant's tool calls."""
    content = message["content"]
    if isinstance(content, str):
        return [{"role": message["role"], "content": content}]
    results = [tool_message(block, f"{path}.content.{i}") for i, block in enumerate(content)
               if block["type"] == "tool_result"]
    parts, calls, signatures = [], [], sealed_signatures(content)
    for i, block in enumerate(content):
        if block["type"] == "tool_use" and message["role"] == "assistant":
            call_id = str(block.get("id", ""))
            calls.append({"id": call_id, "name": str(block.get("name", "")),
                          "arguments": json.dumps(block.get("input") or {}),
                          **({"signature": signatures[call_id]} if signatures.get(call_id) else {})})
        elif block["type"] not in ("tool_result", *NOT_SENT_ELSEWHERE):
            parts.append(content_part(block, f"{path}.content.{i}"))
    if not parts and not calls:
        return results
    turn: dict[str, Any] = {"role": message["role"], "content": parts or None}
    if calls:
        turn["tool_calls"] = calls
    return [*results, turn]


def sealed_signatures(blocks: list[dict[str, Any]]) -> dict[str, str]:
    """The thought signatures this server sealed in the turn's thinking blocks, by tool call id."""
    signatures: dict[str, str] = {}
    for block in blocks:
        if block["type"] == "thinking":
            found = unseal(block.get("signature")).get("signatures")
            signatures.update(found if isinstance(found, dict) else {})
    return signatures


def tool_message(block: dict[str, Any], path: str) -> dict[str, Any]:
    content = block.get("content")
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else text_and_images(content or [], path)
    if block.get("is_error"):
        parts = [{"type": "text", "text": "Error: "}, *parts]
    return {"role": "tool", "tool_call_id": str(block.get("tool_use_id", "")), "content": parts or ""}


def text_and_images(blocks: list[Any], path: str) -> list[dict[str, Any]]:
    return [content_part(block, f"{path}.content.{i}") for i, block in enumerate(blocks)]


def text_parts(blocks: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    parts = text_and_images(blocks, path)
    if any(part["type"] != "text" for part in parts):
        raise BadRequest(f"{path}: only text blocks are allowed here.", details={"param": path})
    return parts


def content_part(block: Any, path: str) -> dict[str, Any]:
    """A text or image block as a neutral part; 400 naming any other type (documents, server tool
    results...), which only Claude models take."""
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "text" and isinstance(block.get("text"), str):
        return with_mark({"type": "text", "text": block["text"]}, block)
    source = block.get("source") if kind == "image" else None
    if isinstance(source, dict) and source.get("type") == "base64" and source.get("media_type") and source.get("data"):
        try:
            media_type = check_image_type(str(source["media_type"]))
        except ValueError as exc:
            raise BadRequest(f"{path}.source.media_type: {exc}.", details={"param": f"{path}.source.media_type"}) \
                from None
        return with_mark({"type": "image", "media_type": media_type, "data": str(source["data"])}, block)
    if isinstance(source, dict) and source.get("type") == "url" and str(source.get("url", "")).startswith("http"):
        return with_mark({"type": "image", "url": source["url"]}, block)
    raise BadRequest(f"{path}: a {kind!r} block is only supported for Claude models; other models take text, image "
                     "(base64 or url), tool_use, tool_result and thinking blocks.",
                     code="unsupported_parameter", details={"param": path})


def neutral_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if not tools:
        return None
    server_tools = [tool["name"] for tool in tools if tool.get("type") not in (None, "custom")]
    if server_tools:
        raise BadRequest(f"tools: the server tool {server_tools[0]!r} is only supported for Claude models.",
                         code="unsupported_parameter", details={"param": "tools"})
    return [with_mark({key: value for key, value in (("name", tool["name"]), ("description", tool.get("description")),
                                                     ("parameters", tool["input_schema"])) if value is not None}, tool)
            for tool in tools]


def with_mark(neutral: dict[str, Any], block: dict[str, Any]) -> dict[str, Any]:
    """`neutral` with the block's `cache_control` mark, so that a provider without prompt-cache marks
    names it in X-Dropped-Params rather than losing it unsaid."""
    if block.get(CACHE_CONTROL) is not None:
        neutral[CACHE_CONTROL] = block[CACHE_CONTROL]
    return neutral


def tool_choice(choice: dict[str, Any] | None) -> tuple[str | dict[str, str] | None, bool | None]:
    """Anthropic's `tool_choice` as the neutral (tool_choice, parallel_tool_calls)."""
    if choice is None:
        return None, None
    parallel = False if choice.get("disable_parallel_tool_use") else None
    if choice["type"] == "tool":
        return {"name": choice["name"]}, parallel
    return TOOL_CHOICES[choice["type"]], parallel


def reasoning_effort(thinking: dict[str, Any] | None) -> str | None:
    """`thinking` as an effort: a budget up to 2,048 tokens is low, up to 8,192 medium, more high;
    adaptive thinking is medium; disabled is none."""
    if not thinking:
        return None
    if thinking["type"] == "disabled":
        return "none"
    budget = thinking.get("budget_tokens")
    if thinking["type"] == "adaptive" or budget is None:
        return "medium"
    return "low" if budget <= 2048 else "medium" if budget <= 8192 else "high"


def json_schema(output_config: dict[str, Any] | None) -> dict[str, Any] | None:
    fmt = (output_config or {}).get("format")
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        return None
    return {"name": "response", "schema": fmt["schema"], "strict": True}


def message_body(answer: Answer) -> dict[str, Any]:
    """Anthropic's `message` for an answer: Claude's own body as it came, else one built from the parts."""
    if answer.native is not None:
        return answer.native
    content: list[dict[str, Any]] = []
    signatures = {call.id: call.signature for call in answer.tool_calls if call.signature}
    if answer.reasoning or signatures:
        content.append({"type": "thinking", "thinking": answer.reasoning,
                        "signature": seal({"signatures": signatures}) if signatures else ""})
    if answer.text or not answer.tool_calls:
        content.append({"type": "text", "text": answer.text})
    content += [{"type": "tool_use", "id": call.id, "name": call.name, "input": tool_input(call.arguments)}
                for call in answer.tool_calls]
    return {"id": anthropic_message_id(), "type": "message", "role": "assistant", "model": answer.model,
            "content": content,
            "stop_reason": anthropic_stop_reason(answer.finish_reason), "stop_sequence": None,
            "usage": anthropic_usage(answer.usage)}


def tool_input(arguments: str) -> Any:
    """A call's JSON arguments as the object Anthropic's `input` is (`{}` for none)."""
    try:
        return json.loads(arguments) if arguments else {}
    except ValueError:
        return {"arguments": arguments}  # a model's malformed JSON, kept rather than lost
