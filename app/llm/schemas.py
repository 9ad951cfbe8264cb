"""Marshmallow schemas of the gateway's request bodies (ask, chat, the OpenAI-compatible API).

Message content is a string or a list of OpenAI-style parts; an image is a base64 `data:` URI or,
on `/v1/chat/completions`, an `http(s):` URL (passed on to vendors that take URLs, fetched through
the SSRF guard for a vendor that needs the bytes). `ChatCompletionsSchema` takes every message
shape an agent sends back (tool calls, tool results, `developer`, `name`) and keeps the fields it
does not know under `extra`, for an OpenAI-compatible upstream to receive as they came.

A body holds at most MAX_MESSAGES messages, each at most MAX_PARTS parts and MAX_TEXT_CHARS
characters of text; `max_tokens` is at most MAX_OUTPUT_TOKENS, more than any model writes, so a
number no vendor takes is refused here. Model names are MODEL_NAME: they reach response headers,
logs and metrics.
"""
from __future__ import annotations

import base64
import re
from typing import Any

from marshmallow import INCLUDE, RAISE, ValidationError, fields, post_load, pre_load, validate, validates_schema

from app.core.openapi import OpenAIErrorSchema
from app.core.schemas import BaseSchema, StrictBoolean, decode_image_uri

ROLES = ("system", "user", "assistant")
OPENAI_ROLES = ("system", "developer", "user", "assistant", "tool")
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
MAX_MESSAGES = 2000
MAX_PARTS = 100
MAX_TEXT_CHARS = 1_000_000
MAX_OUTPUT_TOKENS = 1_000_000
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}")
MODEL_NAME_RULE = ("A model name is 1 to 200 characters: letters, digits and . _ : / @ + -, starting with a "
                   "letter or digit.")


def max_tokens_field(**options: Any) -> fields.Integer:
    return fields.Integer(load_default=None, validate=validate.Range(min=1, max=MAX_OUTPUT_TOKENS), **options)


MODEL_NAME_DOC = {"pattern": f"^{MODEL_NAME.pattern}$", "description": "A model name, alias or provider/model: "
                  "1 to 200 characters, letters, digits and . _ : / @ + -, starting with a letter or digit."}


def check_model_name(value: str) -> None:
    if not MODEL_NAME.fullmatch(value):
        raise ValidationError(MODEL_NAME_RULE)


def messages_field(least: int = 0, **options: Any) -> fields.List:
    """A list of messages, at least `least` and at most MAX_MESSAGES."""
    return fields.List(fields.Nested(MessageSchema), validate=validate.Length(min=least, max=MAX_MESSAGES), **options)


# An image part's URL as the document gives it: a base64 `data:` URI of an accepted type (`decode_image_uri`).
IMAGE_DATA_URI = r"^data:image/(png|jpeg|gif|webp);base64,([A-Za-z0-9+/]{4})+$"


def content_document(image_urls: bool, nullable: bool) -> dict[str, Any]:
    """`MessageContent` in the document: the rules `_deserialize` checks."""
    url = {"type": "string", "pattern": IMAGE_DATA_URI,
           "description": "A base64 `data:` URI of a PNG, JPEG, GIF or WebP image"
                          + (", or an http(s) URL the server fetches." if image_urls else ".")}
    text = {"type": "object", "required": ["type", "text"],
            "properties": {"type": {"type": "string", "enum": ["text"]}, "text": {"type": "string"},
                           "cache_control": CACHE_CONTROL_DOCUMENT}}
    image = {"type": "object", "required": ["type", "image_url"],
             "properties": {"type": {"type": "string", "enum": ["image_url"]},
                            "image_url": {"type": "object", "required": ["url"], "properties": {"url": url}},
                            "cache_control": CACHE_CONTROL_DOCUMENT}}
    null = [{"type": "string", "nullable": True, "enum": [None]}] if nullable else []
    return {"oneOf": [{"type": "string", "maxLength": MAX_TEXT_CHARS},
                      {"type": "array", "minItems": 1, "maxItems": MAX_PARTS, "items": {"oneOf": [text, image]}},
                      *null],
            "description": f"Text, or 1 to {MAX_PARTS} parts (text and images; at most {MAX_TEXT_CHARS:,} "
                           "characters of text in all)."}


