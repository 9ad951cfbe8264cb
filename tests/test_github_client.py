"""The GitHub client against the fake GitHub: headers, errors, retries, rate limits, pagination."""
from __future__ import annotations

import logging
import socket

import pytest

from app.core.errors import (
    BadRequest,
    Forbidden,
    NotConfigured,
    NotFound,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from app.integrations.github import GitHubClient, client_from_config, require_client
from tests.fakes.github_api import DEFAULT_TOKEN, FakeGitHub

FILES = {"files": {"a.txt": {"content": "hello"}}}


@pytest.fixture
def fake_github():
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def github(fake_github, sleeps):
    """A client whose sleeps are recorded and move the fake's clock instead of waiting."""
    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        fake_github.advance(seconds)

    client = GitHubClient(DEFAULT_TOKEN, fake_github.url, timeout=(2, 2), sleep=sleep, max_rate_wait=30)
    yield client
    client.close()


def test_sends_githubs_headers_and_the_token_as_bearer(github, fake_github):
    assert github.get("/user")["login"] == "octocat"
    headers = fake_github.requests[-1].headers
    assert headers["accept"] == "application/vnd.github+json"
    assert headers["x-github-api-version"] == "2022-11-28"
    assert headers["user-agent"].startswith("aiserver/")
    assert headers["authorization"] == f"Bearer {DEFAULT_TOKEN}"


def test_json_helpers_create_update_get_and_delete(github, fake_github):
    gist = github.post("/gists", {"description": "d", "public": False, **FILES})
    assert github.patch(f"/gists/{gist['id']}", {"description": "e"})["description"] == "e"
    assert github.get(f"/gists/{gist['id']}")["files"]["a.txt"]["content"] == "hello"
    assert github.delete(f"/gists/{gist['id']}") is None
    assert fake_github.gists == {}


def test_a_wrong_token_is_a_502_that_never_shows_the_token(fake_github, caplog):
    caplog.set_level(logging.DEBUG, logger="aiserver")
    secret = "ghp_wrongTokenThatMustNotLeak000000000000"
    with pytest.raises(UpstreamError) as raised:
        GitHubClient(secret, fake_github.url, sleep=lambda s: None).get("/gists")
    assert raised.value.status == 502
    assert "GitHub rejected the token" in raised.value.message
    assert secret not in str(raised.value.to_dict()) and secret not in caplog.text
    assert len(fake_github.requests) == 1  # a 401 is not retried


def test_not_found_stays_404(github):
    with pytest.raises(NotFound) as raised:
        github.get("/gists/0123456789abcdef0123456789abcdef")
    assert raised.value.status == 404


def test_validation_failed_is_a_400_with_githubs_message_and_errors(github):
    with pytest.raises(BadRequest) as raised:
        github.post("/gists", {"files": {"a.txt": {"content": "  "}}})
    error = raised.value
    assert error.status == 400 and error.message.startswith("GitHub: Validation Failed")
    assert error.details["github_errors"] == [{"resource": "Gist", "code": "missing_field", "field": "files"}]


def test_a_403_that_is_no_rate_limit_is_forbidden_with_githubs_message(github, fake_github, sleeps):
    fake_github.fail_next(status=403, message="Resource not accessible by personal access token")
    with pytest.raises(Forbidden) as raised:
        github.get("/gists")
    assert raised.value.status == 403 and "Resource not accessible" in raised.value.message
    assert sleeps == []


def test_5xx_is_retried_with_growing_backoff(github, fake_github, sleeps):
    fake_github.fail_next(times=2, status=502)
    assert github.get("/gists") == []
    assert len(fake_github.requests) == 3
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0]


def test_5xx_after_every_retry_is_a_502(github, fake_github, sleeps):
    fake_github.fail_next(times=10, status=500)
    with pytest.raises(UpstreamError) as raised:
        github.get("/gists")
    assert raised.value.status == 502 and "500" in raised.value.message
    assert len(fake_github.requests) == 4 and len(sleeps) == 3


def test_a_post_is_not_retried_after_a_5xx_it_may_have_carried_out(github, fake_github):
    fake_github.fail_next(times=1, status=502)
    with pytest.raises(UpstreamError):
        github.post("/gists", FILES)
    assert len(fake_github.requests) == 1
    fake_github.fail_next(times=1, status=502)
    assert github.request("POST", "/gists", json=FILES, idempotent=True).status_code == 201


