"""Marshmallow schemas of Anthropic's Messages API: the request (checked, not rewritten: a Claude
model receives the body as it came) and the answer (for the OpenAPI document; views build the dicts).

The request schema checks what this server needs to route and translate a request (`model`,
`max_tokens`, `messages` and their blocks, `system`, `tools`, `tool_choice`, `stop_sequences`,
`thinking`, `metadata`); fields it does not declare are kept under `extra`, passed on as they came.
"""
from __future__ import annotations

from typing import Any

from marshmallow import RAISE, ValidationError, fields, pre_load, validate, validates_schema

from app.core.openapi import AnthropicErrorSchema
from app.core.schemas import BaseSchema, StrictBoolean
from app.llm.schemas import MAX_MESSAGES, MAX_OUTPUT_TOKENS, MAX_PARTS, MAX_TEXT_CHARS, MODEL_NAME_DOC, check_model_name

TOOL_CHOICE_TYPES = ("auto", "any", "tool", "none")


class Blocks(fields.Field):
    """A string, or a non-empty list of content blocks, each an object with a `type`."""

    def __init__(self, *args: Any, **kwargs: Any):
        block = {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}}
        kwargs["metadata"] = {"oneOf": [{"type": "string", "maxLength": MAX_TEXT_CHARS},
                                        {"type": "array", "maxItems": MAX_PARTS, "items": block}],
                              "description": "Text, or content blocks (each an object with a `type`).",
                              **kwargs.get("metadata", {})}
        super().__init__(*args, **kwargs)

    def _deserialize(self, value: Any, attr, data, **kwargs):
        if isinstance(value, str):
            if len(value) > MAX_TEXT_CHARS:
                raise ValidationError(f"A message's text is at most {MAX_TEXT_CHARS} characters.")
            return value
        if not isinstance(value, list) or len(value) > MAX_PARTS:
            raise ValidationError(f"Must be a string or a list of at most {MAX_PARTS} content blocks.")
        if not all(isinstance(block, dict) and isinstance(block.get("type"), str) for block in value):
            raise ValidationError("Each content block must be an object with a `type`.")
        return value


class TurnSchema(BaseSchema):
    role = fields.String(required=True, validate=validate.OneOf(("user", "assistant")))
    content = Blocks(required=True)


class ClaudeToolSchema(BaseSchema):
    """A custom tool (`name`, `description`, `input_schema`) or one of Anthropic's server tools (`type`)."""

    DOCUMENT_RULES = {"anyOf": [
        {"required": ["input_schema"], "properties": {"input_schema": {"type": "object"}}},
        {"required": ["type"], "properties": {"type": {"type": "string", "not": {"enum": ["custom"]}}}}]}

    name = fields.String(required=True, validate=validate.Length(min=1, max=128))
    type = fields.String(load_default=None, allow_none=True)
    description = fields.String(load_default=None)
    input_schema = fields.Dict(load_default=None)

    @validates_schema
    def custom_tools_have_a_schema(self, data: dict[str, Any], **kwargs) -> None:
        if data.get("type") in (None, "custom") and not isinstance(data.get("input_schema"), dict):
            raise ValidationError("A custom tool needs an input_schema object.", "input_schema")


class ClaudeToolChoiceSchema(BaseSchema):
    DOCUMENT_RULES = {"anyOf": [
        {"properties": {"type": {"enum": [t for t in TOOL_CHOICE_TYPES if t != "tool"]}}},
        {"required": ["name"], "properties": {"name": {"type": "string", "minLength": 1}}}]}

    type = fields.String(required=True, validate=validate.OneOf(TOOL_CHOICE_TYPES))
    name = fields.String(load_default=None)
    disable_parallel_tool_use = StrictBoolean(load_default=None)

    @validates_schema
    def a_named_tool(self, data: dict[str, Any], **kwargs) -> None:
        if data["type"] == "tool" and not data.get("name"):
            raise ValidationError("tool_choice of type 'tool' needs the tool's name.", "name")


class ThinkingSchema(BaseSchema):
    type = fields.String(required=True, validate=validate.OneOf(("enabled", "disabled", "adaptive")))
    budget_tokens = fields.Integer(load_default=None, validate=validate.Range(min=1))


