"""The Responses API's wire shape to the neutral `CompletionRequest`, and an `Answer` back to a `response`.

`input` (a string, or items: messages with `input_text`/`input_image`/`output_text` parts,
`function_call` and `function_call_output`) and `instructions` become the conversation; function
tools, `tool_choice`, `max_output_tokens`, `temperature`, `top_p`, `text.format` (JSON schema),
`reasoning.effort`, `metadata` and `user` their neutral fields. Every other Responses field is
translated, passed or left out where leaving it out is what it means (`chat_extra`), else refused
with a 400 naming it: it is never copied into another API. (An upstream that offers the Responses
API itself takes the body as it came: see `app.frontdoors.responses.native`.) Reasoning items carry,
in `encrypted_content`, the reasoning state an answer's next turn needs (Claude's signed thinking
blocks, Gemini's thought signatures): their thinking goes back on the next assistant message, their
signatures on the function calls they name; their summaries are not sent (no vendor takes another's
reasoning). Anthropic's `cache_control` marks on input parts, message items, `function_call_output`
items and function tools are carried as on chat completions (for a Claude model; named in
X-Dropped-Params for any other). The input is kept
as items (`stored_items`: each with an `id`, a message's text as parts) for storing and listing, and
a continued chain's items go before it (see `app.frontdoors.responses.service`).
"""
from __future__ import annotations

import base64
import time
from typing import Any

from marshmallow import ValidationError

from app.core.errors import BadRequest
from app.core.schemas import decode_image_uri
from app.llm.gateway import Answer
from app.llm.providers.base import CompletionRequest
from app.llm.schemas import with_cache_control
from app.llm.sse import function_call_item, message_item, new_id, reasoning_item, responses_usage, unseal

ROLES = ("user", "system", "developer", "assistant")
TEXT_PARTS = ("input_text", "output_text", "text")
NOT_SENT = ("reasoning",)


# Responses fields with the same name and meaning in the chat completions API: passed to chat upstreams
CHAT_FIELDS = ("service_tier", "prompt_cache_key", "prompt_cache_retention", "safety_identifier")
# `include` entries a translated answer honours by leaving them out: encrypted reasoning (there is none
# to give), input image URLs (input items are kept as given), and the results of OpenAI's built-in
# tools (a translated request has none: a built-in tool is refused)
IGNORED_INCLUDES = ("reasoning.encrypted_content", "message.input_image.image_url", "web_search_call.action.sources",
                    "web_search_call.results", "file_search_call.results", "code_interpreter_call.outputs",
                    "computer_call_output.output.image_url")
# fields whose value says to do what every vendor does anyway: (name, the values that say it)
DEFAULTS: dict[str, tuple[Any, ...] | None] = {"truncation": (None, "disabled"), "background": (None, False),
                                               "max_tool_calls": None, "stream_options": None}


ITEM_ID_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}
MAX_ITEM_ID = 200


def completion_request(body: dict[str, Any], chain: list[dict[str, Any]]) -> CompletionRequest:
    """The neutral request for `body`, its input after `chain` (the items of the responses it continues)."""
    messages = [{"role": "system", "content": body["instructions"]}] if body["instructions"] else []
    messages += input_messages(chain) + input_messages(body["input"])
    return CompletionRequest(
        messages=messages, max_tokens=body["max_output_tokens"], temperature=body["temperature"],
        top_p=body["top_p"], json_schema=json_schema((body["text"] or {}).get("format")),
        tools=function_tools(body["tools"]), tool_choice=function_choice(body["tool_choice"]),
        parallel_tool_calls=body["parallel_tool_calls"], reasoning_effort=(body["reasoning"] or {}).get("effort"),
        metadata=body["metadata"], user=body["user"], extra=chat_extra(body))


def chat_extra(body: dict[str, Any]) -> dict[str, Any]:
    """The fields beyond the neutral ones, for a vendor without the Responses API: those the chat API
    has under the same name (CHAT_FIELDS) pass, `text.verbosity` is the chat API's `verbosity`; an
    `include` of IGNORED_INCLUDES, and DEFAULTS at their defaults, are left out; anything else
    (`truncation: auto`, `background: true`, `prompt`, `conversation`, `top_logprobs`...) is a 400."""
    extra: dict[str, Any] = {}
    for name, value in body["extra"].items():
        if name in CHAT_FIELDS:
            extra[name] = value
        elif name == "include" and isinstance(value, list) and all(entry in IGNORED_INCLUDES for entry in value):
            continue
        elif name in DEFAULTS and ((defaults := DEFAULTS[name]) is None or value in defaults):
            continue
        else:
            raise BadRequest(f"The parameter '{name}' (as given) is honoured only by OpenAI's Responses API, which "
                             f"does not serve {body['model']}; leave it out.", code="unsupported_parameter",
                             details={"param": name})
    verbosity = (body["text"] or {}).get("verbosity")
    if verbosity is not None:
        extra["verbosity"] = verbosity
    return extra


