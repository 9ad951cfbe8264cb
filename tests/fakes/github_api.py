"""Fake of GitHub's REST API for gists (and `GET /user`, `GET /rate_limit`), on loopback.

It keeps gists in memory and answers as api.github.com does: JSON bodies with `message` and
`documentation_url` on errors, `201` + `Location` on create, `204` on delete, `Link` pagination,
`X-RateLimit-*` headers on every answer, 401 "Bad credentials" for a wrong token, 404, 422
"Validation Failed" with `errors`. Switches script the hard cases:

- ``set_quota(remaining, reset_in)``: the primary rate limit; at 0 every request is a 403 with
  `X-RateLimit-Remaining: 0` until the reset time (on the fake's clock, see ``advance``) passes;
- ``secondary_limit(times, retry_after, status)``: the next requests get GitHub's secondary-limit
  403 (or 429) with `Retry-After` (or without it, when ``retry_after`` is None);
- ``fail_next(times, status, retry_after)``: the next requests get a 5xx; ``hang_next(times, seconds)`` answers
  nothing for a while, then drops the connection;
- ``advance(seconds)``: moves the fake's clock, so a client's rate-limit wait can pass instantly.

Run it by hand: ``python -m tests.fakes.github_api --port 8004`` (prints the URL and the token).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
import uuid
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from .server import FakeServer, Handler, RecordedRequest, run_until_interrupted

DEFAULT_TOKEN = "ghp_fakeGitHubToken0123456789abcdefABCD"
DOCS = "https://docs.github.com/rest"
QUOTA = 5000


class GitHubShapes(FakeServer):
    """What every fake GitHub API shares: token auth and GitHub's error bodies and headers."""

    def is_public(self, request: RecordedRequest) -> bool:
        """Requests that need no token (none, for the API itself)."""
        return False

    def auth_error(self, request: RecordedRequest) -> tuple[int, str] | None:
        if self.is_public(request):
            return None
        header = request.headers.get("authorization", "")
        if not header:
            return 401, "Requires authentication"
        scheme, _, token = header.partition(" ")
        if scheme.lower() in ("bearer", "token") and token == self.api_key:
            return None
        return 401, "Bad credentials"

    def error_body(self, status: int, message: str, reply: Any = None) -> dict:
        return {"message": message, "documentation_url": DOCS, "status": str(status)}

    def reject(self, handler: Handler, status: int, message: str, reply: Any = None,
               headers: dict[str, str] | None = None, errors: list | None = None) -> None:
        body = self.error_body(status, message)
        if errors is not None:
            body["errors"] = errors
        handler.send_json(status, body, {**self._headers(), **(headers or {})})

    def _headers(self) -> dict[str, str]:
        raise NotImplementedError


