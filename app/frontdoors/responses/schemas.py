"""Marshmallow schemas of OpenAI's Responses API: the request (fields not declared kept under
`extra`) and the answer (for the OpenAPI document; views build the dicts)."""
from __future__ import annotations

from typing import Any

from marshmallow import RAISE, ValidationError, fields, pre_load, validate

from app.core.schemas import BaseSchema, StrictBoolean
from app.llm.schemas import MAX_MESSAGES, MODEL_NAME_DOC, REASONING_EFFORTS, check_model_name, max_tokens_field


class InputField(fields.Field):
    """A string, or a non-empty list of input items (each an object)."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs["metadata"] = {"oneOf": [{"type": "string", "minLength": 1},
                                        {"type": "array", "minItems": 1, "maxItems": MAX_MESSAGES,
                                         "items": {"type": "object"}}],
                              "description": "A text, or input items (messages, function calls and their outputs).",
                              **kwargs.get("metadata", {})}
        super().__init__(*args, **kwargs)

    def _deserialize(self, value: Any, attr, data, **kwargs):
        if isinstance(value, str) and value:
            return value
        if isinstance(value, list) and 0 < len(value) <= MAX_MESSAGES and all(isinstance(i, dict) for i in value):
            return value
        raise ValidationError(f"Must be a non-empty string or a list of 1 to {MAX_MESSAGES} input items.")


class ResponsesToolChoiceField(fields.Field):
    """"auto", "none", "required", `{"type": "function", "name"}` (kept as `{"name"}`), or another
    typed choice (a built-in tool, `allowed_tools`...), kept as it came for the Responses API itself."""

    def _deserialize(self, value: Any, attr, data, **kwargs):
        if value in ("auto", "none", "required"):
            return value
        if isinstance(value, dict) and value.get("type") == "function" and isinstance(value.get("name"), str):
            return {"name": value["name"]}
        if isinstance(value, dict) and isinstance(value.get("type"), str) and value["type"] != "function":
            return value
        raise ValidationError('Must be "auto", "none", "required", {"type": "function", "name"} or another '
                              'typed tool choice.')


class ReasoningSchema(BaseSchema):
    effort = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(REASONING_EFFORTS))


class TextSchema(BaseSchema):
    format = fields.Dict(load_default=None)
    verbosity = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(("low", "medium", "high")))


class ResponsesSchema(BaseSchema):
    """OpenAI's `POST /v1/responses` body. Fields not declared here are kept in `extra`."""

    DOCUMENT_RULES = {"description": "A field not listed here is passed on as it came to OpenAI's Responses API, "
                                     "and refused (a 400) for a model that API does not serve; for such a "
                                     "model the body is translated: function tools only, input_text and "
                                     "input_image parts, and the parameters its provider takes."}

    model = fields.String(required=True, validate=check_model_name, metadata=MODEL_NAME_DOC)
    input = InputField(required=True)
    instructions = fields.String(load_default=None, allow_none=True)
    tools = fields.List(fields.Dict(), load_default=None)
    tool_choice = ResponsesToolChoiceField(load_default=None)
    parallel_tool_calls = StrictBoolean(load_default=None, allow_none=True)
    max_output_tokens = max_tokens_field(allow_none=True)
    temperature = fields.Float(load_default=None, allow_none=True, validate=validate.Range(min=0, max=2))
    top_p = fields.Float(load_default=None, allow_none=True, validate=validate.Range(min=0, max=1))
    text = fields.Nested(TextSchema, load_default=None)
    reasoning = fields.Nested(ReasoningSchema, load_default=None, allow_none=True)
    metadata = fields.Dict(keys=fields.String(), values=fields.String(), load_default=None, allow_none=True)
    user = fields.String(load_default=None)
    stream = StrictBoolean(load_default=False)
    store = StrictBoolean(load_default=None, allow_none=True)
    previous_response_id = fields.String(load_default=None, allow_none=True)
    UNDOCUMENTED = ("extra",)  # the fields it does not declare, gathered by `keep_unknown_fields`
    extra = fields.Dict(load_default=dict)

    @pre_load
    def keep_unknown_fields(self, data: Any, **kwargs) -> Any:
        """Fields this schema does not declare go to `extra`, to be passed on or refused, never lost."""
        if not isinstance(data, dict):
            return data
        known = {name: value for name, value in data.items() if name in self.fields and name != "extra"}
        return {**known, "extra": {name: value for name, value in data.items() if name not in known}}


