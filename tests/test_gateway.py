"""The failure policy through real providers and fakes: retries, model and provider fallback, and
streams that never lose, duplicate or silently truncate text."""
from __future__ import annotations

from dataclasses import replace

import pytest

from app.core.config import load_settings
from app.core.errors import BadRequest, RateLimited, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from app.llm.gateway import FailedAttempt, Gateway, RetryPolicy, Started, StreamFailed
from app.llm.providers.base import CompletionRequest, StreamEnd
from app.llm.registry import Route, build_registry
from tests.conftest import provider_config
from tests.fakes.server import Reply

QUESTION = CompletionRequest([{"role": "user", "content": "Hi"}])


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def make_gateway(sleeps):
    def build(retries: int = 2, max_wait: float = 5.0, **fakes):
        config = load_settings(environ={})
        config.update(provider_config(**fakes), PROVIDER_FALLBACKS=["anthropic", "gemini"], READ_TIMEOUT_S=1.0)
        registry = build_registry(config)
        return Gateway(registry, RetryPolicy(retries, 0.01, max_wait), sleep=sleeps.append), registry
    return build


def test_retries_a_server_error_then_answers(make_gateway, fake_openai, sleeps):
    gateway, registry = make_gateway(openai=fake_openai)
    fake_openai.enqueue(Reply(status=500), Reply(status=502), Reply(text="third time lucky"))
    answer = gateway.complete(QUESTION, registry.plan("openai"))
    assert answer.text == "third time lucky"
    assert (answer.provider, answer.model) == ("openai", "gpt-4o-mini")
    assert [a.status for a in answer.attempts] == [500, 502]
    assert len(sleeps) == 2 and sleeps[0] < sleeps[1]


def test_honours_retry_after(make_gateway, fake_openai, sleeps):
    gateway, registry = make_gateway(openai=fake_openai)
    fake_openai.enqueue(Reply(status=429, retry_after=1.5), Reply(text="ok"))
    assert gateway.complete(QUESTION, registry.plan("openai")).text == "ok"
    assert sleeps == [pytest.approx(1.5, abs=0.01)]


def test_a_retry_after_longer_than_the_cap_falls_back_at_once(make_gateway, fake_openai, sleeps):
    gateway, registry = make_gateway(openai=fake_openai, max_wait=2.0)
    fake_openai.set_model_reply("gpt-4o-mini", Reply(status=429, retry_after=60))
    fake_openai.set_model_reply("gpt-4o", Reply(text="from the fallback model"))
    answer = gateway.complete(QUESTION, registry.plan("openai"))
    assert (answer.model, answer.text) == ("gpt-4o", "from the fallback model")
    assert sleeps == []


def test_a_vendor_wide_failure_moves_to_the_next_provider_before_that_vendors_other_models(
        make_gateway, fake_openai, fake_anthropic):
    gateway, registry = make_gateway(retries=1, openai=fake_openai, anthropic=fake_anthropic)
    fake_openai.default_reply = Reply(status=503, error_message="overloaded")
    fake_anthropic.enqueue(Reply(text="Claude here."))
    answer = gateway.complete(QUESTION, registry.plan("openai"))
    assert (answer.provider, answer.text) == ("anthropic", "Claude here.")
    assert [(a.provider, a.model) for a in answer.attempts] == [("openai", "gpt-4o-mini")]
    assert len(fake_openai.requests) == 1


def test_a_model_specific_failure_goes_to_that_vendors_fallback_model_first(make_gateway, fake_openai,
                                                                            fake_anthropic):
    gateway, registry = make_gateway(openai=fake_openai, anthropic=fake_anthropic)
    fake_openai.set_model_reply("gpt-4o-mini", Reply(status=404, error_message="The model does not exist"))
    fake_openai.set_model_reply("gpt-4o", Reply(text="from the fallback model"))
    answer = gateway.complete(QUESTION, registry.plan("openai"))
    assert (answer.provider, answer.model, answer.text) == ("openai", "gpt-4o", "from the fallback model")
    assert fake_anthropic.requests == []


def test_a_context_too_long_goes_to_a_fallback_model_or_is_the_callers_error(make_gateway, fake_openai,
                                                                             fake_anthropic):
    gateway, registry = make_gateway(openai=fake_openai, anthropic=fake_anthropic)
    fake_openai.set_model_reply("gpt-4o-mini", Reply(status=400, error_message="maximum context length exceeded"))
    fake_openai.set_model_reply("gpt-4o", Reply(text="the larger model took it"))
    assert gateway.complete(QUESTION, registry.plan("openai")).model == "gpt-4o"
    fake_openai.set_model_reply("gpt-4o", Reply(status=400, error_message="maximum context length exceeded"))
    with pytest.raises(BadRequest, match="maximum context length"):
        gateway.complete(QUESTION, registry.plan("openai"))
    assert fake_anthropic.requests == []


def test_a_rejected_key_skips_the_rest_of_that_provider(make_gateway, fake_openai, fake_anthropic):
    gateway, registry = make_gateway(openai=fake_openai, anthropic=fake_anthropic)
    fake_openai.default_reply = Reply(status=401, error_message="bad key")
    answer = gateway.complete(QUESTION, registry.plan("openai"))
    assert answer.provider == "anthropic"
    assert len(fake_openai.requests) == 1


