"""Queries and answers of `/admin/calls` and `/v1/key/calls`."""
from __future__ import annotations

from marshmallow import RAISE, fields, validate

from app.core.paging import CURSOR_DOC
from app.core.schemas import BaseSchema, Moment, StrictBoolean

STATUS = r"^([1-5][0-9]{2}|error)$"


class CallQuerySchema(BaseSchema):
    """A page of calls, newest first; pass `next_cursor` back as `cursor` (with the same filters) for the next."""

    key_id = fields.String(load_default=None, validate=validate.Length(min=1, max=40),
                           metadata={"description": "Only this key's calls (admin only; a key sees its own)."})
    model = fields.String(load_default=None, validate=validate.Length(min=1, max=200),
                          metadata={"description": "Calls that asked for this model or were answered by it."})
    provider = fields.String(load_default=None, validate=validate.Length(min=1, max=64),
                             metadata={"description": "Calls answered by this provider."})
    status = fields.String(load_default=None, validate=validate.Regexp(STATUS),
                           metadata={"pattern": STATUS, "description": "An HTTP status (200, 429...) or `error`: "
                                                                       "every status from 400 on."})
    since = Moment(load_default=None, metadata={"type": "string", "format": "date-time",
                                                "description": "ISO 8601; calls begun at or after it."})
    until = Moment(load_default=None, metadata={"type": "string", "format": "date-time",
                                                "description": "ISO 8601; calls begun at or before it (before "
                                                               "since: no call)."})
    request_id = fields.String(load_default=None, validate=validate.Length(min=1, max=128),
                               metadata={"description": "The request's X-Request-ID."})
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(load_default=None, validate=validate.Length(min=1, max=200), metadata=CURSOR_DOC)


class AttemptRecordSchema(BaseSchema):
    """One upstream call of a request, in the order they were made."""

    class Meta:
        unknown = RAISE

    provider = fields.String(required=True)
    model = fields.String(required=True, metadata={"description": "The model tried (answered, for an answer)."})
    deployment = fields.String(required=True, allow_none=True,
                               metadata={"description": "The upstream tried: provider/model of the models file."})
    offset_ms = fields.Integer(required=True, metadata={"description": "When it began, from the request's start."})
    duration_ms = fields.Integer(required=True)
    status = fields.Integer(required=True, allow_none=True,
                            metadata={"description": "The upstream's HTTP status: 200 for an answer, the failure's "
                                                     "status, null when there was none (a timeout, a refused "
                                                     "connection)."})
    error_type = fields.String(required=True, allow_none=True,
                               metadata={"description": "null for an answer; the failure's type "
                                                        "(transient_failure, upstream_timed_out, model_unavailable, "
                                                        "provider_rejected, caller_fault), or interrupted or "
                                                        "cancelled for a stream that broke or was left."})


class CallSchema(BaseSchema):
    """One request to an LLM front door."""

    class Meta:
        unknown = RAISE

    id = fields.Integer(required=True)
    request_id = fields.String(required=True, allow_none=True)
    created_at = fields.String(required=True, metadata={"format": "date-time", "description": "When it began."})
    key_id = fields.String(required=True, allow_none=True)
    key_name = fields.String(required=True, allow_none=True)
    client_id = fields.String(required=True, allow_none=True)
    user_id = fields.String(required=True, allow_none=True)
    front_door = fields.String(required=True, metadata={"description": "The route, e.g. /v1/chat/completions."})
    requested_model = fields.String(required=True, allow_none=True)
    provider = fields.String(required=True, allow_none=True, metadata={"description": "What answered; null: nothing."})
    model = fields.String(required=True, allow_none=True)
    deployment = fields.String(required=True, allow_none=True)
    status = fields.Integer(required=True, metadata={"description": "The HTTP status sent."})
    error_type = fields.String(required=True, allow_none=True,
                               metadata={"description": "The error's code, or interrupted/cancelled for a stream "
                                                        "that broke or was left after its 200."})
    latency_ms = fields.Integer(required=True, metadata={"description": "Until the response was closed."})
    ttft_ms = fields.Integer(required=True, allow_none=True,
                             metadata={"description": "A stream's first token, from the request's start."})
    prompt_tokens = fields.Integer(required=True)
    cached_tokens = fields.Integer(required=True)
    completion_tokens = fields.Integer(required=True)
    reasoning_tokens = fields.Integer(required=True)
    cost_usd = fields.Float(required=True)
    streamed = StrictBoolean(required=True)
    fallbacks = fields.Integer(required=True, metadata={"description": "Moves to another deployment."})
    attempts = fields.List(fields.Nested(AttemptRecordSchema), required=True)


class CallPageSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    data = fields.List(fields.Nested(CallSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class PayloadSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    request = fields.Raw(required=True, allow_none=True,
                         metadata={"description": "The request's body (its JSON, or text when cut), secrets "
                                                  "redacted."})
    response = fields.Raw(required=True, allow_none=True,
                          metadata={"description": "The answer's body: its JSON, or a stream's events as text."})


class CallDetailSchema(CallSchema):
    payload = fields.Nested(PayloadSchema, required=True, allow_none=True,
                            metadata={"description": "null unless LOG_PAYLOADS kept the bodies (and they are "
                                                     "younger than LOG_PAYLOADS_RETENTION_DAYS)."})
