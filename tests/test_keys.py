"""Client API keys: made from the command line and the admin API, sent the three ways SDKs send
them, refused in each API's own shape, never stored or logged in plain text."""
from __future__ import annotations

import re
import sqlite3
from datetime import timedelta
from pathlib import Path

import httpx2
import openai
import pytest

from app.core.clock import utcnow
from app.keys import service
from app.keys.models import ApiKey
from tests.conftest import provider_config
from tests.fakes.server import Reply

ASK = {"question": "What is 2+2?", "client_id": "c1", "user_id": "u1"}


def cli_create(app, *args: str) -> str:
    """A key made with `flask keys create`, as printed."""
    result = app.test_cli_runner().invoke(args=["keys", "create", *args])
    assert result.exit_code == 0, result.output
    return re.search(r"key: (ais-\S+)", result.output).group(1)


def sdk(app, key: str) -> openai.OpenAI:
    """The real openai SDK, its HTTP going straight into the app."""
    return openai.OpenAI(api_key=key, base_url="http://testserver/v1", max_retries=0,
                         http_client=httpx2.Client(transport=httpx2.WSGITransport(app=app)))


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_open_until_a_key_exists_then_every_endpoint_needs_one(app, client, fake_openai):
    fake_openai.enqueue(Reply(text="4"))
    assert client.post("/v1/ask", json=ASK).status_code == 200
    health = client.get("/health").get_json()
    assert health["auth"]["open"] is True and "anyone" in health["auth"]["warning"]
    cli_create(app, "first", "--admin")
    response = client.post("/v1/ask", json=ASK)
    assert response.status_code == 401
    assert response.get_json() == {"error": {"message": response.get_json()["error"]["message"],
                                             "type": "authentication_error", "code": "missing_api_key",
                                             "param": None}}
    ours = client.get("/chat/history")
    assert ours.status_code == 401 and ours.get_json()["success"] is False
    for path in ("/ping", "/health", "/v1/health", "/api/v1/health", "/ui", "/docs", "/openapi.json"):
        assert client.get(path).status_code == 200, path
    assert "providers" not in client.get("/health").get_json()  # anonymous: no provider details


def test_auth_required_refuses_even_with_no_key(make_app, fake_openai):
    from tests.conftest import provider_config

    client = make_app(AUTH_REQUIRED=True, **provider_config(openai=fake_openai)).test_client()
    assert client.get("/chat/history").status_code == 401


@pytest.mark.parametrize("header", ["Authorization", "x-api-key", "x-goog-api-key"])
def test_a_key_is_accepted_in_each_header(app, client, fake_openai, header):
    key = cli_create(app, "k")
    fake_openai.enqueue(Reply(text="4"))
    value = f"Bearer {key}" if header == "Authorization" else key
    assert client.post("/v1/ask", json=ASK, headers={header: value}).status_code == 200


def test_the_openai_sdk_gets_its_own_errors(app, fake_openai):
    key = cli_create(app, "limited", "--models", "gpt-4o-mini")
    expired = cli_create(app, "old", "--expires", (utcnow() + timedelta(minutes=1)).isoformat())
    ApiKey.update(expires_at=utcnow() - timedelta(minutes=1)).where(ApiKey.name == "old").execute()  # it lapsed
    revoked = cli_create(app, "gone")
    revoked_id = ApiKey.get(ApiKey.name == "gone").id
    app.test_cli_runner().invoke(args=["keys", "revoke", revoked_id])
    fake_openai.enqueue(Reply(text="ok", prompt_tokens=3, completion_tokens=2))
    messages = [{"role": "user", "content": "hi"}]
    answer = sdk(app, key).chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert answer.choices[0].message.content == "ok"
    cases = [(None, "ais-not-a-real-key", openai.AuthenticationError, "invalid_api_key"),
             (None, revoked, openai.PermissionDeniedError, "revoked_api_key"),
             (None, expired, openai.PermissionDeniedError, "expired_api_key"),
             ("gpt-4o", key, openai.PermissionDeniedError, "model_not_allowed")]
    for model, sent, error, code in cases:
        with pytest.raises(error) as raised:
            sdk(app, sent).chat.completions.create(model=model or "gpt-4o-mini", messages=messages)
        assert raised.value.code == code, code
    assert len(fake_openai.requests) == 1  # nothing refused reached the provider


def test_rotate_replaces_the_value_and_keeps_the_key(app, client, fake_openai):
    old = cli_create(app, "k")
    key_id = ApiKey.get(ApiKey.name == "k").id
    result = app.test_cli_runner().invoke(args=["keys", "rotate", key_id])
    new = re.search(r"key: (ais-\S+)", result.output).group(1)
    assert client.get("/v1/key/info", headers=bearer(old)).status_code == 401
    info = client.get("/v1/key/info", headers=bearer(new)).get_json()
    assert info["key"]["id"] == key_id and info["key"]["hint"] == f"ais-…{new[-4:]}"
    listed = app.test_cli_runner().invoke(args=["keys", "list"]).output
    assert key_id in listed and new not in listed


