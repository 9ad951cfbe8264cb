"""Bodies and queries of `/admin/keys` and `/usage`."""
from __future__ import annotations

from datetime import timedelta, timezone

from marshmallow import ValidationError, fields, post_load, validate

from app.core.clock import utcnow
from app.core.schemas import BaseSchema
from app.keys.models import SCOPES
from app.keys.usage import GROUPS

POSITIVE = validate.Range(min=1)


class CreateKeySchema(BaseSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    admin = fields.Boolean(load_default=False)
    models = fields.List(fields.String(validate=validate.Length(min=1, max=200)), load_default=None,
                         validate=validate.Length(min=1, max=100))
    scopes = fields.List(fields.String(validate=validate.OneOf(SCOPES)), load_default=list)
    rpm = fields.Integer(load_default=None, strict=True, validate=POSITIVE)
    tpm = fields.Integer(load_default=None, strict=True, validate=POSITIVE)
    daily_tokens = fields.Integer(load_default=None, strict=True, validate=POSITIVE)
    monthly_budget_usd = fields.Float(load_default=None, validate=validate.Range(min=0))
    expires_at = fields.AwareDateTime(load_default=None, default_timezone=timezone.utc)


class UsageQuerySchema(BaseSchema):
    since = fields.Date(load_default=None)
    until = fields.Date(load_default=None)
    key_id = fields.String(load_default=None, validate=validate.Length(min=1, max=40))
    group_by = fields.String(load_default="day")

    @post_load
    def resolve(self, data, **_kwargs):
        """Groups as a list; the range defaults to the last 30 days (UTC)."""
        groups = [g.strip() for g in (data.get("group_by") or "").split(",") if g.strip()]
        unknown = sorted(set(groups) - set(GROUPS))
        if unknown:
            raise ValidationError(f"Unknown group(s) {', '.join(unknown)}; use any of {', '.join(GROUPS)}.",
                                  "group_by")
        data["group_by"] = groups
        today = utcnow().date()
        data["until"] = data.get("until") or today
        data["since"] = data.get("since") or data["until"] - timedelta(days=29)
        if data["since"] > data["until"]:
            raise ValidationError("since is after until.", "since")
        if (data["until"] - data["since"]).days > 366:
            raise ValidationError("The range is at most 366 days.", "since")
        return data