class ResponseStateSchema(BaseSchema):
    """OpenAI's `response` object."""

    id = fields.String(required=True)
    object = fields.String(required=True, metadata={"enum": ["response"]})
    created_at = fields.Integer(required=True)
    status = fields.String(required=True)
    model = fields.String(required=True)
    output = fields.List(fields.Dict(), required=True, metadata={
        "description": "`message`, `function_call` and `reasoning` items."})
    usage = fields.Dict(required=True, allow_none=True)
    previous_response_id = fields.String(allow_none=True)
    store = StrictBoolean(metadata={"description": "Whether the response is kept (`GET /v1/responses/{id}`)."})


class ResponseObjectSchema(ResponseStateSchema):
    """OpenAI's `response` object, plus `provider`."""

    provider = fields.String(required=True, allow_none=True, metadata={
        "description": "Who answered (null for a streamed response that failed before any provider answered)."})


class RetrieveQueryDocument(BaseSchema):
    """`GET /v1/responses/{id}`: a stored response is answered whole. OpenAI's streaming options and
    `include` are refused (a 400 naming the parameter), so the document lists only what is accepted."""

    stream = fields.Boolean(load_default=False, metadata={"enum": [False], "description": "Only false: stored "
                                                          "responses are not replayed as events."})
    include_obfuscation = fields.Boolean(load_default=None, metadata={"description": "Accepted; nothing to obfuscate "
                                                                                      "without a stream."})


class RetrieveQuerySchema(RetrieveQueryDocument):
    """What the view reads: the documented options, and those it refuses when given."""

    starting_after = fields.Integer(load_default=None)
    include = fields.String(load_default=None)


class InputItemsQueryDocument(BaseSchema):
    """A page of a stored response's input items, as OpenAI pages them: `after` an item id, newest first
    by default (`before` and `include` are refused, a 400 naming the parameter)."""

    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    order = fields.String(load_default="desc", validate=validate.OneOf(["asc", "desc"]))
    after = fields.String(load_default=None, validate=validate.Length(min=1, max=200),
                          metadata={"description": "List the items after this item id (`last_id` of a page)."})


class InputItemsQuerySchema(InputItemsQueryDocument):
    before = fields.String(load_default=None)
    include = fields.String(load_default=None)


class InputItemListSchema(BaseSchema):
    object = fields.String(required=True, metadata={"enum": ["list"]})
    data = fields.List(fields.Dict(), required=True, metadata={
        "description": "The input items (messages, `function_call`, `function_call_output`), each with an `id`."})
    first_id = fields.String(required=True, allow_none=True)
    last_id = fields.String(required=True, allow_none=True)
    has_more = StrictBoolean(required=True)


class ResponseDeletedSchema(BaseSchema):
    id = fields.String(required=True)
    object = fields.String(required=True, metadata={"enum": ["response.deleted"]})
    deleted = StrictBoolean(required=True)


# -- the streamed events: each event's `data`, its `type` also the `event:` line's name ---------------


class StreamEventSchema(BaseSchema):
    """What every event has besides its `type`: its place in the stream."""

    class Meta:
        unknown = RAISE

    sequence_number = fields.Integer(required=True, metadata={"description": "0, 1, 2... in the order sent."})


class ResponseStatusEventSchema(StreamEventSchema):
    """The response as it stands: `response.created` and `response.in_progress` (no output yet), then
    `response.completed` (whole, with `usage`), `response.incomplete` (stopped at `max_output_tokens`:
    `incomplete_details.reason`) or `response.failed` (with `error`)."""

    type = fields.String(required=True, metadata={"enum": ["response.created", "response.in_progress",
                                                           "response.completed", "response.incomplete",
                                                           "response.failed"]})
    response = fields.Nested(ResponseStateSchema, required=True)


class OutputItemEventSchema(StreamEventSchema):
    """An output item begins (`added`: `in_progress`) or is complete (`done`)."""

    type = fields.String(required=True, metadata={"enum": ["response.output_item.added",
                                                           "response.output_item.done"]})
    output_index = fields.Integer(required=True)
    item = fields.Dict(required=True, metadata={"description": "A `message`, `function_call` or `reasoning` item."})


class OutputTextSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    type = fields.String(required=True, metadata={"enum": ["output_text"]})
    text = fields.String(required=True)
    annotations = fields.List(fields.Dict(), required=True)
    logprobs = fields.List(fields.Dict(), required=True)


class ItemEventSchema(StreamEventSchema):
    item_id = fields.String(required=True)
    output_index = fields.Integer(required=True)


class ContentPartEventSchema(ItemEventSchema):
    """A message's text part begins (empty) or is complete."""

    type = fields.String(required=True, metadata={"enum": ["response.content_part.added",
                                                           "response.content_part.done"]})
    content_index = fields.Integer(required=True)
    part = fields.Nested(OutputTextSchema, required=True)


class OutputTextDeltaEventSchema(ItemEventSchema):
    type = fields.String(required=True, metadata={"enum": ["response.output_text.delta"]})
    content_index = fields.Integer(required=True)
    delta = fields.String(required=True, metadata={"description": "The next piece of the text."})
    logprobs = fields.List(fields.Dict(), required=True)


class OutputTextDoneEventSchema(ItemEventSchema):
    type = fields.String(required=True, metadata={"enum": ["response.output_text.done"]})
    content_index = fields.Integer(required=True)
    text = fields.String(required=True, metadata={"description": "The whole text."})
    logprobs = fields.List(fields.Dict(), required=True)


class FunctionCallArgumentsDeltaEventSchema(ItemEventSchema):
    type = fields.String(required=True, metadata={"enum": ["response.function_call_arguments.delta"]})
    delta = fields.String(required=True, metadata={"description": "The next fragment of the JSON arguments."})


class FunctionCallArgumentsDoneEventSchema(ItemEventSchema):
    type = fields.String(required=True, metadata={"enum": ["response.function_call_arguments.done"]})
    name = fields.String(required=True)
    arguments = fields.String(required=True, metadata={"description": "The whole JSON arguments."})


class ReasoningSummaryPartEventSchema(ItemEventSchema):
    """A reasoning item's summary part begins (empty) or is complete (OpenAI's Responses API, as it came)."""

    type = fields.String(required=True, metadata={"enum": ["response.reasoning_summary_part.added",
                                                           "response.reasoning_summary_part.done"]})
    summary_index = fields.Integer(required=True)
    part = fields.Dict(required=True, metadata={"description": "`{\"type\": \"summary_text\", \"text\"}`."})


class ReasoningSummaryTextEventSchema(ItemEventSchema):
    """A piece of a reasoning summary (`delta`), or all of it (`done`: `text`), as OpenAI sent it."""

    type = fields.String(required=True, metadata={"enum": ["response.reasoning_summary_text.delta",
                                                           "response.reasoning_summary_text.done"]})
    summary_index = fields.Integer(required=True)
    delta = fields.String()
    text = fields.String()


RESPONSES_EVENTS = (ResponseStatusEventSchema, OutputItemEventSchema, ContentPartEventSchema,
                    OutputTextDeltaEventSchema, OutputTextDoneEventSchema, FunctionCallArgumentsDeltaEventSchema,
                    FunctionCallArgumentsDoneEventSchema, ReasoningSummaryPartEventSchema,
                    ReasoningSummaryTextEventSchema)
RESPONSES_EVENT_NAMES = ("response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added", "response.output_text.delta", "response.output_text.done",
                         "response.content_part.done", "response.function_call_arguments.delta",
                         "response.function_call_arguments.done", "response.output_item.done",
                         "response.reasoning_summary_part.added", "response.reasoning_summary_text.delta",
                         "response.reasoning_summary_text.done", "response.reasoning_summary_part.done",
                         "response.completed", "response.incomplete", "response.failed")
RESPONSES_STREAM = ("The Responses API's typed events, each an `event: {type}` line and a `data: {json}` line with "
                    "`sequence_number`: `response.created`, `response.in_progress`, per output item "
                    "`response.output_item.added`, `response.content_part.added`, `response.output_text.delta` or "
                    "`response.function_call_arguments.delta`, their `.done` events, `response.output_item.done`; "
                    "then `response.completed` (or `response.incomplete` with its `incomplete_details`, or "
                    "`response.failed`). A model served by OpenAI's Responses API streams its own events as they "
                    "came (built-in tool calls, reasoning summaries...).")
