"""Marshmallow schemas of OpenAI's Responses API: the request (fields not declared kept under
`extra`) and the answer (for the OpenAPI document; views build the dicts)."""
from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, pre_load, validate

from app.core.schemas import BaseSchema
from app.llm.schemas import MAX_MESSAGES, REASONING_EFFORTS, check_model_name, max_tokens_field


class InputField(fields.Field):
    """A string, or a non-empty list of input items (each an object)."""

    def _deserialize(self, value: Any, attr, data, **kwargs):
        if isinstance(value, str) and value:
            return value
        if isinstance(value, list) and 0 < len(value) <= MAX_MESSAGES and all(isinstance(i, dict) for i in value):
            return value
        raise ValidationError(f"Must be a non-empty string or a list of 1 to {MAX_MESSAGES} input items.")


class ResponsesToolChoiceField(fields.Field):
    """"auto", "none", "required", or `{"type": "function", "name"}` (kept as `{"name"}`)."""

    def _deserialize(self, value: Any, attr, data, **kwargs):
        if value in ("auto", "none", "required"):
            return value
        if isinstance(value, dict) and value.get("type") == "function" and isinstance(value.get("name"), str):
            return {"name": value["name"]}
        raise ValidationError('Must be "auto", "none", "required" or {"type": "function", "name"}.')


class ReasoningSchema(BaseSchema):
    effort = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(REASONING_EFFORTS))


class TextSchema(BaseSchema):
    format = fields.Dict(load_default=None)


class ResponsesSchema(BaseSchema):
    """OpenAI's `POST /v1/responses` body. Fields not declared here are kept in `extra`."""

    model = fields.String(required=True, validate=check_model_name)
    input = InputField(required=True)
    instructions = fields.String(load_default=None, allow_none=True)
    tools = fields.List(fields.Dict(), load_default=None)
    tool_choice = ResponsesToolChoiceField(load_default=None)
    parallel_tool_calls = fields.Boolean(load_default=None, allow_none=True)
    max_output_tokens = max_tokens_field(allow_none=True)
    temperature = fields.Float(load_default=None, allow_none=True, validate=validate.Range(min=0, max=2))
    top_p = fields.Float(load_default=None, allow_none=True, validate=validate.Range(min=0, max=1))
    text = fields.Nested(TextSchema, load_default=None)
    reasoning = fields.Nested(ReasoningSchema, load_default=None, allow_none=True)
    metadata = fields.Dict(keys=fields.String(), values=fields.String(), load_default=None, allow_none=True)
    user = fields.String(load_default=None)
    stream = fields.Boolean(load_default=False)
    store = fields.Boolean(load_default=None, allow_none=True)
    previous_response_id = fields.String(load_default=None, allow_none=True)
    extra = fields.Dict(load_default=dict)

    @pre_load
    def keep_unknown_fields(self, data: Any, **kwargs) -> Any:
        """Fields this schema does not declare go to `extra`, to be passed on or refused, never lost."""
        if not isinstance(data, dict):
            return data
        known = {name: value for name, value in data.items() if name in self.fields and name != "extra"}
        return {**known, "extra": {name: value for name, value in data.items() if name not in known}}


class ResponseObjectSchema(BaseSchema):
    """OpenAI's `response` object, plus `provider`."""

    id = fields.String(required=True)
    object = fields.String(required=True, metadata={"enum": ["response"]})
    created_at = fields.Integer(required=True)
    status = fields.String(required=True)
    model = fields.String(required=True)
    output = fields.List(fields.Dict(), required=True, metadata={
        "description": "`message`, `function_call` and `reasoning` items."})
    usage = fields.Dict(required=True, allow_none=True)
    previous_response_id = fields.String(allow_none=True)
    store = fields.Boolean(metadata={"description": "Whether the response is kept (`GET /v1/responses/{id}`)."})
    provider = fields.String(required=True, allow_none=True, metadata={
        "description": "Who answered (null for a streamed response that failed before any provider answered)."})


class RetrieveQuerySchema(BaseSchema):
    """`GET /v1/responses/{id}`: a stored response is answered whole, so the streaming options are refused."""

    stream = fields.Boolean(load_default=False, metadata={"description": "Only false: stored responses are not "
                                                                         "replayed as events."})
    starting_after = fields.Integer(load_default=None, metadata={"description": "Refused (a streaming option)."})
    include_obfuscation = fields.Boolean(load_default=None, metadata={"description": "Accepted; nothing to obfuscate "
                                                                                     "without a stream."})
    include = fields.String(load_default=None, metadata={"description": "Refused: nothing more to include."})


class InputItemsQuerySchema(BaseSchema):
    """A page of a stored response's input items, as OpenAI pages them: `after` an item id, newest first
    by default."""

    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    order = fields.String(load_default="desc", validate=validate.OneOf(["asc", "desc"]))
    after = fields.String(load_default=None, validate=validate.Length(min=1, max=200),
                          metadata={"description": "List the items after this item id (`last_id` of a page)."})
    before = fields.String(load_default=None, metadata={"description": "Refused: page forward with `after`."})
    include = fields.String(load_default=None, metadata={"description": "Refused: nothing more to include."})


class InputItemListSchema(BaseSchema):
    object = fields.String(required=True, metadata={"enum": ["list"]})
    data = fields.List(fields.Dict(), required=True, metadata={
        "description": "The input items (messages, `function_call`, `function_call_output`), each with an `id`."})
    first_id = fields.String(required=True, allow_none=True)
    last_id = fields.String(required=True, allow_none=True)
    has_more = fields.Boolean(required=True)


class ResponseDeletedSchema(BaseSchema):
    id = fields.String(required=True)
    object = fields.String(required=True, metadata={"enum": ["response.deleted"]})
    deleted = fields.Boolean(required=True)


RESPONSES_STREAM = ("The Responses API's typed events, each an `event: {type}` line and a `data: {json}` line with "
                    "`sequence_number`: `response.created`, `response.in_progress`, per output item "
                    "`response.output_item.added`, `response.content_part.added`, `response.output_text.delta` or "
                    "`response.function_call_arguments.delta`, their `.done` events, `response.output_item.done`; "
                    "then `response.completed` (or `response.failed`).")