def test_a_patch_is_not_retried_after_a_5xx_either(github, fake_github):
    gist = github.post("/gists", FILES)
    fake_github.fail_next(times=1, status=503)
    with pytest.raises(UpstreamError):
        github.patch(f"/gists/{gist['id']}", {"description": "e"})
    assert [r.method for r in fake_github.requests] == ["POST", "PATCH"]


def test_a_5xx_with_retry_after_waits_as_asked(github, fake_github, sleeps):
    fake_github.fail_next(times=2, status=503, retry_after=4)
    assert github.get("/gists") == []
    assert sleeps == [4, 4] and len(fake_github.requests) == 3


def test_connection_refused_is_retried_then_503(sleeps):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = GitHubClient("ghp_x" * 8, f"http://127.0.0.1:{port}", sleep=sleeps.append, max_retries=2)
    with pytest.raises(UpstreamUnavailable) as raised:
        client.post("/gists", FILES)  # never sent, so even a POST is retried
    assert raised.value.status == 503 and len(sleeps) == 2


def test_a_silent_github_is_a_504(fake_github, sleeps):
    fake_github.hang_next(times=2, seconds=2)
    client = GitHubClient(DEFAULT_TOKEN, fake_github.url, timeout=(1, 0.2), sleep=sleeps.append, max_retries=1)
    with pytest.raises(UpstreamTimeout) as raised:
        client.get("/gists")
    assert raised.value.status == 504 and len(sleeps) == 1


def test_primary_rate_limit_waits_for_the_reset_when_it_is_near(github, fake_github, sleeps):
    fake_github.set_quota(0, reset_in=5)
    assert github.get("/gists") == []
    assert len(sleeps) == 1 and 5 <= sleeps[0] <= 7
    assert len(fake_github.requests) == 2


def test_primary_rate_limit_far_away_is_a_429_with_retry_after(github, fake_github, sleeps):
    fake_github.set_quota(0, reset_in=3600)
    with pytest.raises(RateLimited) as raised:
        github.get("/gists")
    error = raised.value
    assert error.status == 429 and 3600 <= int(error.headers["Retry-After"]) <= 3602
    assert "rate limit is exhausted" in error.message and sleeps == []
    with pytest.raises(RateLimited):  # the spent quota is remembered: nothing more is sent
        github.get("/gists")
    assert len(fake_github.requests) == 1


def test_a_spent_quota_seen_on_a_success_delays_the_next_request(github, fake_github, sleeps):
    fake_github.set_quota(1, reset_in=4)
    github.get("/gists")
    github.get("/gists")
    assert len(sleeps) == 1 and len(fake_github.requests) == 2


@pytest.mark.parametrize("status", [403, 429])
def test_secondary_rate_limit_honours_retry_after(github, fake_github, sleeps, status):
    fake_github.secondary_limit(times=1, retry_after=3, status=status)
    assert github.get("/gists") == []
    assert sleeps == [3]


def test_secondary_rate_limit_too_long_is_a_429(github, fake_github, sleeps):
    fake_github.secondary_limit(times=1, retry_after=120)
    with pytest.raises(RateLimited) as raised:
        github.get("/gists")
    assert raised.value.headers["Retry-After"] == "120" and "secondary" in raised.value.message
    fake_github.secondary_limit(times=1, retry_after=None)  # no header: GitHub asks for a minute
    with pytest.raises(RateLimited) as raised:
        github.get("/gists")
    assert raised.value.headers["Retry-After"] == "60" and sleeps == []


def test_page_returns_the_link_relations(github, fake_github):
    for number in range(3):
        fake_github.add_gist({f"f{number}.txt": "x"})
    items, links = github.page("/gists", {"per_page": 1, "page": 2})
    assert len(items) == 1
    assert set(links) == {"next", "last", "prev", "first"} and "page=3" in links["next"]


def test_the_token_is_only_sent_to_the_api_origin(github):
    with pytest.raises(ValueError):
        github.request("GET", "https://evil.example/gists")


def test_client_from_config_and_the_503_without_a_token(fake_github):
    assert client_from_config({"GITHUB_TOKEN": ""}) is None
    with pytest.raises(NotConfigured) as raised:
        require_client(None)
    assert raised.value.status == 503 and "GITHUB_TOKEN" in raised.value.message
    client = client_from_config({"GITHUB_TOKEN": DEFAULT_TOKEN, "GITHUB_API_URL": fake_github.url + "/"})
    assert client.get("/user")["login"] == "octocat"
    assert DEFAULT_TOKEN not in repr(client)
