"""The Responses API's wire shape to the neutral `CompletionRequest`, and an `Answer` back to a `response`.

`input` (a string, or items: messages with `input_text`/`input_image`/`output_text` parts,
`function_call` and `function_call_output`) and `instructions` become the conversation; function
tools, `tool_choice`, `max_output_tokens`, `temperature`, `top_p`, `text.format` (JSON schema),
`reasoning.effort`, `metadata` and `user` their neutral fields; unknown fields go to `extra` (an
OpenAI-compatible upstream receives them, any other provider refuses them by name). Reasoning
items of earlier answers are not sent back (no vendor takes another's reasoning). The input is kept
as items (`stored_items`: each with an `id`, a message's text as parts) for storing and listing, and
a continued chain's items go before it (see `app.frontdoors.responses.service`).
"""
from __future__ import annotations

import base64
import time
from typing import Any

from app.core.errors import BadRequest
from app.core.schemas import decode_image_uri
from app.llm.gateway import Answer
from app.llm.providers.base import CompletionRequest
from app.llm.sse import function_call_item, message_item, new_id, reasoning_item, responses_usage

ROLES = ("user", "system", "developer", "assistant")
TEXT_PARTS = ("input_text", "output_text", "text")
NOT_SENT = ("reasoning",)


ITEM_ID_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}
MAX_ITEM_ID = 200


def completion_request(body: dict[str, Any], chain: list[dict[str, Any]]) -> CompletionRequest:
    """The neutral request for `body`, its input after `chain` (the items of the responses it continues)."""
    messages = [{"role": "system", "content": body["instructions"]}] if body["instructions"] else []
    messages += input_messages(chain) + input_messages(body["input"])
    return CompletionRequest(
        messages=messages, max_tokens=body["max_output_tokens"], temperature=body["temperature"],
        top_p=body["top_p"], json_schema=json_schema((body["text"] or {}).get("format")),
        tools=function_tools(body["tools"]), tool_choice=body["tool_choice"],
        parallel_tool_calls=body["parallel_tool_calls"], reasoning_effort=(body["reasoning"] or {}).get("effort"),
        metadata=body["metadata"], user=body["user"], extra=body["extra"])