class MessageContent(fields.Field):
    """A string, or a list of `{"type": "text", "text"}` / `{"type": "image_url", "image_url": {"url"}}`
    parts, turned into the providers' neutral parts; `image_urls` lets an image be an http(s) URL."""

    def __init__(self, *args: Any, image_urls: bool = False, not_empty: bool = False, **kwargs: Any):
        document = content_document(image_urls, bool(kwargs.get("allow_none")))
        if not_empty:  # a string too has at least one character
            document["oneOf"][0]["minLength"] = 1
        kwargs["metadata"] = {**document, **kwargs.get("metadata", {})}
        super().__init__(*args, **kwargs)
        self.image_urls = image_urls

    def _deserialize(self, value: Any, attr, data, **kwargs):
        if isinstance(value, str):
            return checked_text(value)
        if not isinstance(value, list) or not value:
            raise ValidationError("Must be a string or a non-empty list of content parts.")
        if len(value) > MAX_PARTS:
            raise ValidationError(f"A message has at most {MAX_PARTS} content parts.")
        parts = [self.part(index, part) for index, part in enumerate(value)]
        checked_text("".join(part["text"] for part in parts if part["type"] == "text"))
        return parts

    def part(self, index: int, part: Any) -> dict[str, Any]:
        """One part, its problem prefixed with its index (`content part 2: ...`)."""
        try:
            return content_part(part, self.image_urls)
        except ValidationError as error:
            raise ValidationError(f"content part {index}: {' '.join(map(str, error.messages))}") from None


CACHE_TTLS = ("5m", "1h")
CACHE_CONTROL_DOCUMENT = {
    "type": "object", "nullable": True, "required": ["type"], "additionalProperties": False,
    "properties": {"type": {"type": "string", "enum": ["ephemeral"]},
                   "ttl": {"type": "string", "enum": list(CACHE_TTLS)}},
    "description": "Anthropic's prompt-cache breakpoint: the prompt up to and including this part (or tool) is "
                   "cached, for 5 minutes (default) or 1 hour. Sent to Claude models; other vendors cache "
                   "prompts by themselves, so it is left out for them and named in X-Dropped-Params."}


def checked_cache_control(value: Any) -> dict[str, str]:
    """A `cache_control` mark as Anthropic takes it: `{"type": "ephemeral"}`, with an optional `ttl`."""
    if not isinstance(value, dict) or value.get("type") != "ephemeral" or set(value) - {"type", "ttl"}:
        raise ValidationError('cache_control must be {"type": "ephemeral"}, with an optional "ttl".')
    if "ttl" in value and value["ttl"] not in CACHE_TTLS:
        raise ValidationError(f"cache_control.ttl must be one of {', '.join(CACHE_TTLS)}.")
    return dict(value)


