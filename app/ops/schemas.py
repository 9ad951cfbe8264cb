"""Marshmallow schemas of what the health endpoints answer (for the OpenAPI document; views build dicts)."""
from __future__ import annotations

from marshmallow import RAISE, Schema, fields


class ProviderStatusSchema(Schema):
    """One provider: configured or not (then `variable` names the setting), and reachable or not."""

    class Meta:
        unknown = RAISE

    configured = fields.Boolean(required=True)
    reachable = fields.Boolean(required=True)
    variable = fields.String(metadata={"description": "The setting to set (when not configured)."})
    default_model = fields.String()
    latency_ms = fields.Float(metadata={"description": "Time the check (a model listing) took."})
    error = fields.String(metadata={"description": "Why it is not reachable."})


class NamedProviderStatusSchema(ProviderStatusSchema):
    provider = fields.String(required=True, metadata={"description": "The provider's name (aliases resolved)."})


class DatabaseStatusSchema(Schema):
    class Meta:
        unknown = RAISE

    ok = fields.Boolean(required=True)
    engine = fields.String(required=True, metadata={"example": "SqliteDatabase"})
    error = fields.String(metadata={"description": "The driver error's name, when not ok."})


class AuthStatusSchema(Schema):
    class Meta:
        unknown = RAISE

    open = fields.Boolean(required=True, metadata={"description": "true: no key is configured, anyone may call."})
    warning = fields.String(metadata={"description": "Said while the server is open."})


class UpstreamStatusSchema(Schema):
    """One upstream (a model on an endpoint): its routing settings and its shared health."""

    class Meta:
        unknown = RAISE

    upstream = fields.String(required=True, metadata={"example": "openai/gpt-5.4"})
    provider = fields.String(metadata={"description": "The endpoint (provider) that serves it."})
    model = fields.String(metadata={"description": "The model (or Azure deployment) name sent upstream."})
    served_as = fields.List(fields.String(), metadata={"description": "The model names clients send for it."})
    weight = fields.Float()
    rpm = fields.Integer(metadata={"description": "Its own requests per minute (0: none of ours)."})
    tpm = fields.Integer(metadata={"description": "Its own tokens per minute (0: none of ours)."})
    state = fields.String(required=True, metadata={"enum": ["healthy", "cooling", "probing"]})
    consecutive_failures = fields.Integer(required=True)
    cooldown_ends_at = fields.Float(allow_none=True, metadata={"description": "Unix time; null unless cooling."})
    recent_calls = fields.Integer(required=True, metadata={"description": "Calls in the current minute's window "
                                                           "that changed its health (successes after a failure, "
                                                           "failures that say it is unwell)."})
    recent_error_rate = fields.Float(required=True)
    latency_ms = fields.Float(required=True, metadata={"description": "Moving average of its successful calls "
                                                       "since it last failed."})
    requests_this_minute = fields.Integer(required=True)
    tokens_this_minute = fields.Integer(required=True)


class UpstreamsSchema(Schema):
    class Meta:
        unknown = RAISE

    upstreams = fields.List(fields.Nested(UpstreamStatusSchema), required=True)


class HealthSchema(Schema):
    class Meta:
        unknown = RAISE

    status = fields.String(required=True, metadata={"enum": ["ok", "degraded", "error"]})
    timestamp = fields.String(required=True, metadata={"format": "date-time"})
    version = fields.String(required=True)
    uptime_s = fields.Float(required=True)
    database = fields.Nested(DatabaseStatusSchema, required=True)
    providers = fields.Dict(keys=fields.String(), values=fields.Nested(ProviderStatusSchema),
                            metadata={"description": "Left out for an anonymous caller when keys are required."})
    upstreams = fields.List(fields.Nested(UpstreamStatusSchema), metadata={
        "description": "Each upstream's shared health; left out for an anonymous caller when keys are required."})
    auth = fields.Nested(AuthStatusSchema, required=True)


class StatusSchema(Schema):
    class Meta:
        unknown = RAISE

    status = fields.String(required=True, metadata={"enum": ["ok"]})


class PingSchema(StatusSchema):
    message = fields.String(required=True, metadata={"enum": ["pong"]})
