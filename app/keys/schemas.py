"""Bodies and queries of `/admin/keys` and `/usage`."""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

from marshmallow import RAISE, ValidationError, fields, post_load, validate

from app.core.clock import utcnow
from app.core.schemas import BaseSchema, StrictBoolean
from app.keys.models import SCOPES
from app.keys.usage import GROUPS

# What every database stores: rpm and tpm are 32-bit columns (PostgreSQL's integer), daily_tokens a
# 64-bit one; a budget above a billion dollars is a typo, and an unbounded float is Infinity.
MAX_INT32, MAX_INT64 = 2**31 - 1, 2**63 - 1
MAX_BUDGET_USD = 1e9
INT32_LIMIT = validate.Range(min=1, max=MAX_INT32)
NAMESPACE = "[A-Za-z0-9._-]{1,100}"  # a shared response cache's name (a full match)
NAMESPACE_RULE = re.compile(NAMESPACE)


def check_namespace(value: str) -> None:
    if not NAMESPACE_RULE.fullmatch(value):
        raise ValidationError("1 to 100 letters, digits, '.', '_' or '-'.")


def in_the_future(value: datetime) -> None:
    """`expires_at` must be later than now: a key made already expired is refused at once (a typo)."""
    if value <= datetime.now(timezone.utc):
        raise ValidationError("Must be in the future.")