def with_cache_control(neutral: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """`neutral` (a part, message or tool) with the `cache_control` mark `given` carries, checked."""
    if given.get("cache_control") is not None:
        neutral["cache_control"] = checked_cache_control(given["cache_control"])
    return neutral


class CacheControlField(fields.Field):
    def __init__(self, **kwargs: Any):
        super().__init__(load_default=None, metadata=CACHE_CONTROL_DOCUMENT, **kwargs)

    def _deserialize(self, value: Any, attr, data, **kwargs):
        return checked_cache_control(value)


def checked_text(text: str) -> str:
    if len(text) > MAX_TEXT_CHARS:
        raise ValidationError(f"A message's text is at most {MAX_TEXT_CHARS} characters.")
    return text


def content_part(part: Any, image_urls: bool = False) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise ValidationError("Each content part must be an object.")
    if part.get("type") == "text" and isinstance(part.get("text"), str):
        return with_cache_control({"type": "text", "text": part["text"]}, part)
    if part.get("type") == "image_url":
        url = (part.get("image_url") or {}).get("url", "") if isinstance(part.get("image_url"), dict) else ""
        if image_urls and isinstance(url, str) and url.startswith(("https://", "http://")):
            return with_cache_control({"type": "image", "url": url}, part)
        try:
            media_type, data = decode_image_uri(url if isinstance(url, str) else "")
        except ValueError as exc:
            raise ValidationError(f"image_url.url must be a base64 data: URI of an image ({exc}).") from None
        return with_cache_control({"type": "image", "media_type": media_type,
                                   "data": base64.b64encode(data).decode("ascii")}, part)
    raise ValidationError(f"Content parts of type {part.get('type')!r} are not supported: a part is "
                          "{'type': 'text', 'text'} or {'type': 'image_url', 'image_url': {'url'}}.")


class MessageSchema(BaseSchema):
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    content = MessageContent(required=True)


class AskSchema(BaseSchema):
    question = fields.String(required=True, validate=validate.Length(min=1, max=MAX_TEXT_CHARS))
    history = messages_field(load_default=list)
    client_id = fields.String(required=True, validate=validate.Length(min=1, max=200))
    user_id = fields.String(required=True, validate=validate.Length(min=1, max=200))
    stream = StrictBoolean(load_default=False)
    provider = fields.String(load_default=None)


class ChatMessagesSchema(BaseSchema):
    """The stateless chat body: the whole conversation in `messages`."""

    messages = messages_field(1, required=True)
    stream = StrictBoolean(load_default=None)
    provider = fields.String(load_default=None)
    max_tokens = max_tokens_field()
    temperature = fields.Float(load_default=None, validate=validate.Range(min=0, max=2))


class StopField(fields.Field):
    def _deserialize(self, value: Any, attr, data, **kwargs):
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value) and len(value) <= 4:
            return value
        raise ValidationError("Must be a string or a list of up to 4 strings.")


class StreamOptionsSchema(BaseSchema):
    include_usage = StrictBoolean(load_default=False)


class ResponseFormatSchema(BaseSchema):
    DOCUMENT_RULES = {"anyOf": [
        {"properties": {"type": {"enum": ["text", "json_object"]}}},
        {"required": ["json_schema"], "properties": {"json_schema": {
            "type": "object", "required": ["schema"], "properties": {"schema": {"type": "object"}}}}}]}

    type = fields.String(required=True, validate=validate.OneOf(("text", "json_object", "json_schema")))
    json_schema = fields.Dict(load_default=None)


class FunctionCallSchema(BaseSchema):
    name = fields.String(required=True, validate=validate.Length(min=1))
    arguments = fields.String(required=True)


class ToolCallSchema(BaseSchema):
    """A tool call an assistant made; `extra_content.google.thought_signature` is Gemini's signature of
    the call, kept where Google's own OpenAI-compatible API puts it."""

    id = fields.String(required=True, validate=validate.Length(min=1))
    type = fields.String(load_default="function", validate=validate.Equal("function"))
    function = fields.Nested(FunctionCallSchema, required=True)
    extra_content = fields.Dict(load_default=None, allow_none=True)

    @post_load
    def neutral(self, data: dict[str, Any], **kwargs) -> dict[str, str]:
        call = {"id": data["id"], "name": data["function"]["name"], "arguments": data["function"]["arguments"]}
        signature = ((data["extra_content"] or {}).get("google") or {}).get("thought_signature")
        if isinstance(signature, str) and signature:
            call["signature"] = signature
        return call


THINKING_TYPES = ("thinking", "redacted_thinking")


class ThinkingBlockField(fields.Dict):
    """One of Claude's thinking blocks as it was answered: `{"type": "thinking", "thinking", "signature"}`
    or `{"type": "redacted_thinking", "data"}`."""

    def _deserialize(self, value: Any, attr, data, **kwargs):
        block = super()._deserialize(value, attr, data, **kwargs)
        if block.get("type") not in THINKING_TYPES:
            raise ValidationError('A thinking block has the type "thinking" or "redacted_thinking".')
        return block