class MessageMetadataSchema(BaseSchema):
    user_id = fields.String(load_default=None, allow_none=True)


class MessagesSchema(BaseSchema):
    """Anthropic's `POST /v1/messages` body. Fields not declared here are kept in `extra`."""

    DOCUMENT_RULES = {"description": "A field not listed here is passed on as it came: a Claude model's vendor may "
                                     "take it, another provider refuses it (a 400). A block type other than text, "
                                     "image, tool_use, tool_result and thinking, or a server tool, is for Claude "
                                     "models only."}

    model = fields.String(required=True, validate=check_model_name, metadata=MODEL_NAME_DOC)
    max_tokens = fields.Integer(required=True, validate=validate.Range(min=1, max=MAX_OUTPUT_TOKENS))
    messages = fields.List(fields.Nested(TurnSchema), required=True,
                           validate=validate.Length(min=1, max=MAX_MESSAGES))
    system = Blocks(load_default=None)
    stream = StrictBoolean(load_default=False)
    stop_sequences = fields.List(fields.String(), load_default=None)
    temperature = fields.Float(load_default=None, validate=validate.Range(min=0, max=1))
    top_p = fields.Float(load_default=None, validate=validate.Range(min=0, max=1))
    tools = fields.List(fields.Nested(ClaudeToolSchema), load_default=None)
    tool_choice = fields.Nested(ClaudeToolChoiceSchema, load_default=None)
    thinking = fields.Nested(ThinkingSchema, load_default=None)
    metadata = fields.Nested(MessageMetadataSchema, load_default=None)
    output_config = fields.Dict(load_default=None)
    UNDOCUMENTED = ("extra",)  # the fields it does not declare, gathered by `keep_unknown_fields`
    extra = fields.Dict(load_default=dict)

    @pre_load
    def keep_unknown_fields(self, data: Any, **kwargs) -> Any:
        """Fields this schema does not declare go to `extra`, to be passed on or refused, never lost."""
        if not isinstance(data, dict):
            return data
        known = {name: value for name, value in data.items() if name in self.fields and name != "extra"}
        return {**known, "extra": {name: value for name, value in data.items() if name not in known}}


class CountTokensSchema(MessagesSchema):
    """`POST /v1/messages/count_tokens`: a Messages body without `max_tokens`."""

    max_tokens = fields.Integer(load_default=None, validate=validate.Range(min=1, max=MAX_OUTPUT_TOKENS))


# -- the answers (for the OpenAPI document) ---------------------------------------------------------


CACHE_READ = {"description": "Input tokens read from the prompt cache (not in input_tokens)."}
CACHE_WRITE = {"description": "Input tokens written to the prompt cache (not in input_tokens)."}


class MessageUsageSchema(BaseSchema):
    input_tokens = fields.Integer(required=True, metadata={"description": "Input tokens not read from or "
                                                                          "written to the prompt cache."})
    output_tokens = fields.Integer(required=True)
    cache_creation_input_tokens = fields.Integer(allow_none=True, metadata=CACHE_WRITE)
    cache_read_input_tokens = fields.Integer(allow_none=True, metadata=CACHE_READ)


class MessageAnswerSchema(BaseSchema):
    """Anthropic's `message`; from a Claude model, the vendor's body as it came (so other fields may follow)."""

    id = fields.String(required=True)
    type = fields.String(required=True, metadata={"enum": ["message"]})
    role = fields.String(required=True, metadata={"enum": ["assistant"]})
    model = fields.String(required=True)
    content = fields.List(fields.Dict(), required=True, metadata={
        "description": "`text`, `thinking` and `tool_use` blocks (and, from Claude, any other)."})
    stop_reason = fields.String(required=True, allow_none=True)
    stop_sequence = fields.String(required=True, allow_none=True)
    usage = fields.Nested(MessageUsageSchema, required=True)


class TokenCountSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    input_tokens = fields.Integer(required=True)
    estimated = StrictBoolean(metadata={"description": "True when the count is this server's estimate (not a "
                                                        "Claude model): about four characters a token."})


# -- the streamed events: each event's `data`, its `type` also the `event:` line's name ---------------
# A Claude model's own events go out as they came, so every schema here lets other fields follow.