class FakeGitHub(GitHubShapes):
    def __init__(self, *, token: str = DEFAULT_TOKEN, login: str = "octocat", host: str = "127.0.0.1",
                 port: int = 0) -> None:
        super().__init__(api_key=token, host=host, port=port)
        self.login = login
        self.gists: dict[str, dict[str, Any]] = {}
        self.clock_offset = 0.0
        self.quota_remaining = QUOTA
        self.quota_reset = 0.0
        self._secondary: list[tuple[int, float | None]] = []
        self._faults: list[tuple[int, str | None, float | None]] = []
        self._hangs: list[float] = []
        self._sequence = 0

    # -- switches -----------------------------------------------------------------------------

    def now(self) -> float:
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.clock_offset += seconds

    def set_quota(self, remaining: int, reset_in: float = 3600) -> None:
        with self._lock:
            self.quota_remaining = remaining
            self.quota_reset = self.now() + reset_in

    def secondary_limit(self, times: int = 1, retry_after: float | None = 1, status: int = 403) -> None:
        with self._lock:
            self._secondary.extend([(status, retry_after)] * times)

    def fail_next(self, times: int = 1, status: int = 502, message: str | None = None,
                  retry_after: float | None = None) -> None:
        """The next ``times`` requests answer ``status`` (a 5xx fault, or e.g. a 403 with ``message``),
        with ``Retry-After`` when given."""
        with self._lock:
            self._faults.extend([(status, message, retry_after)] * times)

    def hang_next(self, times: int = 1, seconds: float = 5) -> None:
        with self._lock:
            self._hangs.extend([seconds] * times)

    def add_gist(self, files: dict[str, str], description: str = "", public: bool = False,
                 created_at: str | None = None) -> dict[str, Any]:
        """A gist put straight into the store (for list and filter tests); returns its full JSON."""
        with self._lock:
            gist = self._new_gist(description, public, {n: {"content": c} for n, c in files.items()})
            if created_at:
                gist["created_at"] = gist["updated_at"] = created_at
            return self._full(gist)

    @property
    def writes(self) -> list[RecordedRequest]:
        """Every request that could change something (POST, PATCH, PUT, DELETE)."""
        return [r for r in self.requests if r.method != "GET"]

    # -- FakeServer hooks -----------------------------------------------------------------------


    def route(self, handler: Handler, request: RecordedRequest) -> None:
        if self._scripted_failure(handler, request):
            return
        parts = [p for p in request.path.split("/") if p]
        method = request.method
        if parts == ["rate_limit"] and method == "GET":
            return handler.send_json(200, self._rate_limit_body(), self._headers())
        if not self._spend_quota(handler):
            return
        if parts == ["user"] and method == "GET":
            return handler.send_json(200, self._owner(), self._headers())
        if parts == ["gists"] and method == "GET":
            return self._list(handler, request)
        if parts == ["gists"] and method == "POST":
            return self._create(handler, request)
        if len(parts) == 2 and parts[0] == "gists":
            action = {"GET": self._get, "PATCH": self._update, "DELETE": self._delete}.get(method)
            if action:
                return action(handler, request, parts[1])
        self.reject(handler, 404, "Not Found")

    # -- scripted failures and rate limits ---------------------------------------------------------

    def _scripted_failure(self, handler: Handler, request: RecordedRequest) -> bool:
        with self._lock:
            hang = self._hangs.pop(0) if self._hangs else None
            fault = self._faults.pop(0) if self._faults and hang is None else None
            secondary = self._secondary.pop(0) if self._secondary and hang is None and fault is None else None
        if hang is not None:
            self._stopping.wait(hang)
            handler.drop()
        elif fault is not None:
            status, message, retry_after = fault
            default = {502: "Server Error", 503: "Service Unavailable"}.get(status, "Internal Server Error")
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            self.reject(handler, status, message or default, headers=headers)
        elif secondary is not None:
            status, retry_after = secondary
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            self.reject(handler, status, "You have exceeded a secondary rate limit. Please wait a few minutes "
                                         "before you try again.", headers=headers)
        return hang is not None or fault is not None or secondary is not None

    def _spend_quota(self, handler: Handler) -> bool:
        with self._lock:
            if self.quota_reset and self.now() >= self.quota_reset:
                self.quota_remaining, self.quota_reset = QUOTA, 0.0
            if self.quota_remaining <= 0:
                limited = True
            else:
                limited = False
                self.quota_remaining -= 1
                if self.quota_remaining == 0 and not self.quota_reset:
                    self.quota_reset = self.now() + 3600
        if limited:
            self.reject(handler, 403, "API rate limit exceeded for user ID 1. If you reach out to GitHub Support "
                                      "for help, please include the request ID.")
        return not limited

    def _headers(self) -> dict[str, str]:
        with self._lock:
            reset = self.quota_reset or self.now() + 3600
            return {"X-RateLimit-Limit": str(QUOTA), "X-RateLimit-Remaining": str(max(0, self.quota_remaining)),
                    "X-RateLimit-Used": str(QUOTA - max(0, self.quota_remaining)),
                    "X-RateLimit-Reset": str(int(reset)), "X-RateLimit-Resource": "core",
                    "X-GitHub-Media-Type": "github.v3; format=json",
                    "X-GitHub-Request-Id": uuid.uuid4().hex[:16].upper()}

    def _rate_limit_body(self) -> dict[str, Any]:
        headers = self._headers()
        core = {"limit": QUOTA, "remaining": int(headers["X-RateLimit-Remaining"]),
                "reset": int(headers["X-RateLimit-Reset"]), "used": int(headers["X-RateLimit-Used"])}
        return {"resources": {"core": core}, "rate": core}

    # -- gists ----------------------------------------------------------------------------------

    def _create(self, handler: Handler, request: RecordedRequest) -> None:
        body = request.json
        files = body.get("files")
        if not isinstance(files, dict) or not files:
            return self._invalid(handler, "missing_field", "files")
        if any(not isinstance(f, dict) or not str(f.get("content") or "").strip() for f in files.values()):
            return self._invalid(handler, "missing_field", "files")
        with self._lock:
            gist = self._new_gist(str(body.get("description") or ""), bool(body.get("public")), files)
            full = self._full(gist)
        handler.send_json(201, full, {**self._headers(), "Location": full["url"]})

    def _get(self, handler: Handler, request: RecordedRequest, gist_id: str) -> None:
        with self._lock:
            gist = self.gists.get(gist_id)
            full = self._full(gist) if gist else None
        if full is None:
            return self.reject(handler, 404, "Not Found")
        handler.send_json(200, full, self._headers())

    def _update(self, handler: Handler, request: RecordedRequest, gist_id: str) -> None:
        body = request.json if isinstance(request.json, dict) else None
        if body is None:
            return self.reject(handler, 400, "Problems parsing JSON")
        with self._lock:
            gist = self.gists.get(gist_id)
            if gist is None:
                problem: Any = 404
            else:
                problem = self._apply_update(gist, body)
            full = self._full(gist) if gist is not None and problem is None else None
        if problem == 404:
            return self.reject(handler, 404, "Not Found")
        if problem is not None:
            return self._invalid(handler, *problem)
        handler.send_json(200, full, self._headers())

    def _apply_update(self, gist: dict[str, Any], body: dict[str, Any]) -> tuple[str, str] | None:
        """Apply a PATCH body to a copy, then commit it; (code, field) when GitHub would refuse it."""
        files = {name: dict(f) for name, f in gist["files"].items()}
        changes = body.get("files") or {}
        if not isinstance(changes, dict):
            return "invalid", "files"
        for name, change in changes.items():
            if change is None:
                if name not in files:
                    return "missing", "files"
                del files[name]
                continue
            if not isinstance(change, dict):
                return "invalid", "files"
            current = files.pop(name, None)
            content = change.get("content", current["content"] if current else None)
            if content is None or not str(content).strip():
                return "missing_field", "files"
            new_name = change.get("filename") or name
            if new_name in files:
                return "already_exists", "files"
            files[new_name] = {"content": content}
        if not files:
            return "missing_field", "files"
        if "description" in body and body["description"] is not None:
            gist["description"] = str(body["description"])
        gist["files"] = files
        gist["updated_at"] = self._timestamp()
        gist["history"].insert(0, self._revision(gist))
        return None

    def _delete(self, handler: Handler, request: RecordedRequest, gist_id: str) -> None:
        with self._lock:
            found = self.gists.pop(gist_id, None) is not None
        if not found:
            return self.reject(handler, 404, "Not Found")
        handler.send_response(204)
        for name, value in self._headers().items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def _list(self, handler: Handler, request: RecordedRequest) -> None:
        query = request.query
        try:
            per_page = min(100, max(1, int(query.get("per_page", 30))))
            page = max(1, int(query.get("page", 1)))
        except ValueError:
            return self._invalid(handler, "invalid", "per_page")
        since = _parse_time(query["since"]) if query.get("since") else None
        if query.get("since") and since is None:
            return self.reject(handler, 422, "Invalid value for `since`", errors=[
                {"resource": "Gist", "field": "since", "code": "invalid"}])
        with self._lock:
            gists = sorted(self.gists.values(), key=lambda g: (g["created_at"], g["sequence"]), reverse=True)
            if since is not None:
                gists = [g for g in gists if _parse_time(g["updated_at"]) >= since]
            chosen = [self._summary(g) for g in gists[(page - 1) * per_page: page * per_page]]
            pages = max(1, -(-len(gists) // per_page))
        headers = self._headers()
        link = self._link(request, page, pages)
        if link:
            headers["Link"] = link
        handler.send_json(200, chosen, headers)

    def _link(self, request: RecordedRequest, page: int, pages: int) -> str:
        def url(number: int) -> str:
            return f"{self.url}{request.path}?{urlencode({**request.query, 'page': number})}"

        relations = []
        if page < pages:
            relations += [f'<{url(page + 1)}>; rel="next"', f'<{url(pages)}>; rel="last"']
        if page > 1:
            relations = [f'<{url(page - 1)}>; rel="prev"', f'<{url(1)}>; rel="first"', *relations]
        return ", ".join(relations)

    def _invalid(self, handler: Handler, code: str, field: str) -> None:
        self.reject(handler, 422, "Validation Failed", errors=[{"resource": "Gist", "code": code, "field": field}])

    # -- representations (callers hold the lock) ---------------------------------------------------

    def _new_gist(self, description: str, public: bool, files: dict[str, dict]) -> dict[str, Any]:
        self._sequence += 1
        now = self._timestamp()
        gist = {"id": uuid.uuid4().hex, "description": description, "public": public, "created_at": now,
                "updated_at": now, "sequence": self._sequence,
                "files": {name: {"content": str(f["content"])} for name, f in files.items()}, "history": []}
        gist["history"].append(self._revision(gist))
        self.gists[gist["id"]] = gist
        return gist

    def _revision(self, gist: dict[str, Any]) -> dict[str, Any]:
        version = hashlib.sha1(f"{gist['id']}{gist['updated_at']}{len(gist['history'])}".encode()).hexdigest()
        return {"user": self._owner(), "version": version, "committed_at": gist["updated_at"],
                "change_status": {"total": 1, "additions": 1, "deletions": 0},
                "url": f"{self.url}/gists/{gist['id']}/{version}"}

    def _owner(self) -> dict[str, Any]:
        return {"login": self.login, "id": 1, "type": "User", "site_admin": False,
                "url": f"{self.url}/users/{self.login}", "html_url": f"https://github.com/{self.login}"}

    def _files(self, gist: dict[str, Any], with_content: bool) -> dict[str, Any]:
        files = {}
        for name, file in gist["files"].items():
            entry = {"filename": name, "type": "text/plain", "language": _language(name),
                     "raw_url": f"https://gist.githubusercontent.com/{self.login}/{gist['id']}/raw/{name}",
                     "size": len(file["content"].encode())}
            if with_content:
                entry.update(truncated=False, content=file["content"])
            files[name] = entry
        return files

    def _summary(self, gist: dict[str, Any]) -> dict[str, Any]:
        return {"url": f"{self.url}/gists/{gist['id']}", "forks_url": f"{self.url}/gists/{gist['id']}/forks",
                "commits_url": f"{self.url}/gists/{gist['id']}/commits", "id": gist["id"],
                "node_id": f"G_{gist['id'][:12]}", "git_pull_url": f"https://gist.github.com/{gist['id']}.git",
                "git_push_url": f"https://gist.github.com/{gist['id']}.git",
                "html_url": f"https://gist.github.com/{gist['id']}", "files": self._files(gist, False),
                "public": gist["public"], "created_at": gist["created_at"], "updated_at": gist["updated_at"],
                "description": gist["description"], "comments": 0, "user": None,
                "comments_url": f"{self.url}/gists/{gist['id']}/comments", "owner": self._owner(),
                "truncated": False}

    def _full(self, gist: dict[str, Any]) -> dict[str, Any]:
        return {**self._summary(gist), "files": self._files(gist, True), "forks": [],
                "history": list(gist["history"])}

    def _timestamp(self) -> str:
        return datetime.fromtimestamp(self.now(), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _language(filename: str) -> str | None:
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    return {"py": "Python", "md": "Markdown", "js": "JavaScript", "json": "JSON", "txt": "Text",
            "html": "HTML", "sh": "Shell"}.get(extension)


def serve_from_command_line(fake_class: type[GitHubShapes], prog: str, default_token: str, default_login: str,
                            argv: list[str] | None = None) -> None:
    """Run a GitHub fake until interrupted, printing the settings that point the server at it."""
    parser = argparse.ArgumentParser(prog=prog, description=sys.modules[fake_class.__module__].__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--token", default=default_token, help="the token requests must carry")
    parser.add_argument("--login", default=default_login, help="the token owner's login")
    args = parser.parse_args(argv)
    fake = fake_class(token=args.token, login=args.login, host=args.host, port=args.port).start()
    run_until_interrupted([fake], [f"GITHUB_API_URL={fake.url}", f"GITHUB_TOKEN={args.token}"])


def main(argv: list[str] | None = None) -> None:
    serve_from_command_line(FakeGitHub, "python -m tests.fakes.github_api", DEFAULT_TOKEN, "octocat", argv)


if __name__ == "__main__":
    main()