class CreateKeySchema(BaseSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    admin = StrictBoolean(load_default=False)
    models = fields.List(fields.String(validate=validate.Length(min=1, max=200)), load_default=None,
                         validate=validate.Length(min=1, max=100))
    scopes = fields.List(fields.String(validate=validate.OneOf(SCOPES)), load_default=list)
    rpm = fields.Integer(load_default=None, allow_none=True, strict=True, validate=INT32_LIMIT)
    tpm = fields.Integer(load_default=None, allow_none=True, strict=True, validate=INT32_LIMIT)
    daily_tokens = fields.Integer(load_default=None, allow_none=True, strict=True,
                                  validate=validate.Range(min=1, max=MAX_INT64))
    monthly_budget_usd = fields.Float(load_default=None, allow_none=True,
                                      validate=validate.Range(min=0, max=MAX_BUDGET_USD))
    expires_at = fields.AwareDateTime(load_default=None, allow_none=True, default_timezone=timezone.utc,
                                      validate=in_the_future, metadata={"description": "In the future."})
    response_cache = StrictBoolean(load_default=True, metadata={
        "description": "Whether the key's answers are cached (when the server's RESPONSE_CACHE_TTL_S is on)."})
    response_cache_namespace = fields.String(load_default=None, allow_none=True, validate=check_namespace, metadata={
        "pattern": f"^{NAMESPACE}$",
        "description": "A response cache shared with the keys given the same name; none: the key's own."})


class UpdateLimitsSchema(BaseSchema):
    """`PATCH /admin/keys/<id>`: the limits to change; a field left out keeps its value, null removes the
    limit. Any other field (a name, models, scopes) is refused by name: only limits change here."""

    class Meta:
        unknown = RAISE

    rpm = fields.Integer(allow_none=True, strict=True, validate=INT32_LIMIT)
    tpm = fields.Integer(allow_none=True, strict=True, validate=INT32_LIMIT)
    daily_tokens = fields.Integer(allow_none=True, strict=True, validate=validate.Range(min=1, max=MAX_INT64))
    monthly_budget_usd = fields.Float(allow_none=True, validate=validate.Range(min=0, max=MAX_BUDGET_USD))


# `group_by`: groups of GROUPS separated by commas (spaces around them, empty ones skipped); checked with
# this rule, a full match, and documented with it (ECMA-262 reads it the same way).
GROUP = "(?:" + "|".join(GROUPS) + ")"
GROUP_BY = rf"[ ,]*(?:{GROUP} *(?:,[ ,]*{GROUP} *)*)?[ ,]*"
GROUP_BY_RULE = re.compile(GROUP_BY)


def check_group_by(value: str) -> None:
    if not GROUP_BY_RULE.fullmatch(value):
        raise ValidationError(f"group_by is a comma-separated list of {', '.join(GROUPS)}.")


USAGE_DAYS = validate.Range(min=date(1970, 1, 1), max=date(9999, 12, 30))  # until's next day must exist


class UsageQuerySchema(BaseSchema):
    since = fields.Date(load_default=None, validate=USAGE_DAYS,
                        metadata={"description": "The first day (default: 29 days before until); not after until, "
                                                 "and at most 366 days before it. From 1970-01-01 to 9999-12-30."})
    until = fields.Date(load_default=None, validate=USAGE_DAYS,
                        metadata={"description": "The last day (default: today, UTC). From 1970-01-01 to 9999-12-30."})
    key_id = fields.String(load_default=None, validate=validate.Length(min=1, max=40))
    group_by = fields.String(load_default="day", validate=check_group_by,
                             metadata={"pattern": f"^{GROUP_BY}$",
                                       "description": f"Comma-separated: any of {', '.join(GROUPS)}."})

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


# -- answers (documentation; the views return these shapes) -------------------------------------------


class KeyLimitsSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    rpm = fields.Integer(required=True, allow_none=True)
    tpm = fields.Integer(required=True, allow_none=True)
    daily_tokens = fields.Integer(required=True, allow_none=True)
    monthly_budget_usd = fields.Float(required=True, allow_none=True)


class KeySchema(BaseSchema):
    """A key as listed: never its value or hash."""

    class Meta:
        unknown = RAISE

    id = fields.String(required=True)
    name = fields.String(required=True)
    hint = fields.String(required=True, metadata={"description": "`ais-...` and the value's last 4 characters."})
    admin = StrictBoolean(required=True)
    models = fields.List(fields.String(), required=True, allow_none=True)
    scopes = fields.List(fields.String(), required=True)
    limits = fields.Nested(KeyLimitsSchema, required=True)
    created_at = fields.String(required=True)
    expires_at = fields.String(required=True, allow_none=True)
    revoked_at = fields.String(required=True, allow_none=True)
    rotated_at = fields.String(required=True, allow_none=True)
    status = fields.String(required=True, metadata={"enum": ["active", "revoked", "expired"]})
    response_cache = StrictBoolean(required=True)
    response_cache_namespace = fields.String(required=True, allow_none=True)


class OneKeySchema(KeySchema):
    success = StrictBoolean(required=True)


class NewKeySchema(OneKeySchema):
    key = fields.String(required=True, metadata={"description": "The key's value, shown this once."})


class KeyListSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    keys = fields.List(fields.Nested(KeySchema), required=True)
    success = StrictBoolean(required=True)


CACHED_READ = {"description": "Of the prompt tokens, those read from the provider's prompt cache (charged at the "
                              "price table's cached rate)."}
CACHE_WRITE = {"description": "Of the prompt tokens, those written to the provider's prompt cache (Claude; charged "
                              "at the cache-write rate)."}


class UsageRowSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    key = fields.String(allow_none=True)
    provider = fields.String()
    model = fields.String()
    day = fields.String()
    calls = fields.Integer(required=True)
    prompt_tokens = fields.Integer(required=True)
    completion_tokens = fields.Integer(required=True)
    reasoning_tokens = fields.Integer(required=True)
    cached_read_tokens = fields.Integer(required=True, metadata=CACHED_READ)
    cache_write_tokens = fields.Integer(required=True, metadata=CACHE_WRITE)
    total_tokens = fields.Integer(required=True)
    cost_usd = fields.Float(required=True)
    unpriced_calls = fields.Integer(required=True, metadata={"description": "Calls to models without a price."})


class UsageSummarySchema(BaseSchema):
    class Meta:
        unknown = RAISE

    since = fields.String(required=True)
    until = fields.String(required=True)
    group_by = fields.List(fields.String(), required=True)
    rows = fields.List(fields.Nested(UsageRowSchema), required=True)
    success = StrictBoolean(required=True)


class UsageLeftSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    as_of = fields.String(required=True)
    tokens_today = fields.Integer(required=True)
    tokens_this_month = fields.Integer(required=True)
    cached_read_tokens_this_month = fields.Integer(required=True, metadata=CACHED_READ)
    cache_write_tokens_this_month = fields.Integer(required=True, metadata=CACHE_WRITE)
    cost_this_month_usd = fields.Float(required=True)
    daily_tokens_left = fields.Integer(required=True, allow_none=True)
    monthly_budget_left_usd = fields.Float(required=True, allow_none=True)


class KeyInfoSchema(BaseSchema):
    class Meta:
        unknown = RAISE

    key = fields.Nested(KeySchema, required=True, allow_none=True)
    usage = fields.Nested(UsageLeftSchema)
    open = StrictBoolean(metadata={"description": "true when the server has no key and takes any caller."})
    limits = fields.Raw(allow_none=True)