class ChatMessageSchema(BaseSchema):
    """One message of an OpenAI chat, agents' histories included: an assistant message may carry
    `tool_calls` with `content` null; a `tool` message answers one call by `tool_call_id`."""

    DOCUMENT_RULES = {"description": "Only an assistant message carries tool_calls or thinking_blocks, and only one "
                                     "with tool_calls may leave content null; a tool message answers a call of the "
                                     "assistant message before it, by its tool_call_id."}

    role = fields.String(required=True, validate=validate.OneOf(OPENAI_ROLES))
    content = MessageContent(load_default=None, allow_none=True, image_urls=True)
    name = fields.String(load_default=None)
    tool_calls = fields.List(fields.Nested(ToolCallSchema), load_default=None)
    tool_call_id = fields.String(load_default=None)
    thinking_blocks = fields.List(ThinkingBlockField(metadata={"required": ["type"], "properties": {
        "type": {"type": "string", "enum": list(THINKING_TYPES)}}}), load_default=None)
    cache_control = CacheControlField()  # LiteLLM's: on the message, a breakpoint at its last part

    @pre_load
    def thinking_parts(self, data: Any, **kwargs) -> Any:
        """Thinking blocks sent as parts of an assistant's `content` (the OpenAI Agents SDK's way) join
        its `thinking_blocks` (LiteLLM's)."""
        content = data.get("content") if isinstance(data, dict) else None
        if not isinstance(content, list) or data.get("role") != "assistant":
            return data
        blocks = [part for part in content if isinstance(part, dict) and part.get("type") in THINKING_TYPES]
        if not blocks:
            return data
        rest = [part for part in content if part not in blocks]
        earlier = data.get("thinking_blocks") if isinstance(data.get("thinking_blocks"), list) else []
        return {**data, "content": rest or None, "thinking_blocks": [*earlier, *blocks]}

    @validates_schema
    def shape_of_role(self, data: dict[str, Any], **kwargs) -> None:
        role = data["role"]
        if data.get("tool_calls") and role != "assistant":
            raise ValidationError("Only assistant messages carry tool_calls.", "tool_calls")
        if role == "tool" and not data.get("tool_call_id"):
            raise ValidationError("A tool message needs the tool_call_id it answers.", "tool_call_id")
        if data.get("content") is None and not (role == "assistant" and data.get("tool_calls")):
            raise ValidationError("Missing content (only an assistant message with tool_calls may omit it).",
                                  "content")

    @post_load
    def neutral(self, data: dict[str, Any], **kwargs) -> dict[str, Any]:
        if data.get("thinking_blocks") and data["role"] != "assistant":
            raise ValidationError("Only assistant messages carry thinking_blocks.", "thinking_blocks")
        data["thinking"] = data.pop("thinking_blocks")
        return {key: value for key, value in data.items() if value is not None or key == "content"}


class FunctionSchema(BaseSchema):
    name = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_.-]{1,64}$"))
    description = fields.String(load_default=None)
    parameters = fields.Dict(load_default=None)
    strict = StrictBoolean(load_default=None, allow_none=True)


class ToolSchema(BaseSchema):
    type = fields.String(required=True, validate=validate.Equal("function", error="Only function tools are "
                                                                                   "supported."))
    function = fields.Nested(FunctionSchema, required=True)
    cache_control = CacheControlField()  # beside `function`, as LiteLLM and Portkey take it

    @post_load
    def neutral(self, data: dict[str, Any], **kwargs) -> dict[str, Any]:
        tool = {key: value for key, value in data["function"].items() if value is not None}
        return with_cache_control(tool, data)


