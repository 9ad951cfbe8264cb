"""The GitHub REST client: one pooled `requests.Session` per process, GitHub's rate limits, retries
and one mapping from GitHub's answers to our typed errors.

`GitHubClient.request` is the only place a request leaves for GitHub. It

- sends the token as `Authorization: Bearer`, GitHub's media type and API version, a User-Agent;
- honours the primary rate limit (`X-RateLimit-Remaining: 0` until `X-RateLimit-Reset`, also
  before sending once a response said the quota is spent) and secondary limits (`Retry-After` on a
  403/429, or a 403/429 whose message says "rate limit", which GitHub asks to wait a minute for):
  it waits when the wait is at most `max_rate_wait` seconds, else raises `RateLimited` (429 with
  `Retry-After`);
- retries through urllib3's `Retry` on the session (`GitHubRetry`, `max_retries` times, exponential
  backoff with jitter, `Retry-After` honoured): connect failures for every method, and 500/502/503/
  504 answers and read failures only for methods that may be repeated (not POST or PATCH, which may
  have been carried out; `idempotent=True` allows them per call, for content-addressed git objects);
- maps failures: 401 -> `UpstreamError` 502 "GitHub rejected the token", 404 -> `NotFound`,
  422 -> `BadRequest` 400 with GitHub's own message and `errors`, other 403 -> `Forbidden` with
  GitHub's message, 5xx after the retries -> `UpstreamError` 502, connection failures ->
  `UpstreamUnavailable` 503, timeouts -> `UpstreamTimeout` 504.

The token lives only in the sessions' headers: it is never logged, never put in an error, and the
session sends it only to `api_url`'s origin (a full URL elsewhere is refused).
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import (
    ConnectTimeoutError,
    InvalidHeader,
    MaxRetryError,
    NewConnectionError,
    ReadTimeoutError,
)
from urllib3.util.retry import Retry

from app.core.errors import (
    APIError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from app.core.version import __version__

log = logging.getLogger("aiserver.github")

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
USER_AGENT = f"aiserver/{__version__} (+https://github.com)"
SECONDARY_DEFAULT_WAIT = 60.0  # GitHub: "wait at least one minute" when a secondary limit names no time
MAX_BACKOFF = 8.0
RETRIED_STATUSES = frozenset({500, 502, 503, 504})
RATE_LIMIT_WAITS = 3  # rate-limit waits within one request; more means someone else is spending the quota


class GitHubRetry(Retry):
    """urllib3's `Retry` whose waits go through the client's `sleep` (tests pass a fake clock) and are
    logged. Rate limits (403/429 with `Retry-After`) are left to the client, which knows GitHub's rules
    and how long a request may wait, so only `RETRIED_STATUSES` are retried here."""

    RETRY_AFTER_STATUS_CODES = frozenset()

    def __init__(self, *args: Any, pause: Callable[[float], None] = time.sleep, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.pause = pause

    def new(self, **kwargs: Any) -> GitHubRetry:
        return super().new(pause=self.pause, **kwargs)

    def sleep(self, response: Any = None) -> None:
        try:
            retry_after = self.get_retry_after(response) if response is not None else None
        except InvalidHeader:  # an unreadable Retry-After: back off as if there were none
            retry_after = None
        wait = self.get_backoff_time() if retry_after is None else retry_after
        last = self.history[-1]
        reason = last.error or f"GitHub answered {last.status}"
        log.warning("GitHub %s %s: %s; retry %d in %.2f s", last.method, urlsplit(last.url or "").path, reason,
                    len(self.history), wait)
        self.pause(wait)


class GitHubClient:
    """GitHub's REST API on one pooled session; see the module docstring for the rules it follows."""

    def __init__(self, token: str, api_url: str = DEFAULT_API_URL, *, timeout: Any = (5, 30), max_retries: int = 3,
                 sleep: Callable[[float], None] = time.sleep, max_rate_wait: float = 60, backoff: float = 0.5,
                 pool_size: int = 20):
        if not token:
            raise ValueError("GitHubClient needs a token")
        self.api_url = (api_url or DEFAULT_API_URL).rstrip("/")
        self.origin = _origin(self.api_url)
        self.timeout = timeout
        self.sleep = sleep
        self.max_rate_wait = max_rate_wait
        self.quota_reset_at = 0.0  # epoch seconds until which the primary ("core") quota is spent
        retry = GitHubRetry(total=max_retries, other=0, status_forcelist=RETRIED_STATUSES, backoff_factor=backoff,
                            backoff_max=MAX_BACKOFF, backoff_jitter=backoff, raise_on_status=False,
                            retry_after_max=math.ceil(max_rate_wait), pause=sleep)
        self.session = _session(token, retry, pool_size)
        self.idempotent_session = _session(token, retry.new(allowed_methods=None), pool_size)

    def __repr__(self) -> str:
        return f"GitHubClient({self.api_url!r})"

    def close(self) -> None:
        self.session.close()
        self.idempotent_session.close()

    # -- the JSON helpers ----------------------------------------------------------------------

    def get(self, path: str, **params: Any) -> Any:
        return _json(self.request("GET", path, params=params or None))

    def post(self, path: str, json: Any) -> Any:
        return _json(self.request("POST", path, json=json))

    def patch(self, path: str, json: Any) -> Any:
        return _json(self.request("PATCH", path, json=json))

    def delete(self, path: str) -> None:
        self.request("DELETE", path)

    def page(self, path: str, params: dict[str, Any] | None = None) -> tuple[list, dict[str, str]]:
        """One page of a list and its `Link` relations (`{"next": url, "last": url, ...}`).

        A list answer is returned as is; an object answer (search, installations) yields its
        `items` or its only list-valued field."""
        response = self.request("GET", path, params=params)
        return _items(_json(response)), {rel: link["url"] for rel, link in response.links.items() if "url" in link}

    # -- the one request -------------------------------------------------------------------------

    def request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                headers: dict[str, str] | None = None, idempotent: bool = False) -> requests.Response:
        """Send one request (retried by the session, waiting out rate limits); a 2xx/3xx response, else a
        typed APIError. `idempotent=True` lets a POST or PATCH be retried after it may have reached GitHub.

        `path` is "/gists/abc" or a full URL under `api_url` (a `Link` from GitHub)."""
        method = method.upper()
        url = self._url(path)
        label = f"{method} {urlsplit(url).path}"
        session = self.idempotent_session if idempotent else self.session
        for attempt in range(RATE_LIMIT_WAITS + 1):
            last = attempt == RATE_LIMIT_WAITS
            self._wait_for_quota(label, last)
            response = self._send(session, method, url, label, json=json, params=params, headers=headers)
            self._note_quota(response)
            wait = rate_limit_wait(response)
            if wait is None:
                break
            if last or wait > self.max_rate_wait:
                raise _rate_limited(response, wait)
            log.warning("GitHub rate limit on %s: waiting %.1f s", label, wait)
            self.sleep(wait)
            self.quota_reset_at = 0.0
        if response.status_code >= 400:
            raise github_error(response, label)
        return response

    def _send(self, session: requests.Session, method: str, url: str, label: str, **kwargs: Any) -> requests.Response:
        started = time.monotonic()
        try:
            response = session.request(method, url, timeout=self.timeout, allow_redirects=True, **kwargs)
        except requests.RequestException as exc:
            error = _connection_error(exc, self.api_url)
            log.warning("GitHub %s failed: %s", label, error.message)
            raise error from None
        log.debug("GitHub %s -> %s in %.0f ms", label, response.status_code, (time.monotonic() - started) * 1000)
        return response

    def _url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            if _origin(path) != self.origin:
                raise ValueError(f"refusing to send the GitHub token to {_origin(path)}")
            return path
        return f"{self.api_url}/{path.lstrip('/')}"

    def _note_quota(self, response: requests.Response) -> None:
        """Remember a spent primary quota, so the next request waits (or fails) without sending."""
        if response.headers.get("X-RateLimit-Resource", "core") != "core":
            return
        if response.headers.get("X-RateLimit-Remaining") == "0":
            self.quota_reset_at = _float(response.headers.get("X-RateLimit-Reset")) or time.time() + 60
        elif response.headers.get("X-RateLimit-Remaining"):
            self.quota_reset_at = 0.0

    def _wait_for_quota(self, label: str, last: bool) -> None:
        wait = self.quota_reset_at - time.time()
        if wait <= 0:
            return
        wait += 1  # GitHub's reset is in whole seconds
        if last or wait > self.max_rate_wait:
            raise RateLimited(f"GitHub's rate limit is exhausted; try again in {math.ceil(wait)} s.",
                              code="github_rate_limited", headers={"Retry-After": str(math.ceil(wait))},
                              details={"retry_after": math.ceil(wait)})
        log.warning("GitHub quota spent before %s: waiting %.1f s", label, wait)
        self.sleep(wait)
        self.quota_reset_at = 0.0