def test_admin_api_manages_keys_and_only_admins_may(app, client):
    admin = cli_create(app, "root", "--admin")
    plain = cli_create(app, "user")
    assert client.get("/admin/keys", headers=bearer(plain)).status_code == 403
    made = client.post("/admin/keys", headers=bearer(admin),
                       json={"name": "ci", "models": ["openai/*"], "rpm": 5, "scopes": ["gists"]})
    assert made.status_code == 201
    body = made.get_json()
    assert body["key"].startswith("ais-") and body["limits"]["rpm"] == 5 and body["scopes"] == ["gists"]
    listed = client.get("/admin/keys", headers=bearer(admin)).get_json()["keys"]
    assert {k["name"] for k in listed} == {"root", "user", "ci"} and all("key" not in k for k in listed)
    bad = client.post("/admin/keys", headers=bearer(admin), json={"name": "x", "scopes": ["root"]})
    assert bad.status_code == 400 and bad.get_json()["error"]["param"] == "scopes"
    revoked = client.delete(f"/admin/keys/{body['id']}", headers=bearer(admin)).get_json()
    assert revoked["status"] == "revoked"
    assert client.get("/v1/key/info", headers=bearer(body["key"])).status_code == 403


def test_patch_changes_only_the_limits_it_names_and_refuses_any_other_field(app, client, fake_openai):
    admin = cli_create(app, "root", "--admin")
    plain = cli_create(app, "user", "--rpm", "5", "--daily-tokens", "1000")
    key_id = client.get("/v1/key/info", headers=bearer(plain)).get_json()["key"]["id"]
    path = f"/admin/keys/{key_id}"
    assert client.patch(path, headers=bearer(plain), json={"rpm": 50}).status_code == 403
    changed = client.patch(path, headers=bearer(admin), json={"rpm": None, "monthly_budget_usd": 2.5}).get_json()
    assert changed["limits"] == {"rpm": None, "tpm": None, "daily_tokens": 1000, "monthly_budget_usd": 2.5}
    assert client.get("/v1/key/info", headers=bearer(plain)).get_json()["key"]["limits"] == changed["limits"]
    for body, param in [({"name": "renamed"}, "name"), ({"models": ["gpt-4o"]}, "models"), ({"rpm": 0}, "rpm"),
                        ({"daily_tokens": 2**63}, "daily_tokens"), ({"monthly_budget_usd": -1}, "monthly_budget_usd")]:
        refused = client.patch(path, headers=bearer(admin), json=body)
        assert refused.status_code == 400 and refused.get_json()["error"]["param"] == param, refused.get_json()
    assert client.get(path, headers=bearer(admin)).get_json()["limits"] == changed["limits"]
    assert client.patch("/admin/keys/key_nobody", headers=bearer(admin), json={"rpm": 1}).status_code == 404


@pytest.mark.parametrize("field, value", [
    ("rpm", 10**22), ("tpm", 2**31), ("daily_tokens", 2**63), ("monthly_budget_usd", 1e22),
    ("expires_at", "2001-01-01T00:00:00Z"),
])
def test_a_limit_no_database_stores_or_a_past_expiry_is_a_400_naming_the_field(app, client, field, value):
    """`rpm: 10**22` was a 500 (SQLite's integer overflow; PostgreSQL's integer is 32 bits), and a key
    could be made already expired."""
    admin = cli_create(app, "root", "--admin")
    response = client.post("/admin/keys", headers=bearer(admin), json={"name": "x", field: value})
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"]["param"] == field
    assert len(client.get("/admin/keys", headers=bearer(admin)).get_json()["keys"]) == 1


def test_the_largest_limits_every_database_stores_are_accepted(app, client):
    admin = cli_create(app, "root", "--admin")
    limits = {"rpm": 2**31 - 1, "tpm": 2**31 - 1, "daily_tokens": 2**63 - 1, "monthly_budget_usd": 1e9}
    made = client.post("/admin/keys", headers=bearer(admin), json={"name": "big", **limits})
    assert made.status_code == 201 and made.get_json()["limits"] == limits


@pytest.mark.parametrize("args", [["--rpm", str(10**22)], ["--tpm", str(2**31)], ["--daily-tokens", str(2**63)],
                                  ["--monthly-budget", "1e22"], ["--expires", "2001-01-01"]])