class StreamedMessageSchema(BaseSchema):
    """The message as it begins: no content or stop reason yet."""

    id = fields.String(required=True)
    type = fields.String(required=True, metadata={"enum": ["message"]})
    role = fields.String(required=True, metadata={"enum": ["assistant"]})
    model = fields.String(required=True)
    content = fields.List(fields.Dict(), required=True, metadata={"description": "Empty: the blocks follow."})
    stop_reason = fields.String(required=True, allow_none=True)
    stop_sequence = fields.String(required=True, allow_none=True)
    usage = fields.Nested(MessageUsageSchema, required=True)


class MessageStartEventSchema(BaseSchema):
    type = fields.String(required=True, metadata={"enum": ["message_start"]})
    message = fields.Nested(StreamedMessageSchema, required=True)


class StartedBlockSchema(BaseSchema):
    """A content block as it begins, its content empty: `text` (`text`), `thinking` (`thinking`,
    `signature`), `tool_use` (`id`, `name`, `input` `{}`); from Claude, any other."""

    type = fields.String(required=True)


class ContentBlockStartEventSchema(BaseSchema):
    type = fields.String(required=True, metadata={"enum": ["content_block_start"]})
    index = fields.Integer(required=True, metadata={"description": "The block's place in the message."})
    content_block = fields.Nested(StartedBlockSchema, required=True)


class BlockDeltaSchema(BaseSchema):
    """More of the block: `text_delta` (`text`), `thinking_delta` (`thinking`), `input_json_delta`
    (`partial_json`, the tool input's next fragment); from Claude also `signature_delta`,
    `citations_delta`..."""

    type = fields.String(required=True)
    text = fields.String()
    thinking = fields.String()
    partial_json = fields.String()


class ContentBlockDeltaEventSchema(BaseSchema):
    type = fields.String(required=True, metadata={"enum": ["content_block_delta"]})
    index = fields.Integer(required=True)
    delta = fields.Nested(BlockDeltaSchema, required=True)


class ContentBlockStopEventSchema(BaseSchema):
    type = fields.String(required=True, metadata={"enum": ["content_block_stop"]})
    index = fields.Integer(required=True)


class MessageStopReasonSchema(BaseSchema):
    stop_reason = fields.String(required=True, allow_none=True, metadata={
        "description": "`end_turn`, `max_tokens`, `tool_use`, `stop_sequence`, `refusal`..."})
    stop_sequence = fields.String(required=True, allow_none=True)


class DeltaUsageSchema(BaseSchema):
    output_tokens = fields.Integer(required=True)
    input_tokens = fields.Integer(allow_none=True)
    cache_creation_input_tokens = fields.Integer(allow_none=True, metadata=CACHE_WRITE)
    cache_read_input_tokens = fields.Integer(allow_none=True, metadata=CACHE_READ)


class MessageDeltaEventSchema(BaseSchema):
    """Why the message stopped, and its usage."""

    type = fields.String(required=True, metadata={"enum": ["message_delta"]})
    delta = fields.Nested(MessageStopReasonSchema, required=True)
    usage = fields.Nested(DeltaUsageSchema, required=True)


class MessageStopEventSchema(BaseSchema):
    """The last event."""

    type = fields.String(required=True, metadata={"enum": ["message_stop"]})


class PingEventSchema(BaseSchema):
    """Keeps a silent stream open."""

    type = fields.String(required=True, metadata={"enum": ["ping"]})


ANTHROPIC_EVENTS = (MessageStartEventSchema, ContentBlockStartEventSchema, ContentBlockDeltaEventSchema,
                    ContentBlockStopEventSchema, MessageDeltaEventSchema, MessageStopEventSchema, PingEventSchema,
                    AnthropicErrorSchema)
ANTHROPIC_EVENT_NAMES = ("message_start", "content_block_start", "content_block_delta", "content_block_stop",
                         "message_delta", "message_stop", "ping", "error")
ANTHROPIC_STREAM = ("Anthropic's events, each an `event: {type}` line and a `data: {json}` line: `message_start`, "
                    "then per content block `content_block_start`, `content_block_delta` (`text_delta`, "
                    "`thinking_delta`, `input_json_delta`...), `content_block_stop`; then `message_delta` (with "
                    "`stop_reason` and `usage`) and `message_stop`. `ping` events keep a silent stream open; a "
                    "failure after the answer began is an `error` event.")
