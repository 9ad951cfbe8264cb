"""Per-key limits and budgets, and the usage rows they read: requests per minute shared by two
Gunicorn workers through Redis, tokens per minute, daily tokens, the monthly budget, `/usage`
sums equal to what the provider reported, and pruning."""
from __future__ import annotations

import concurrent.futures
import time
from datetime import timedelta

import openai
import pytest
import requests

from app.core.clock import utcnow
from app.core.db import database
from app.keys import service, usage
from app.keys.models import UsageRecord
from app.keys.secret import hash_secret
from app.keys.usage import prune
from tests.conftest import REDIS_URL, provider_config
from tests.fakes.server import Reply
from tests.test_keys import ASK, bearer, cli_create, sdk


def test_requests_per_minute_hold_exactly_across_two_workers_sharing_redis(live_server, make_app, tmp_path,
                                                                           fake_openai):
    settings = dict(REDIS_URL=REDIS_URL, QUEUE_NAME=f"keys-test-{tmp_path.name}")
    app = make_app(**settings)
    row, key = service.create_key(service.KeySpec("limited", rpm=5), hash_secret(app.config))
    server = live_server(workers=2, **settings)

    def one(_n):  # a new connection each, so both workers serve some
        return requests.get(server.url + "/v1/key/info", headers=bearer(key), timeout=10)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(8)))
    assert sorted(a.status_code for a in answers) == [200] * 5 + [429] * 3
    refused = next(a for a in answers if a.status_code == 429)
    assert 0 < int(refused.headers["Retry-After"]) <= 61
    assert refused.headers["x-ratelimit-limit-requests"] == "5"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert key not in server.log_path.read_text()


def test_tokens_per_minute_refuse_the_next_call_through_the_sdk(app, fake_openai):
    key = cli_create(app, "tpm", "--tpm", "10")
    fake_openai.enqueue(Reply(text="long", prompt_tokens=8, completion_tokens=4))
    messages = [{"role": "user", "content": "hi"}]
    sdk(app, key).chat.completions.create(model="gpt-4o-mini", messages=messages)
    with pytest.raises(openai.RateLimitError) as raised:
        sdk(app, key).chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert raised.value.code == "tokens_per_minute_exceeded"
    assert int(raised.value.response.headers["retry-after"]) >= 1
    assert len(fake_openai.requests) == 1


@pytest.mark.parametrize("option, value, code", [("--daily-tokens", "50", "daily_tokens_exceeded"),
                                                 ("--monthly-budget", "0.0005", "monthly_budget_exceeded")])
def test_daily_tokens_and_the_monthly_budget_stop_a_key(app, client, fake_openai, option, value, code):
    key = cli_create(app, "budgeted", option, value)
    other = cli_create(app, "other")
    fake_openai.enqueue(Reply(text="a", prompt_tokens=1000, completion_tokens=500))  # $0.00045 for gpt-4o-mini
    assert client.post("/v1/ask", json=ASK, headers=bearer(key)).status_code == 200
    app.extensions["access"].rows.flush()
    fake_openai.enqueue(Reply(text="b", prompt_tokens=100, completion_tokens=100))
    second = client.post("/v1/ask", json=ASK, headers=bearer(key))
    if code == "monthly_budget_exceeded":  # $0.00045 < $0.0005: one more call is allowed, then none
        assert second.status_code == 200
        app.extensions["access"].rows.flush()
        second = client.post("/v1/ask", json=ASK, headers=bearer(key))
    assert second.status_code == 429
    error = second.get_json()["error"]
    assert error["code"] == code and ("budget" in error["message"] or "Daily" in error["message"])
    assert int(second.headers["Retry-After"]) > 0
    fake_openai.enqueue(Reply(text="c"))
    assert client.post("/v1/ask", json=ASK, headers=bearer(other)).status_code == 200
    info = client.get("/v1/key/info", headers=bearer(key)).get_json()
    assert info["usage"]["daily_tokens_left" if "daily" in code else "monthly_budget_left_usd"] == 0