class ToolChoiceField(fields.Field):
    """"auto", "none", "required", or `{"type": "function", "function": {"name"}}` (kept as `{"name"}`)."""

    def _deserialize(self, value: Any, attr, data, **kwargs):
        if value in ("auto", "none", "required"):
            return value
        function = value.get("function") if isinstance(value, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str) and value.get("type") == "function":
            return {"name": function["name"]}
        raise ValidationError('Must be "auto", "none", "required" or {"type": "function", "function": {"name"}}.')


class ChatCompletionsSchema(BaseSchema):
    """OpenAI's `POST /v1/chat/completions` body. Fields not declared here are kept in `extra`."""

    DOCUMENT_RULES = {"not": {"required": ["logprobs", "stream"],
                              "properties": {"logprobs": {"enum": [True]}, "stream": {"enum": [True]}}},
                      "description": "A field not listed here is passed on as it came to the provider, who may "
                                     "refuse it (a 400). logprobs are not streamed: not both. A parameter the "
                                     "model's provider does not take (Anthropic's, Gemini's) is refused "
                                     "(`unsupported_parameter`) unless DROP_UNSUPPORTED_PARAMS is set."}

    model = fields.String(required=True, validate=check_model_name, metadata=MODEL_NAME_DOC)
    messages = fields.List(fields.Nested(ChatMessageSchema), required=True,
                           validate=validate.Length(min=1, max=MAX_MESSAGES))
    stream = StrictBoolean(load_default=False)
    stream_options = fields.Nested(StreamOptionsSchema, load_default=None)
    max_tokens = max_tokens_field()
    max_completion_tokens = max_tokens_field()
    temperature = fields.Float(load_default=None, validate=validate.Range(min=0, max=2))
    top_p = fields.Float(load_default=None, validate=validate.Range(min=0, max=1))
    stop = StopField(load_default=None)
    response_format = fields.Nested(ResponseFormatSchema, load_default=None)
    tools = fields.List(fields.Nested(ToolSchema), load_default=None)
    tool_choice = ToolChoiceField(load_default=None, metadata={"oneOf": [
        {"type": "string", "enum": ["auto", "none", "required"]},
        {"type": "object", "required": ["type", "function"], "properties": {
            "type": {"type": "string", "enum": ["function"]},
            "function": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}}},
        {"type": "string", "nullable": True, "enum": [None]}], "description": "A function it names is one of tools."})
    parallel_tool_calls = StrictBoolean(load_default=None)
    n = fields.Integer(load_default=None, validate=validate.Range(min=1, max=128))
    seed = fields.Integer(load_default=None)
    reasoning_effort = fields.String(load_default=None, validate=validate.OneOf(REASONING_EFFORTS))
    logprobs = StrictBoolean(load_default=None)
    top_logprobs = fields.Integer(load_default=None, validate=validate.Range(min=0, max=20))
    presence_penalty = fields.Float(load_default=None, validate=validate.Range(min=-2, max=2))
    frequency_penalty = fields.Float(load_default=None, validate=validate.Range(min=-2, max=2))
    logit_bias = fields.Dict(keys=fields.String(), values=fields.Float(), load_default=None)
    user = fields.String(load_default=None)
    metadata = fields.Dict(keys=fields.String(), values=fields.String(), load_default=None)
    UNDOCUMENTED = ("extra",)  # the fields it does not declare, gathered by `keep_unknown_fields`
    extra = fields.Dict(load_default=dict)

    @pre_load
    def keep_unknown_fields(self, data: Any, **kwargs) -> Any:
        """Fields this schema does not declare go to `extra`, to be passed on or refused, never lost."""
        if not isinstance(data, dict):
            return data
        known = {name: value for name, value in data.items() if name in self.fields and name != "extra"}
        return {**known, "extra": {name: value for name, value in data.items() if name not in known}}

    @validates_schema
    def tool_choice_names_a_tool(self, data: dict[str, Any], **kwargs) -> None:
        choice = data.get("tool_choice")
        if isinstance(choice, dict) and choice["name"] not in {t["name"] for t in data.get("tools") or ()}:
            raise ValidationError(f"tool_choice names {choice['name']!r}, which is not among the tools.",
                                  "tool_choice")
        if data.get("logprobs") and data.get("stream"):
            raise ValidationError("logprobs are not streamed by this server; ask without stream.", "logprobs")

    @post_load
    def structured_output(self, data: dict[str, Any], **kwargs) -> dict[str, Any]:
        fmt = data.pop("response_format", None) or {}
        data["json_schema"] = None
        if fmt.get("type") == "json_object":
            data["json_schema"] = {"name": "json_object", "schema": {"type": "object"}}
        elif fmt.get("type") == "json_schema":
            spec = fmt.get("json_schema") or {}
            if not isinstance(spec.get("schema"), dict):
                raise ValidationError({"response_format": ["json_schema.schema must be an object."]})
            data["json_schema"] = {"name": spec.get("name", "response"), "schema": spec["schema"],
                                   "strict": bool(spec.get("strict"))}
        return data


