"""`flask --app app.wsgi keys ...`: create, list, revoke and rotate client API keys."""
from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from app.core.clock import isoformat, parse_iso, utcnow
from app.core.errors import APIError
from app.keys import service
from app.keys.schemas import MAX_BUDGET_USD, MAX_INT32, MAX_INT64, NAMESPACE_RULE

keys_cli = AppGroup("keys", help="Client API keys: create, list, revoke, rotate.")


def _secret() -> bytes:
    return current_app.extensions["key_hash_secret"]()


def _comma_list(values: tuple[str, ...]) -> list[str]:
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _shown_once(key: str) -> None:
    click.echo(f"key: {key}")
    click.echo("This is the only time the key is shown; store it now (it is kept only as a hash).", err=True)


@keys_cli.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="May manage keys and see every key's data.")
@click.option("--models", multiple=True, help="Allowed models (model, provider/model or provider/*); "
                                              "repeat or comma-separate; default: all.")
@click.option("--scopes", multiple=True, help="Extra rights: gists (create, edit and delete GitHub gists).")
@click.option("--rpm", type=click.IntRange(min=1, max=MAX_INT32), help="Requests per minute.")
@click.option("--tpm", type=click.IntRange(min=1, max=MAX_INT32), help="Tokens per minute.")
@click.option("--daily-tokens", type=click.IntRange(min=1, max=MAX_INT64), help="Tokens per UTC day.")
@click.option("--monthly-budget", type=click.FloatRange(min=0, max=MAX_BUDGET_USD),
              help="USD per UTC month, from the price table.")
@click.option("--expires", help="Expiry: an ISO 8601 date or time (UTC unless it says otherwise).")
@click.option("--response-cache/--no-response-cache", default=True, show_default=True,
              help="Whether the key's answers are cached (when RESPONSE_CACHE_TTL_S is on).")
@click.option("--response-cache-namespace", help="Share a response cache with the keys given the same name "
                                                 "(letters, digits, '.', '_', '-'); default: the key's own.")
def create(name, admin, models, scopes, rpm, tpm, daily_tokens, monthly_budget, expires, response_cache,
           response_cache_namespace):
    """Create a key and print it (once)."""
    expires_at = parse_iso(expires) if expires else None
    if expires and expires_at is None:
        raise click.BadParameter(f"{expires!r} is not an ISO 8601 date or time.", param_hint="--expires")
    if expires_at is not None and expires_at <= utcnow():
        raise click.BadParameter(f"{expires!r} is not in the future.", param_hint="--expires")
    if response_cache_namespace is not None and not NAMESPACE_RULE.fullmatch(response_cache_namespace):
        raise click.BadParameter("1 to 100 letters, digits, '.', '_' or '-'.", param_hint="--response-cache-namespace")
    try:
        spec = service.KeySpec(name=name, admin=admin, models=_comma_list(models) or None,
                               scopes=_comma_list(scopes), rpm=rpm, tpm=tpm, daily_tokens=daily_tokens,
                               monthly_budget_usd=monthly_budget, expires_at=expires_at,
                               response_cache=response_cache, response_cache_namespace=response_cache_namespace)
    except APIError as error:
        raise click.BadParameter(error.message, param_hint="--scopes") from None
    row, key = service.create_key(spec, _secret())
    click.echo(f"created {row.id} ({row.name}{', admin' if row.admin else ''})")
    _shown_once(key)


@keys_cli.command("list")
def list_():
    """Every key: id, name, hint, status, admin, limits (never the key)."""
    for row in service.list_keys():
        view = service.key_view(row)
        limits = " ".join(f"{k}={v}" for k, v in view["limits"].items() if v is not None)
        click.echo(f"{row.id}  {row.name}  {row.hint}  {view['status']}{'  admin' if row.admin else ''}"
                   f"{'  models=' + ','.join(row.models) if row.models else ''}"
                   f"{'  scopes=' + ','.join(row.scopes) if row.scopes else ''}"
                   f"{'  ' + limits if limits else ''}"
                   f"{'  expires=' + str(isoformat(row.expires_at)) if row.expires_at else ''}"
                   f"{'' if row.response_cache else '  response-cache=off'}"
                   f"{'  response-cache=' + str(row.response_cache_namespace) if row.response_cache_namespace else ''}")


@keys_cli.command("revoke")
@click.argument("key_id")
def revoke(key_id):
    """Revoke a key by id: refused from its next request on."""
    row = _or_exit(lambda: service.revoke_key(key_id))
    click.echo(f"revoked {row.id} ({row.name})")


@keys_cli.command("rotate")
@click.argument("key_id")
def rotate(key_id):
    """Give a key a new value (same id, limits and data); the old value stops working at once."""
    row, key = _or_exit(lambda: service.rotate_key(key_id, _secret()))
    click.echo(f"rotated {row.id} ({row.name})")
    _shown_once(key)


def _or_exit(action):
    try:
        return action()
    except APIError as error:
        raise click.ClickException(error.message) from None