def rate_limit_wait(response: requests.Response) -> float | None:
    """Seconds GitHub asks us to wait, or None when `response` is not a rate limit.

    Secondary limits name `Retry-After`; the primary limit says `X-RateLimit-Remaining: 0` and when
    it resets; a 403/429 that only says "rate limit" in its message waits a minute, as GitHub asks."""
    status = response.status_code
    if status not in (403, 429):
        return None
    retry_after = _float(response.headers.get("Retry-After"))
    if retry_after is not None:
        return max(0.0, retry_after)
    if response.headers.get("X-RateLimit-Remaining") == "0":
        reset = _float(response.headers.get("X-RateLimit-Reset"))
        return max(0.0, reset - time.time()) + 1 if reset else SECONDARY_DEFAULT_WAIT
    if status == 429 or "rate limit" in _message(response).lower():
        return SECONDARY_DEFAULT_WAIT
    return None


def _rate_limited(response: requests.Response, wait: float) -> RateLimited:
    seconds = math.ceil(wait)
    primary = response.headers.get("X-RateLimit-Remaining") == "0" and "Retry-After" not in response.headers
    kind = "rate limit is exhausted" if primary else "secondary rate limit was hit"
    return RateLimited(f"GitHub's {kind}; try again in {seconds} s.", code="github_rate_limited",
                       headers={"Retry-After": str(seconds)}, details={"retry_after": seconds})