def function_choice(choice: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    """`tool_choice` for a vendor without the Responses API: a function's name, or a mode; choosing a
    built-in tool (`{"type": "web_search"}`, `allowed_tools`...) is a 400."""
    if isinstance(choice, dict) and "type" in choice:
        raise BadRequest(f"tool_choice: {choice['type']!r} is honoured only by OpenAI's Responses API; choose a "
                         "function or a mode.", code="unsupported_parameter", details={"param": "tool_choice"})
    return choice


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
    signatures = reasoning_signatures(given)
    thinking: list[Any] = []
    for index, item in enumerate(given):
        kind = item.get("type", "message")
        if kind == "reasoning":
            thinking += unseal(item.get("encrypted_content")).get("thinking") or []
        elif kind == "function_call":
            call = {"id": str(item.get("call_id", "")), "name": str(item.get("name", "")),
                    "arguments": str(item.get("arguments", ""))}
            if signatures.get(call["id"]):
                call["signature"] = signatures[call["id"]]
            if messages and messages[-1]["role"] == "assistant" and "tool_calls" in messages[-1]:
                messages[-1]["tool_calls"].append(call)
            else:
                messages.append(with_thinking({"role": "assistant", "content": None, "tool_calls": [call]}, thinking))
                thinking = []
        elif kind == "function_call_output":
            messages.append(marked({"role": "tool", "tool_call_id": str(item.get("call_id", "")),
                                    "content": output_text_of(item.get("output"), f"input.{index}.output")},
                                   item, f"input.{index}"))
        elif kind == "message" and item.get("role") in ROLES:
            message = marked({"role": item["role"], "content": content_of(item.get("content"), f"input.{index}")},
                             item, f"input.{index}")
            if item["role"] == "assistant":
                message, thinking = with_thinking(message, thinking), []
            messages.append(message)
        elif kind not in NOT_SENT:
            raise BadRequest(f"input.{index}: items of type {kind!r} are not supported; send messages, "
                             "function_call and function_call_output items.", details={"param": f"input.{index}"})
    return messages


def reasoning_signatures(items: list[dict[str, Any]]) -> dict[str, str]:
    """The thought signatures the input's reasoning items hold, by the call id they belong to."""
    signatures: dict[str, str] = {}
    for item in items:
        if item.get("type") == "reasoning":
            found = unseal(item.get("encrypted_content")).get("signatures")
            signatures.update(found if isinstance(found, dict) else {})
    return signatures


def with_thinking(message: dict[str, Any], thinking: list[Any]) -> dict[str, Any]:
    """The assistant `message` with the thinking blocks of the reasoning items before it, if any."""
    blocks = [block for block in thinking if isinstance(block, dict)]
    return {**message, "thinking": blocks} if blocks else message


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
        return marked({"type": "text", "text": part["text"]}, part, path)
    url = part.get("image_url") if kind == "input_image" else None
    if isinstance(url, str) and url.startswith(("https://", "http://")):
        return marked({"type": "image", "url": url}, part, path)
    if isinstance(url, str):
        try:
            media_type, data = decode_image_uri(url)
        except ValueError as exc:
            raise BadRequest(f"{path}.image_url: not an http(s) URL or base64 data: URI of an image ({exc}).",
                             details={"param": f"{path}.image_url"}) from None
        return marked({"type": "image", "media_type": media_type, "data": base64.b64encode(data).decode("ascii")},
                      part, path)
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
    return [marked({key: tool[key] for key in ("name", "description", "parameters", "strict")
                    if tool.get(key) is not None}, tool, f"tools.{index}")
            for index, tool in enumerate(tools)]


def marked(neutral: dict[str, Any], given: dict[str, Any], path: str) -> dict[str, Any]:
    """`neutral` with the `cache_control` mark `given` carries (Anthropic's, as on chat completions)."""
    try:
        return with_cache_control(neutral, given)
    except ValidationError as error:
        raise BadRequest(f"{path}.cache_control: {' '.join(map(str, error.messages))}",
                         details={"param": f"{path}.cache_control"}) from None


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


def tool_choice_echo(choice: str | dict[str, Any] | None) -> Any:
    if isinstance(choice, dict):
        return choice if "type" in choice else {"type": "function", "name": choice["name"]}
    return choice or "auto"


def response_body(envelope: dict[str, Any], answer: Answer) -> dict[str, Any]:
    signatures = {call.id: call.signature for call in answer.tool_calls if call.signature}
    output: list[dict[str, Any]] = []
    if answer.reasoning or answer.thinking or signatures:
        output.append(reasoning_item(new_id("rs"), answer.reasoning, answer.thinking, signatures))
    if answer.text or not answer.tool_calls:
        output.append(message_item(new_id("msg"), answer.text))
    output += [function_call_item(new_id("fc"), call.id, call.name, call.arguments) for call in answer.tool_calls]
    status = "incomplete" if answer.finish_reason == "length" else "completed"
    return {**envelope, "status": status, "model": answer.model, "output": output,
            "usage": responses_usage(answer.usage), "provider": answer.provider,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None}