def test_the_cli_refuses_the_same_limits_and_past_expiries(app, args):
    result = app.test_cli_runner().invoke(args=["keys", "create", "x", *args])
    assert result.exit_code == 2 and args[0] in result.output, result.output
    assert service.list_keys() == []


def test_no_key_in_plain_text_in_the_database_logs_or_errors(app, client, fake_openai, tmp_path: Path):
    key = cli_create(app, "secret-keeper")
    fake_openai.enqueue(Reply(text="4"))
    client.post("/v1/ask", json=ASK, headers=bearer(key))
    wrong = key[:-4] + "AAAA"
    refused = client.post("/v1/ask", json=ASK, headers=bearer(wrong))
    assert refused.status_code == 401 and wrong not in refused.get_data(as_text=True)
    app.extensions["access"].rows.flush()
    import logging

    logging.getLogger("aiserver.test").warning("client sent %s", key)  # a key that slips into a log line
    for handler in logging.getLogger().handlers + logging.getLogger("aiserver").handlers:
        handler.flush()
    database = sqlite3.connect(tmp_path / "aiserver.db")
    dump = "\n".join(database.iterdump())
    assert "secret-keeper" in dump and key not in dump and key[4:] not in dump
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "logs").glob("*.log"))
    assert "client sent ais-***" in logs and key not in logs and wrong not in logs


def test_keys_are_found_by_hash_under_the_server_secret(app):
    row, key = service.create_key(service.KeySpec("k"), b"one secret")
    assert service.find_key(key, b"one secret").id == row.id
    assert service.find_key(key, b"another secret") is None
    assert row.key_hash != key and len(row.key_hash) == 64


def anthropic_sdk(app, key: str):
    """The real anthropic SDK (it sends the key as `x-api-key`), its HTTP going straight into the app."""
    import anthropic

    return anthropic.Anthropic(api_key=key, base_url="http://testserver", max_retries=0,
                               http_client=httpx2.Client(transport=httpx2.WSGITransport(app=app)))


def test_the_anthropic_sdk_sends_its_key_as_x_api_key_and_gets_anthropics_errors(app, fake_openai):
    import anthropic

    key = cli_create(app, "claude-code", "--models", "openai/gpt-4o-mini")
    fake_openai.enqueue(Reply(text="4"))
    message = anthropic_sdk(app, key).messages.create(model="gpt-4o-mini", max_tokens=50,
                                                      messages=[{"role": "user", "content": "2+2?"}])
    assert message.content[0].text == "4"
    with pytest.raises(anthropic.AuthenticationError) as unknown:
        anthropic_sdk(app, "ais-" + "x" * 43).messages.create(model="gpt-4o-mini", max_tokens=50,
                                                               messages=[{"role": "user", "content": "hi"}])
    assert unknown.value.body["type"] == "error" and unknown.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.PermissionDeniedError):  # a model outside the key's list
        anthropic_sdk(app, key).messages.create(model="gpt-4o", max_tokens=50,
                                                messages=[{"role": "user", "content": "hi"}])


def test_a_key_gets_a_403_for_the_model_it_asked_for_never_another_models_answer(make_app, fake_openai,
                                                                                  fake_anthropic):
    app = make_app(**provider_config(openai=fake_openai, anthropic=fake_anthropic),
                   PROVIDER_FALLBACKS=["openai"])
    key = cli_create(app, "openai-only", "--models", "openai/*")
    client = app.test_client()
    response = client.post("/chat/claude", json={"messages": [{"role": "user", "content": "hi"}]},
                           headers=bearer(key))
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "model_not_allowed"
    assert "anthropic/claude-sonnet-5-5" in response.get_json()["error"]["message"]
    assert fake_openai.requests == [] and fake_anthropic.requests == []
    fake_openai.enqueue(Reply(text="mine"))
    answer = client.post("/chat/gpt", json={"messages": [{"role": "user", "content": "hi"}]}, headers=bearer(key))
    assert answer.status_code == 200 and "mine" in answer.get_data(as_text=True)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_key_sent_as_a_request_id_or_client_or_user_id_is_never_logged_or_stored(make_app, fake_openai, tmp_path,
                                                                                  log_format):
    """A key sent as `X-Request-ID` was logged in clear on every line of its request (and echoed back);
    one sent as `client_id`/`user_id` (body or `X-Client-Id`/`X-User-Id`) went into the usage rows."""
    app = make_app(**provider_config(openai=fake_openai), LOG_FORMAT=log_format)
    client = app.test_client()
    key = cli_create(app, "owner")
    fake_openai.enqueue(Reply(text="4"), Reply(text="4"))
    body = {**ASK, "client_id": key, "user_id": f"user {key}"}
    answered = client.post("/v1/ask", json=body, headers={**bearer(key), "X-Request-ID": key})
    assert answered.status_code == 200 and answered.headers["X-Request-ID"] != key
    answered.close()  # the access line is written when the response is closed
    headers = {**bearer(key), "X-Client-Id": key, "X-User-Id": key}
    completed = client.post("/v1/chat/completions", headers=headers, json={
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "user": key})
    assert completed.status_code == 200
    completed.close()
    app.extensions["access"].rows.flush()
    import logging

    for handler in logging.getLogger("aiserver").handlers:
        handler.flush()
    rows = sqlite3.connect(tmp_path / "aiserver.db").execute("SELECT client_id, user_id FROM usage_record").fetchall()
    assert rows == [("ais-***", "user ais-***"), ("ais-***", "ais-***")]
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "logs").glob("*.log"))
    assert "/v1/ask" in logs and key not in logs and key[4:] not in logs