def test_usage_sums_equal_the_providers_tokens(app, client, fake_openai):
    admin = cli_create(app, "admin", "--admin")
    a, b = cli_create(app, "a"), cli_create(app, "b")
    for key, prompt, completion in ((a, 11, 7), (a, 5, 3), (b, 100, 40)):
        fake_openai.enqueue(Reply(text="x", prompt_tokens=prompt, completion_tokens=completion))
        assert client.post("/v1/ask", json=ASK, headers=bearer(key)).status_code == 200
    fake_openai.enqueue(Reply(text="x", prompt_tokens=2, completion_tokens=2, model="brand-new-model"))
    sdk(app, a).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                        user="end-user-9")
    app.extensions["access"].rows.flush()
    own = client.get("/usage?group_by=model", headers=bearer(a)).get_json()["rows"]
    assert {r["model"]: (r["calls"], r["prompt_tokens"], r["completion_tokens"]) for r in own} == {
        "gpt-4o-mini": (2, 16, 10), "brand-new-model": (1, 2, 2)}
    unpriced = next(r for r in own if r["model"] == "brand-new-model")
    assert unpriced["cost_usd"] == 0 and unpriced["unpriced_calls"] == 1
    priced = next(r for r in own if r["model"] == "gpt-4o-mini")
    assert priced["cost_usd"] == pytest.approx((16 * 0.15 + 10 * 0.6) / 1e6)
    everyone = client.get("/usage?group_by=key", headers=bearer(admin)).get_json()["rows"]
    assert sorted(r["total_tokens"] for r in everyone) == [30, 140]
    b_id = service.find_key(b, hash_secret(app.config)).id
    assert client.get(f"/usage?key_id={b_id}", headers=bearer(a)).status_code == 404
    assert client.get(f"/usage?key_id={b_id}&group_by=", headers=bearer(admin)).get_json()["rows"][0]["calls"] == 1
    with database.connection_context():
        rows = list(UsageRecord.select().order_by(UsageRecord.id))
    assert [(r.client_id, r.user_id) for r in rows] == [("c1", "u1")] * 3 + [(None, "end-user-9")]
    assert all(r.request_id and r.status == "ok" and r.latency_ms >= 0 for r in rows)
    bad = client.get("/usage?group_by=colour", headers=bearer(a))
    assert bad.status_code == 400 and bad.get_json()["error"]["param"] == "group_by"


def test_old_usage_rows_are_pruned_in_batches(app):
    now = utcnow()
    with database.connection_context():
        UsageRecord.insert_many([{"created_at": now - timedelta(days=age), "provider": "p", "model": "m",
                                  "status": "ok"} for age in (1, 89, 91, 95, 200)]).execute()
    assert prune(90, now=now, batch=2) == 3
    with database.connection_context():
        assert UsageRecord.select().count() == 2
    assert "prune_usage" in app.extensions["housekeeping_jobs"]


def test_fail_closed_refuses_when_redis_is_down(make_app):
    app = make_app(REDIS_URL="redis://127.0.0.1:1/0", RATE_LIMIT_FAIL_OPEN=False)
    _, key = service.create_key(service.KeySpec("k", rpm=5), hash_secret(app.config))
    refused = app.test_client().get("/v1/key/info", headers=bearer(key))
    assert refused.status_code == 503
    assert refused.get_json()["error"]["code"] == "rate_limit_storage_unavailable"
    open_app = make_app(REDIS_URL="redis://127.0.0.1:1/0", RATE_LIMIT_FAIL_OPEN=True)
    assert open_app.test_client().get("/v1/key/info", headers=bearer(key)).status_code == 200


def test_usage_rows_count_the_reasoning_tokens_the_vendor_reported(app, client, fake_openai):
    key = cli_create(app, "thinker")
    fake_openai.enqueue(Reply(text="4", prompt_tokens=9, completion_tokens=3, reasoning="two and two make four"))
    answer = sdk(app, key).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "2+2?"}])
    reasoning = answer.usage.completion_tokens_details.reasoning_tokens
    assert reasoning > 0
    app.extensions["access"].rows.flush()
    [row] = client.get("/usage?group_by=model", headers=bearer(key)).get_json()["rows"]
    assert (row["prompt_tokens"], row["completion_tokens"], row["reasoning_tokens"]) == (
        9, answer.usage.completion_tokens, reasoning)


# -- limits that hold under concurrency, on every LLM route ------------------------------------------------

PROMPT = "x" * 396  # with the role "user": 400 characters, the server's estimate is 100 prompt tokens
COST = 100 * 0.15e-6 + 100 * 0.6e-6  # gpt-4o-mini, 100 prompt and 100 completion tokens: what each call uses
RESERVED = 100 * 0.15e-6 + 100 * 0.6e-6  # max_tokens 100 and the estimated prompt: what each call reserves


@pytest.mark.parametrize("storage", ["database", pytest.param("redis", marks=pytest.mark.redis)])
@pytest.mark.parametrize("option, value, spent_of", [("--monthly-budget", "0.0005", lambda row: row[1]),
                                                     ("--daily-tokens", "1000", lambda row: row[0])])