def github_error(response: requests.Response, label: str) -> APIError:
    """The typed error for a 4xx/5xx answer (rate limits are handled before this)."""
    status, message = response.status_code, _message(response)
    if status == 401:
        return UpstreamError("GitHub rejected the token (401): check GITHUB_TOKEN.", code="github_token_rejected")
    if status == 404:
        return NotFound(f"Not found on GitHub: {label}.", code="github_not_found")
    if status == 410:
        return NotFound(f"Gone on GitHub: {label}: {message}", status=410, code="github_gone")
    if status == 422:
        errors = _body(response).get("errors") or []
        return BadRequest(f"GitHub: {describe_validation(message, errors)}", code="github_validation_failed",
                          details={"github_message": message, "github_errors": errors})
    if status == 403:
        return Forbidden(f"GitHub refused {label}: {message}", code="github_forbidden")
    if status == 409:
        return Conflict(f"GitHub: {message}", code="github_conflict")
    if status >= 500:
        return UpstreamError(f"GitHub failed on {label}: {status} {message}", code="github_unavailable",
                             details={"github_status": status})
    return UpstreamError(f"GitHub refused {label}: {status} {message}", code="github_error",
                         details={"github_status": status})


def describe_validation(message: str, errors: list[Any]) -> str:
    """GitHub's 422 message with its `errors` spelled out ("Validation Failed: files missing_field")."""
    parts = []
    for error in errors if isinstance(errors, list) else []:
        if isinstance(error, str):
            parts.append(error)
        elif isinstance(error, dict):
            parts.append(error.get("message") or " ".join(
                str(error[key]) for key in ("resource", "field", "code") if error.get(key)))
    return f"{message}: {'; '.join(parts)}" if parts else message


def _connection_error(exc: requests.RequestException, api_url: str) -> APIError:
    where = _origin(api_url)
    if _is_timeout(exc):
        return UpstreamTimeout(f"GitHub at {where} did not answer in time.", code="github_timeout")
    return UpstreamUnavailable(f"Could not reach GitHub at {where}: {type(exc).__name__}.",
                               code="github_unreachable")


def _is_timeout(exc: requests.RequestException) -> bool:
    """Whether GitHub did not answer in time. Once urllib3's retries are spent, requests reports a timeout
    as a ConnectionError around a MaxRetryError; a refused connection (NewConnectionError, which urllib3
    derives from ConnectTimeoutError) is no timeout."""
    if isinstance(exc, requests.Timeout):
        return True
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, (ReadTimeoutError, ConnectTimeoutError)) and not isinstance(reason, NewConnectionError)


def _session(token: str, retry: Retry, pool_size: int) -> requests.Session:
    """A pooled session carrying GitHub's headers and the token, retrying by `retry`."""
    session = requests.Session()
    session.headers.update({"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION,
                            "User-Agent": USER_AGENT, "Authorization": f"Bearer {token}"})
    session.trust_env = False  # no ~/.netrc credentials or proxies picked up behind our back
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=retry)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _origin(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}"


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def _body(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _message(response: requests.Response) -> str:
    return str(_body(response).get("message") or response.reason or response.status_code)


def _json(response: requests.Response) -> Any:
    if response.status_code == 204 or not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        raise UpstreamError("GitHub answered with invalid JSON.", code="github_invalid_json") from None


def _items(body: Any) -> list:
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        if isinstance(body.get("items"), list):
            return body["items"]
        lists = [value for value in body.values() if isinstance(value, list)]
        if len(lists) == 1:
            return lists[0]
    raise UpstreamError("GitHub answered a list request without a list.", code="github_invalid_json")