# -- key rows kept per process, and the key generation that ends them ------------------------------------


def test_a_found_key_is_kept_until_any_change_to_a_key_even_by_plain_sql(app, tmp_path: Path):
    """`find_key` answers from the rows it kept while the key generation (bumped by the database's own
    triggers, migration 0016) stays the same; a change through the model or by an operator's SQL on
    another connection both end it."""
    secret = b"the secret"
    row, key = service.create_key(service.KeySpec("k", rpm=5), secret)
    first = service.find_key(key, secret)
    assert service.find_key(key, secret) is first  # kept: no read of the row
    ApiKey.update(rpm=7).where(ApiKey.id == row.id).execute()
    assert service.find_key(key, secret).rpm == 7
    operator = sqlite3.connect(tmp_path / "aiserver.db")
    with operator:
        operator.execute("UPDATE api_key SET revoked_at = '2026-01-01 00:00:00' WHERE id = ?", (row.id,))
    operator.close()
    assert service.refusal(service.find_key(key, secret)) == "revoked"
    unknown = key[:-1] + ("B" if key.endswith("A") else "A")
    assert service.find_key(unknown, secret) is None  # unknown keys are read each time, never kept


def revoke_and_check_everywhere(servers, admin: str, key: str, key_id: str) -> None:
    """`key` is served by every worker of every server in `servers`, then revoked through the first
    one and refused by all of them at once; requests on fresh connections reach both workers."""
    import requests

    def statuses(sent: str) -> set[int]:
        return {requests.get(server.url + "/v1/key/info", headers={**bearer(sent), "Connection": "close"},
                             timeout=10).status_code for server in servers for _ in range(20)}
    assert statuses(key) == {200}
    revoked = requests.post(servers[0].url + f"/admin/keys/{key_id}/revoke", headers=bearer(admin), timeout=10)
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert statuses(key) == {403}


def test_a_revoke_on_one_worker_is_refused_at_once_by_the_other(live_server, make_app):
    server = live_server(workers=2)
    app = make_app()
    admin = cli_create(app, "root", "--admin")
    row, key = service.create_key(service.KeySpec("user"), app.extensions["key_hash_secret"]())
    revoke_and_check_everywhere([server], admin, key, row.id)


@pytest.mark.postgres
def test_a_revoke_rotation_or_edit_on_one_instance_is_seen_at_once_by_another(live_server, make_app, tmp_path):
    """Two instances (two workers each) on one PostgreSQL: what one changes, the other sees on its
    next request, though both keep the key rows they found."""
    import requests

    from tests.conftest import fresh_postgres_database

    with fresh_postgres_database() as url:
        servers = [live_server(workers=2, DATABASE_URL=url, LOG_DIR=str(tmp_path / name),
                               UPSTREAM_HEALTH_FILE=str(tmp_path / f"{name}.health")) for name in ("a", "b")]
        app = make_app(DATABASE_URL=url)
        admin = cli_create(app, "root", "--admin")
        secret = app.extensions["key_hash_secret"]()
        row, key = service.create_key(service.KeySpec("user"), secret)
        rotated = requests.post(servers[0].url + f"/admin/keys/{row.id}/rotate", headers=bearer(admin), timeout=10)
        new = rotated.json()["key"]
        for sent, status in ((key, 401), (new, 200)):
            assert requests.get(servers[1].url + "/v1/key/info", headers=bearer(sent), timeout=10).status_code == status
        ApiKey.update(models=["gpt-4o"]).where(ApiKey.id == row.id).execute()  # an edit, by another process
        info = requests.get(servers[1].url + "/v1/key/info", headers=bearer(new), timeout=10).json()
        assert info["key"]["models"] == ["gpt-4o"]
        revoke_and_check_everywhere(servers, admin, new, row.id)
        for server in servers:
            server.stop()
        app.extensions["database"].close_all()