def test_fifty_concurrent_calls_pass_a_limit_by_at_most_one_reservation(live_server, make_app, tmp_path,
                                                                        fake_openai, storage, option, value,
                                                                        spent_of):
    settings = dict(QUEUE_NAME=f"limits-{tmp_path.name}", USAGE_FLUSH_S=0.2, **provider_config(openai=fake_openai))
    if storage == "redis":
        settings["REDIS_URL"] = REDIS_URL
    app = make_app(**settings)
    key = cli_create(app, "small", option, value)
    key_id = service.find_key(key, hash_secret(app.config)).id
    server = live_server(workers=2, **settings)
    fake_openai.enqueue(*[Reply(text="ok", prompt_tokens=100, completion_tokens=100, first_byte_delay=0.5)
                          for _ in range(50)])
    body = {"model": "gpt-4o-mini", "max_tokens": 100, "messages": [{"role": "user", "content": PROMPT}]}

    def one(_n):
        return requests.post(server.url + "/v1/chat/completions", json=body, headers=bearer(key), timeout=30)

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(one, range(50)))
    statuses = [answer.status_code for answer in answers]
    assert set(statuses) == {200, 429}, statuses
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert refused.json()["error"]["type"] == "rate_limit_error" and int(refused.headers["Retry-After"]) > 0
    answered = statuses.count(200)
    deadline = time.monotonic() + 15  # usage rows are written just after each answer
    while count_rows(key_id) < answered and time.monotonic() < deadline:
        time.sleep(0.1)
    assert count_rows(key_id) == answered
    spent = spent_of(usage.spent(key_id, usage.month_start(utcnow())))
    limit, one_call = (float(value), RESERVED) if "budget" in option else (int(value), 200)
    assert answered >= int(limit // (COST if "budget" in option else 200))  # the limit is used
    assert limit <= spent <= limit + one_call, (spent, answered)  # and passed by at most one reservation


def count_rows(key_id: str) -> int:
    with database.connection_context():
        return UsageRecord.select().where((UsageRecord.key_id == key_id) & (UsageRecord.status == "ok")).count()


def test_requests_per_minute_hold_exactly_across_two_workers_without_redis(live_server, make_app, tmp_path):
    app = make_app()
    _, key = service.create_key(service.KeySpec("limited", rpm=5), hash_secret(app.config))
    server = live_server(workers=2)

    def one(_n):  # a new connection each, so both workers serve some
        return requests.get(server.url + "/v1/key/info", headers=bearer(key), timeout=10)

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(one, range(20)))
    assert sorted(a.status_code for a in answers) == [200] * 5 + [429] * 15
    refused = next(a for a in answers if a.status_code == 429)
    assert 0 < int(refused.headers["Retry-After"]) <= 61 and refused.json()["error"]["type"] == "rate_limit_error"


def test_embeddings_and_token_counts_obey_the_keys_models_and_limits(make_app, fake_openai, fake_anthropic):
    app = make_app(**provider_config(openai=fake_openai, anthropic=fake_anthropic))
    client = app.test_client()
    chat_only = cli_create(app, "chat-only", "--models", "gpt-4o-mini")
    refused = client.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "hi"},
                          headers=bearer(chat_only))
    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "model_not_allowed"
    assert refused.get_json()["error"]["type"] == "permission_error"
    counted = client.post("/v1/messages/count_tokens", headers={"x-api-key": chat_only},
                          json={"model": "claude-sonnet-5-5", "messages": [{"role": "user", "content": "hi"}]})
    assert counted.status_code == 403
    assert counted.get_json()["type"] == "error" and counted.get_json()["error"]["type"] == "permission_error"
    assert not fake_openai.requests and not fake_anthropic.requests
    spent = cli_create(app, "spent", "--daily-tokens", "10")
    fake_openai.enqueue(Reply(text="long", prompt_tokens=8, completion_tokens=4))
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    assert client.post("/v1/chat/completions", headers=bearer(spent), json=chat).status_code == 200
    over = client.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "hi"}, headers=bearer(spent))
    assert over.status_code == 429 and over.get_json()["error"]["code"] == "daily_tokens_exceeded"
    over = client.post("/v1/messages/count_tokens", headers={"x-api-key": spent},
                       json={"model": "claude-sonnet-5-5", "messages": [{"role": "user", "content": "hi"}]})
    assert over.status_code == 429 and over.get_json()["error"]["type"] == "rate_limit_error"
    assert len(fake_openai.requests) == 1 and not fake_anthropic.requests


def test_a_failed_or_abandoned_call_gives_its_reservation_back(app, client, fake_openai):
    key = cli_create(app, "tight", "--tpm", "300")
    body = {"model": "gpt-4o-mini", "max_tokens": 300, "messages": [{"role": "user", "content": "hi"}]}
    fake_openai.enqueue(*[Reply(status=400, error_message="bad request")])
    assert client.post("/v1/chat/completions", json=body, headers=bearer(key)).status_code == 400
    stream = client.post("/v1/chat/completions", json={**body, "stream": True}, headers=bearer(key), buffered=False)
    stream.close()  # the client went before the stream began: nothing was answered
    fake_openai.enqueue(Reply(text="ok", prompt_tokens=5, completion_tokens=5))
    answer = client.post("/v1/chat/completions", json=body, headers=bearer(key))
    assert answer.status_code == 200  # neither call before kept its 301 tokens reserved
    fake_openai.enqueue(Reply(text="ok", prompt_tokens=5, completion_tokens=5))
    # 10 tokens used this minute, not 301 reserved
    assert client.post("/v1/chat/completions", json=body, headers=bearer(key)).status_code == 200