class EmbeddingsSchema(BaseSchema):
    """OpenAI's `POST /v1/embeddings` body."""

    model = fields.String(required=True, validate=validate.Length(min=1))
    input = fields.Raw(required=True, metadata={
        "oneOf": [{"type": "string", "minLength": 1},
                  {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}}],
        "description": "A text or a list of texts (token arrays are not supported)."})
    dimensions = fields.Integer(load_default=None, validate=validate.Range(min=1))
    encoding_format = fields.String(load_default="float", validate=validate.OneOf(("float", "base64")))
    user = fields.String(load_default=None)

    @post_load
    def input_as_list(self, data: dict[str, Any], **kwargs) -> dict[str, Any]:
        value = data["input"]
        texts = [value] if isinstance(value, str) else value
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
            raise ValidationError({"input": ["Must be a non-empty string or a non-empty list of non-empty "
                                             "strings (token arrays are not supported)."]})
        data["input"] = texts
        return data


# -- what the gateway's front doors answer (for the OpenAPI document; views build the dicts) ---------


class CompletionTokensDetailsSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    reasoning_tokens = fields.Integer(required=True, metadata={"description": "Of the completion tokens, how many "
                                                                              "the model spent reasoning."})


class PromptTokensDetailsSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    cached_tokens = fields.Integer(required=True, metadata={"description": "Of the prompt tokens, how many were "
                                                                          "read from the provider's prompt cache."})
    cache_creation_tokens = fields.Integer(metadata={"description": "Of the prompt tokens, how many were written "
                                                                    "to the prompt cache (Claude, when asked by "
                                                                    "cache_control)."})


class UsageSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    prompt_tokens = fields.Integer(required=True)
    completion_tokens = fields.Integer(required=True)
    total_tokens = fields.Integer(required=True)
    completion_tokens_details = fields.Nested(CompletionTokensDetailsSchema, metadata={
        "description": "When the provider reported reasoning tokens."})
    prompt_tokens_details = fields.Nested(PromptTokensDetailsSchema, metadata={
        "description": "When the provider reported cached prompt tokens."})


class AttemptSchema(BaseSchema):
    """A route that failed before the answer began (the next one was tried)."""

    class Meta:
        unknown = RAISE

    provider = fields.String(required=True)
    model = fields.String(required=True)
    error = fields.String(required=True)
    status = fields.Integer(required=True, allow_none=True, metadata={"description": "The upstream HTTP status."})


class AnswerMessageSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    role = fields.String(required=True, metadata={"enum": ["assistant"]})
    content = fields.String(required=True)
    thinking_blocks = fields.List(fields.Dict(), metadata={
        "description": "Claude's thinking blocks (with their signatures), to send back on the assistant "
                       "message of a tool loop."})
    refusal = fields.String(allow_none=True, metadata={"description": "OpenAI's, in its choices when `n` > 1."})
    annotations = fields.List(fields.Dict(), metadata={"description": "OpenAI's, in its choices when `n` > 1."})


class ChoiceSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    index = fields.Integer(required=True)
    message = fields.Nested(AnswerMessageSchema, required=True)
    logprobs = fields.Dict(allow_none=True, metadata={"description": "OpenAI's, in its choices when `n` > 1."})
    finish_reason = fields.String(required=True, allow_none=True)


class ChatCompletionSchema(BaseSchema):
    """OpenAI's `chat.completion`, plus `provider` (and `attempts` when a fallback happened)."""

    class Meta:
        unknown = RAISE

    id = fields.String(required=True)
    object = fields.String(required=True, metadata={"enum": ["chat.completion"]})
    created = fields.Integer(required=True)
    model = fields.String(required=True)
    choices = fields.List(fields.Nested(ChoiceSchema), required=True)
    usage = fields.Nested(UsageSchema, required=True)
    provider = fields.String(required=True)
    attempts = fields.List(fields.Nested(AttemptSchema))


class ModelSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    id = fields.String(required=True)
    object = fields.String(required=True, metadata={"enum": ["model"]})
    created = fields.Integer(required=True)
    owned_by = fields.String(required=True)
    mode = fields.String(required=True, metadata={"enum": ["chat", "embedding"],
                                                  "description": "What the model is for (not in OpenAI's object)."})


class EmbeddingSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    object = fields.String(required=True, metadata={"enum": ["embedding"]})
    index = fields.Integer(required=True)
    embedding = fields.Raw(required=True, metadata={"description": "A list of floats, or (encoding_format "
                                                                   "base64) little-endian float32 in base64."})


class EmbeddingUsageSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    prompt_tokens = fields.Integer(required=True)
    total_tokens = fields.Integer(required=True)


class EmbeddingListSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    object = fields.String(required=True, metadata={"enum": ["list"]})
    data = fields.List(fields.Nested(EmbeddingSchema), required=True)
    model = fields.String(required=True)
    usage = fields.Nested(EmbeddingUsageSchema, required=True)


class ModelListSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    object = fields.String(required=True, metadata={"enum": ["list"]})
    data = fields.List(fields.Nested(ModelSchema), required=True)


class ChatAnswerSchema(BaseSchema):
    """A stateless chat's answer (`/chat/{provider}` and `/chat` with `messages`, not streamed)."""

    class Meta:
        unknown = RAISE

    response = fields.String(required=True)
    provider = fields.String(required=True)
    model = fields.String(required=True)
    finish_reason = fields.String(required=True, allow_none=True)
    usage = fields.Nested(UsageSchema, required=True)
    attempts = fields.List(fields.Nested(AttemptSchema), required=True)
    success = StrictBoolean(required=True)


# -- the streamed events: each server-sent event's `data` (app.llm.sse writes them) ----------------


class ChunkFunctionSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    name = fields.String(metadata={"description": "In the call's first fragment."})
    arguments = fields.String(required=True, metadata={"description": "The next fragment of the JSON arguments."})


class ChunkToolCallSchema(BaseSchema):
    """A fragment of a tool call: the first of each call has its `id`, `type` and `function.name`."""

    class Meta:
        unknown = RAISE

    index = fields.Integer(required=True, metadata={"description": "Which of the answer's tool calls."})
    id = fields.String()
    type = fields.String(metadata={"enum": ["function"]})
    function = fields.Nested(ChunkFunctionSchema, required=True)
    extra_content = fields.Dict(metadata={"description": "In the call's first fragment, Gemini's thought "
                                                         "signature: `{\"google\": {\"thought_signature\"}}`."})


class ChunkDeltaSchema(BaseSchema):
    """What a chunk adds to the message: the role (first chunk), text, reasoning or tool call fragments;
    nothing in the chunk with `finish_reason`."""

    class Meta:
        unknown = RAISE

    role = fields.String(metadata={"enum": ["assistant"]})
    content = fields.String()
    reasoning_content = fields.String(metadata={"description": "The model's reasoning, when it shows it."})
    thinking_blocks = fields.List(fields.Dict(), metadata={
        "description": "A whole Claude thinking block with its signature, once it is complete (its text "
                       "came before as `reasoning_content`)."})
    tool_calls = fields.List(fields.Nested(ChunkToolCallSchema))


class ChunkChoiceSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    index = fields.Integer(required=True)
    delta = fields.Nested(ChunkDeltaSchema, required=True)
    finish_reason = fields.String(required=True, allow_none=True, metadata={
        "description": "Null until the chunk that ends the answer (`stop`, `length`, `tool_calls`...)."})


class ChatCompletionChunkSchema(BaseSchema):
    """OpenAI's `chat.completion.chunk`. The first chunk (the role) also says who answers (`provider`,
    and `attempts` when a fallback happened); with `stream_options.include_usage`, a last chunk has no
    choices and the `usage`."""

    class Meta:
        unknown = RAISE

    id = fields.String(required=True)
    object = fields.String(required=True, metadata={"enum": ["chat.completion.chunk"]})
    created = fields.Integer(required=True)
    model = fields.String(required=True)
    choices = fields.List(fields.Nested(ChunkChoiceSchema), required=True)
    usage = fields.Nested(UsageSchema)
    provider = fields.String()
    attempts = fields.List(fields.Nested(AttemptSchema))


class NativeEventSchema(BaseSchema):
    """An event of this server's own stream (`/chat`, `/chat/{provider}`, `/chat/gist`), named by `type`."""

    class Meta:
        unknown = RAISE


class NativeStartSchema(NativeEventSchema):
    """The answer has begun: who is answering."""

    type = fields.String(required=True, metadata={"enum": ["start"]})
    provider = fields.String(required=True)
    model = fields.String(required=True)


class NativeFallbackSchema(AttemptSchema):
    """An attempt failed before any text; the next route is tried."""

    type = fields.String(required=True, metadata={"enum": ["fallback"]})


class NativeDeltaSchema(NativeEventSchema):
    """The next piece of the answer's text."""

    type = fields.String(required=True, metadata={"enum": ["delta"]})
    content = fields.String(required=True)


class NativeDoneSchema(NativeEventSchema):
    """The end of the answer."""

    type = fields.String(required=True, metadata={"enum": ["done"]})
    provider = fields.String(required=True)
    model = fields.String(required=True)
    finish_reason = fields.String(required=True)
    usage = fields.Nested(UsageSchema, required=True)
    chat_id = fields.String(metadata={"description": "A stored conversation's id (`POST /chat` with `message`)."})


class NativeErrorSchema(BaseSchema):
    """The answer failed after the stream began; the error's details (`provider`, `model`, `chat_id`...)
    follow its `message` and `code`."""

    class Meta:
        unknown = INCLUDE

    type = fields.String(required=True, metadata={"enum": ["error"]})
    message = fields.String(required=True, metadata={"description": "What went wrong, safe to show."})
    code = fields.String(required=True, metadata={"description": "A stable machine-readable code."})
    status = fields.Integer(metadata={"description": "`POST /chat/gist`: the HTTP status the error would have had."})


OPENAI_EVENTS = (ChatCompletionChunkSchema, OpenAIErrorSchema)
NATIVE_EVENTS = (NativeStartSchema, NativeFallbackSchema, NativeDeltaSchema, NativeDoneSchema, NativeErrorSchema)
OPENAI_STREAM = ("`chat.completion.chunk` events as `data: {json}` lines: a role delta first (with `provider`), "
                 "content deltas, a chunk with `finish_reason`, a usage chunk when "
                 "`stream_options.include_usage`, then `data: [DONE]`. A failure after text is an "
                 '`data: {"error": {...}}` line.')
OPENAI_STREAM_END = "[DONE]"
NATIVE_STREAM = ("`data: {json}` events with a `type`: `fallback` (an attempt failed before any text), `start` "
                 "(`provider`, `model`), `delta` (`content`), `done` (`provider`, `model`, `finish_reason`, "
                 "`usage`), or `error` (`message`, `code`) when the provider fails after text was sent.")