def test_a_callers_mistake_is_returned_not_retried(make_gateway, fake_openai, fake_anthropic):
    gateway, registry = make_gateway(openai=fake_openai, anthropic=fake_anthropic)
    fake_openai.enqueue(Reply(status=400, error_message="Invalid value for 'temperature'"))
    with pytest.raises(BadRequest, match="temperature"):
        gateway.complete(QUESTION, registry.plan("openai"))
    assert len(fake_openai.requests) == 1 and fake_anthropic.requests == []


@pytest.mark.parametrize("reply, error", [(Reply(status=500), UpstreamError), (Reply(status=503), UpstreamUnavailable),
                                          (Reply(status=429, retry_after=60), RateLimited),
                                          (Reply(hang=3), UpstreamTimeout)])
def test_when_everything_fails_the_error_lists_each_attempt(make_gateway, fake_openai, reply, error):
    gateway, registry = make_gateway(retries=0, openai=fake_openai)
    fake_openai.default_reply = reply
    with pytest.raises(error) as caught:
        gateway.complete(QUESTION, registry.plan("openai"))
    attempts = caught.value.details["attempts"]
    assert [a["model"] for a in attempts] == ["gpt-4o-mini", "gpt-4o"]


def test_stream_falls_back_before_the_first_token_and_keeps_it(make_gateway, fake_openai, fake_gemini):
    gateway, registry = make_gateway(retries=0, openai=fake_openai, gemini=fake_gemini)
    fake_openai.default_reply = Reply(status=500)
    fake_gemini.enqueue(Reply(chunks=["The", " first", " token"]))
    events = list(gateway.stream(QUESTION, registry.plan("openai")))
    assert [type(e) for e in events[:1]] == [FailedAttempt]
    assert events[1] == Started("gemini", "gemini-2.5-flash", tuple(events[:1]))
    assert events[2:5] == ["The", " first", " token"]
    assert isinstance(events[5], StreamEnd)


def test_a_failure_after_text_ends_the_stream_with_an_error_never_a_retry(make_gateway, fake_openai):
    gateway, registry = make_gateway(openai=fake_openai)
    # paced, because a TCP reset discards whatever the client has not read yet
    fake_openai.enqueue(Reply(chunks=["a", "b", "c", "d"], reset_after=2, chunk_delay=0.1),
                        Reply(text="must not be used"))
    events = list(gateway.stream(QUESTION, registry.plan("openai")))
    texts = [e for e in events if isinstance(e, str)]
    assert texts == ["a", "b"]
    assert isinstance(events[-1], StreamFailed)
    assert len(fake_openai.requests) == 1


def test_stream_raises_when_no_route_answers(make_gateway, fake_openai):
    gateway, registry = make_gateway(retries=0, openai=fake_openai)
    fake_openai.default_reply = Reply(status=500)
    with pytest.raises(UpstreamError):
        list(gateway.stream(QUESTION, registry.plan("openai")))


def test_wait_before_retry_policy():
    from app.llm.providers.base import CallerFault, TransientFailure

    policy = RetryPolicy(retries=2, backoff=1.0, max_wait=3.0)
    assert policy.wait_before_retry(1, CallerFault("x")) is None
    assert policy.wait_before_retry(3, TransientFailure("x")) is None
    assert 0.8 <= policy.wait_before_retry(1, TransientFailure("x")) <= 1.2
    assert policy.wait_before_retry(1, TransientFailure("x", retry_after=2)) == 2
    assert policy.wait_before_retry(1, TransientFailure("x", retry_after=10)) is None


class BrokenProvider:
    """A provider with a bug of ours in it: its `complete` raises a KeyError, not a provider failure."""

    name, default_model, fallback_models = "broken", "broken-1", []

    def complete(self, request, model):
        return {}["missing"]

    def stream(self, request, model):
        yield {}["missing"]


@pytest.mark.parametrize("mode", ["complete", "stream"])
def test_a_bug_is_raised_never_answered_by_another_provider(make_gateway, fake_anthropic, mode):
    gateway, registry = make_gateway(anthropic=fake_anthropic)
    routes = [Route(BrokenProvider(), "broken-1"), *(replace(r, tier=r.tier + 1) for r in registry.plan("anthropic"))]
    with pytest.raises(KeyError):
        if mode == "complete":
            gateway.complete(QUESTION, routes)
        else:
            list(gateway.stream(QUESTION, routes))
    assert fake_anthropic.requests == []


def test_the_retry_budget_bounds_upstream_calls(make_gateway, fake_openai, fake_anthropic, sleeps):
    gateway, registry = make_gateway(retries=5, openai=fake_openai, anthropic=fake_anthropic)
    gateway.policy = RetryPolicy(5, 0.01, 5.0, budget=30.0, max_attempts=3)
    fake_openai.default_reply = Reply(status=500)
    fake_anthropic.default_reply = Reply(status=500)
    with pytest.raises(UpstreamError):
        gateway.complete(QUESTION, registry.plan("openai"))
    assert len(fake_openai.requests) + len(fake_anthropic.requests) == 3
    assert fake_anthropic.requests  # the next provider is reached before the first one's retries
    gateway.policy = RetryPolicy(5, 0.01, 5.0, budget=0.5, max_attempts=10)
    fake_openai.default_reply = Reply(status=429, retry_after=1)
    fake_anthropic.default_reply = Reply(status=429, retry_after=2)
    with pytest.raises(RateLimited) as caught:
        gateway.complete(QUESTION, registry.plan("openai"))
    assert caught.value.headers["Retry-After"] == "1"
    assert not any(wait >= 0.5 for wait in sleeps)  # no wait that outlasts the budget