def stored_items(given: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The input as items the way OpenAI lists them: a string is a user message, a message's string
    content a text part, and each item has an `id` (the client's, or a new one) and a `status`."""
    if isinstance(given, str):
        given = [{"role": "user", "content": given}]
    return [stored_item(item, f"input.{index}") for index, item in enumerate(given)]


def stored_item(item: dict[str, Any], path: str) -> dict[str, Any]:
    kind = item.get("type", "message")
    item_id = item["id"] if item.get("id") is not None else new_id(ITEM_ID_PREFIXES.get(kind, "item"))
    if not isinstance(item_id, str) or not 0 < len(item_id) <= MAX_ITEM_ID:
        raise BadRequest(f"{path}.id: must be a string of 1 to {MAX_ITEM_ID} characters.",
                         details={"param": f"{path}.id"})
    stored = {"id": item_id, "type": kind, **item, "status": item.get("status") or "completed"}
    if kind == "message" and isinstance(item.get("content"), str):
        part = "output_text" if item.get("role") == "assistant" else "input_text"
        stored["content"] = [{"type": part, "text": item["content"]}]
    return stored


def input_messages(given: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The input items as neutral messages: consecutive function calls join one assistant message."""
    if isinstance(given, str):
        return [{"role": "user", "content": given}]
    messages: list[dict[str, Any]] = []
    for index, item in enumerate(given):
        kind = item.get("type", "message")
        if kind == "function_call":
            call = {"id": str(item.get("call_id", "")), "name": str(item.get("name", "")),
                    "arguments": str(item.get("arguments", ""))}
            if messages and messages[-1]["role"] == "assistant" and "tool_calls" in messages[-1]:
                messages[-1]["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": str(item.get("call_id", "")),
                             "content": output_text_of(item.get("output"), f"input.{index}.output")})
        elif kind == "message" and item.get("role") in ROLES:
            messages.append({"role": item["role"], "content": content_of(item.get("content"), f"input.{index}")})
        elif kind not in NOT_SENT:
            raise BadRequest(f"input.{index}: items of type {kind!r} are not supported; send messages, "
                             "function_call and function_call_output items.", details={"param": f"input.{index}"})
    return messages


def output_text_of(output: Any, path: str) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return "".join(part.get("text", "") for part in output if isinstance(part, dict))
    raise BadRequest(f"{path}: must be a string or a list of text parts.", details={"param": path})


def content_of(content: Any, path: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list) or not content:
        raise BadRequest(f"{path}.content: must be a string or a non-empty list of parts.",
                         details={"param": f"{path}.content"})
    return [content_part(part, f"{path}.content.{i}") for i, part in enumerate(content)]


def content_part(part: Any, path: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in TEXT_PARTS and isinstance(part.get("text"), str):
        return {"type": "text", "text": part["text"]}
    url = part.get("image_url") if kind == "input_image" else None
    if isinstance(url, str) and url.startswith(("https://", "http://")):
        return {"type": "image", "url": url}
    if isinstance(url, str):
        try:
            media_type, data = decode_image_uri(url)
        except ValueError as exc:
            raise BadRequest(f"{path}.image_url: not an http(s) URL or base64 data: URI of an image ({exc}).",
                             details={"param": f"{path}.image_url"}) from None
        return {"type": "image", "media_type": media_type, "data": base64.b64encode(data).decode("ascii")}
    raise BadRequest(f"{path}: parts of type {kind!r} are not supported; send input_text and input_image "
                     "(image_url) parts.", details={"param": path})


def function_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if not tools:
        return None
    for index, tool in enumerate(tools):
        if tool.get("type") != "function" or not isinstance(tool.get("name"), str):
            raise BadRequest(f"tools.{index}: only function tools ({{'type': 'function', 'name', 'parameters'}}) "
                             f"are supported, not {tool.get('type')!r}.", code="unsupported_parameter",
                             details={"param": f"tools.{index}"})
    return [{key: tool[key] for key in ("name", "description", "parameters", "strict") if tool.get(key) is not None}
            for tool in tools]


def json_schema(fmt: dict[str, Any] | None) -> dict[str, Any] | None:
    if not fmt or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_object":
        return {"name": "json_object", "schema": {"type": "object"}}
    if fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        return {"name": fmt.get("name", "response"), "schema": fmt["schema"], "strict": bool(fmt.get("strict"))}
    raise BadRequest("text.format: must be {'type': 'text'}, {'type': 'json_object'} or {'type': 'json_schema', "
                     "'name', 'schema'}.", details={"param": "text.format"})


def envelope(body: dict[str, Any]) -> dict[str, Any]:
    """The response object without its output and status: the request's echo."""
    return {"id": new_id("resp"), "object": "response", "created_at": int(time.time()), "model": body["model"],
            "instructions": body["instructions"], "tools": body["tools"] or [],
            "tool_choice": tool_choice_echo(body["tool_choice"]),
            "parallel_tool_calls": body["parallel_tool_calls"] is not False,
            "max_output_tokens": body["max_output_tokens"], "temperature": body["temperature"],
            "top_p": body["top_p"], "text": body["text"] or {"format": {"type": "text"}},
            "reasoning": body["reasoning"] or {"effort": None}, "metadata": body["metadata"] or {},
            "previous_response_id": body["previous_response_id"], "store": body["store"] is not False,
            "error": None, "incomplete_details": None, "usage": None}


def tool_choice_echo(choice: str | dict[str, str] | None) -> Any:
    return {"type": "function", "name": choice["name"]} if isinstance(choice, dict) else choice or "auto"


def response_body(envelope: dict[str, Any], answer: Answer) -> dict[str, Any]:
    output: list[dict[str, Any]] = [reasoning_item(new_id("rs"), answer.reasoning)] if answer.reasoning else []
    if answer.text or not answer.tool_calls:
        output.append(message_item(new_id("msg"), answer.text))
    output += [function_call_item(new_id("fc"), call.id, call.name, call.arguments) for call in answer.tool_calls]
    status = "incomplete" if answer.finish_reason == "length" else "completed"
    return {**envelope, "status": status, "model": answer.model, "output": output,
            "usage": responses_usage(answer.usage), "provider": answer.provider,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None}
