"""Marshmallow schemas of the gateway's request bodies (ask, chat, the OpenAI-compatible API).

Message content is a string or a list of OpenAI-style parts; images must be base64 `data:` URIs
(the server never fetches a URL for a caller). A body holds at most MAX_MESSAGES messages, each at
most MAX_PARTS parts and MAX_TEXT_CHARS characters of text; `max_tokens` is at most
MAX_OUTPUT_TOKENS, more than any model writes, so a number no vendor takes is refused here. Model
names are MODEL_NAME: they reach response headers, logs and metrics.
"""
from __future__ import annotations

import base64
import re
from typing import Any

from marshmallow import RAISE, ValidationError, fields, post_load, validate

from app.core.schemas import BaseSchema, decode_data_uri

ROLES = ("system", "user", "assistant")
MAX_MESSAGES = 2000
MAX_PARTS = 100
MAX_TEXT_CHARS = 1_000_000
MAX_OUTPUT_TOKENS = 1_000_000
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}")
MODEL_NAME_RULE = ("A model name is 1 to 200 characters: letters, digits and . _ : / @ + -, starting with a "
                   "letter or digit.")


def max_tokens_field(**options: Any) -> fields.Integer:
    return fields.Integer(load_default=None, validate=validate.Range(min=1, max=MAX_OUTPUT_TOKENS), **options)


def check_model_name(value: str) -> None:
    if not MODEL_NAME.fullmatch(value):
        raise ValidationError(MODEL_NAME_RULE)


def messages_field(least: int = 0, **options: Any) -> fields.List:
    """A list of messages, at least `least` and at most MAX_MESSAGES."""
    return fields.List(fields.Nested(MessageSchema), validate=validate.Length(min=least, max=MAX_MESSAGES), **options)


class MessageContent(fields.Field):
    """A string, or a list of `{"type": "text", "text"}` / `{"type": "image_url", "image_url": {"url"}}`
    parts, turned into the providers' neutral parts."""

    def _deserialize(self, value: Any, attr, data, **kwargs):
        if isinstance(value, str):
            return checked_text(value)
        if not isinstance(value, list) or not value:
            raise ValidationError("Must be a string or a non-empty list of content parts.")
        if len(value) > MAX_PARTS:
            raise ValidationError(f"A message has at most {MAX_PARTS} content parts.")
        parts = [content_part(part) for part in value]
        checked_text("".join(part["text"] for part in parts if part["type"] == "text"))
        return parts


def checked_text(text: str) -> str:
    if len(text) > MAX_TEXT_CHARS:
        raise ValidationError(f"A message's text is at most {MAX_TEXT_CHARS} characters.")
    return text


def content_part(part: Any) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise ValidationError("Each content part must be an object.")
    if part.get("type") == "text" and isinstance(part.get("text"), str):
        return {"type": "text", "text": part["text"]}
    if part.get("type") == "image_url":
        url = (part.get("image_url") or {}).get("url", "") if isinstance(part.get("image_url"), dict) else ""
        try:
            media_type, data = decode_data_uri(url if isinstance(url, str) else "", base64_only=True)
        except ValueError as exc:
            raise ValidationError(f"image_url.url must be a base64 data: URI with a media type ({exc}).") from None
        if not data:
            raise ValidationError("image_url.url holds no data.")
        return {"type": "image", "media_type": media_type, "data": base64.b64encode(data).decode("ascii")}
    raise ValidationError("A content part is {'type': 'text', 'text'} or {'type': 'image_url', 'image_url': {'url'}}.")


class MessageSchema(BaseSchema):
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    content = MessageContent(required=True)


class AskSchema(BaseSchema):
    question = fields.String(required=True, validate=validate.Length(min=1, max=MAX_TEXT_CHARS))
    history = messages_field(load_default=list)
    client_id = fields.String(required=True, validate=validate.Length(min=1, max=200))
    user_id = fields.String(required=True, validate=validate.Length(min=1, max=200))
    stream = fields.Boolean(load_default=False)
    provider = fields.String(load_default=None)


class ChatMessagesSchema(BaseSchema):
    """The stateless chat body: the whole conversation in `messages`."""

    messages = messages_field(1, required=True)
    stream = fields.Boolean(load_default=None)
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
    include_usage = fields.Boolean(load_default=False)


class ResponseFormatSchema(BaseSchema):
    type = fields.String(required=True, validate=validate.OneOf(("text", "json_object", "json_schema")))
    json_schema = fields.Dict(load_default=None)


class ChatCompletionsSchema(BaseSchema):
    """OpenAI's `POST /v1/chat/completions` body (the fields this server acts on)."""

    model = fields.String(required=True, validate=check_model_name)
    messages = messages_field(1, required=True)
    stream = fields.Boolean(load_default=False)
    stream_options = fields.Nested(StreamOptionsSchema, load_default=None)
    max_tokens = max_tokens_field()
    max_completion_tokens = max_tokens_field()
    temperature = fields.Float(load_default=None, validate=validate.Range(min=0, max=2))
    top_p = fields.Float(load_default=None, validate=validate.Range(min=0, max=1))
    stop = StopField(load_default=None)
    response_format = fields.Nested(ResponseFormatSchema, load_default=None)

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
            data["json_schema"] = {"name": spec.get("name", "response"), "schema": spec["schema"]}
        return data


# -- what the gateway's front doors answer (for the OpenAPI document; views build the dicts) ---------


class UsageSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    prompt_tokens = fields.Integer(required=True)
    completion_tokens = fields.Integer(required=True)
    total_tokens = fields.Integer(required=True)


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


class ChoiceSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    index = fields.Integer(required=True)
    message = fields.Nested(AnswerMessageSchema, required=True)
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
    success = fields.Boolean(required=True)


OPENAI_STREAM = ("`chat.completion.chunk` events as `data: {json}` lines: a role delta first (with `provider`), "
                 "content deltas, a chunk with `finish_reason`, a usage chunk when "
                 "`stream_options.include_usage`, then `data: [DONE]`. A failure after text is an "
                 '`data: {"error": {...}}` line.')
NATIVE_STREAM = ("`data: {json}` events with a `type`: `fallback` (an attempt failed before any text), `start` "
                 "(`provider`, `model`), `delta` (`content`), `done` (`provider`, `model`, `finish_reason`, "
                 "`usage`), or `error` (`message`, `code`) when the provider fails after text was sent.")
