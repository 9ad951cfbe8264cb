"""Fake of the GitHub endpoints deployments use: repos, the Git Data API, contents, Pages, and the
Pages site itself, on loopback.

It keeps repositories in memory and answers as api.github.com does: `message` and
`documentation_url` on errors, 401 "Bad credentials", 404 "Not Found", 409 "Git Repository is
empty." for git data on a repo without commits, 422 "Validation Failed" (name taken, malformed tree
path, non-fast-forward ref update), 409 when Pages is already enabled. Blob shas are real git blob
hashes; tree and commit shas are stable hashes of their content.

Pages are real too: enabling Pages (or pushing to its branch afterwards) starts a build that takes
``build_delay`` seconds; `GET .../pages/builds/latest` reports it, and the site is served by this
same server at ``{url}/pages/{owner}/{repo}/`` from the last built commit (404 before the first
build is done), so a client can check that the URL answers 200.

Scripted faults: ``fail(method, pattern, status, times)`` answers matching requests with an error
(``times=None``: every time); ``delay(method, pattern, seconds, times)`` holds matching requests
before answering them. ``pattern`` is a regular expression searched in the path.

Run it by hand: ``python -m tests.fakes.github_repos_api --port 8010`` (prints the URL and token).
"""

from __future__ import annotations

import base64
import hashlib
import json
import mimetypes
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .github_api import GitHubShapes, serve_from_command_line
from .server import Handler, RecordedRequest

DEFAULT_TOKEN = "ghp_fakeReposToken0123456789abcdefABCDEF"
MALFORMED = re.compile(r"(^/|//|(^|/)\.\.?(/|$)|/$|\\)")


@dataclass
class Build:
    commit: str
    started: float
    ready_at: float


@dataclass
class FakeRepo:
    id: int
    owner: str
    name: str
    description: str
    homepage: str
    owner_type: str
    created_at: str
    default_branch: str = "main"
    refs: dict[str, str] = field(default_factory=dict)  # "heads/main" -> commit sha
    pages_branch: str | None = None
    pages_path: str = "/"
    builds: list[Build] = field(default_factory=list)


@dataclass
class Fault:
    method: str
    pattern: re.Pattern
    status: int
    times: int | None
    message: str | None
    delay: float


class FakeGitHubRepos(GitHubShapes):
    def __init__(self, *, token: str = DEFAULT_TOKEN, login: str = "octo-fake", orgs: tuple[str, ...] = ("fake-org",),
                 build_delay: float = 0.2, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(api_key=token, host=host, port=port)
        self.login = login
        self.orgs = set(orgs)
        self.build_delay = build_delay
        self.repos: dict[tuple[str, str], FakeRepo] = {}
        self.blobs: dict[str, bytes] = {}
        self.trees: dict[str, dict[str, tuple[str, str]]] = {}  # sha -> {path: (mode, blob sha)}
        self.commits: dict[str, dict[str, Any]] = {}
        self._faults: list[Fault] = []
        self._counter = 0

    # -- scripting and inspection -----------------------------------------------------------------

    def fail(self, method: str, pattern: str, status: int = 500, times: int | None = 1,
             message: str | None = None) -> None:
        with self._lock:
            self._faults.append(Fault(method.upper(), re.compile(pattern), status, times, message, 0.0))

    def delay(self, method: str, pattern: str, seconds: float, times: int | None = 1) -> None:
        with self._lock:
            self._faults.append(Fault(method.upper(), re.compile(pattern), 0, times, None, seconds))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def repo(self, owner: str, name: str) -> FakeRepo | None:
        with self._lock:
            return self.repos.get((owner.lower(), name.lower()))

    def files(self, owner: str, name: str, ref: str | None = None) -> dict[str, bytes]:
        """The files at the tip of `ref` (default: the default branch)."""
        with self._lock:
            repo = self.repos[(owner.lower(), name.lower())]
            sha = repo.refs.get(f"heads/{ref or repo.default_branch}")
            if sha is None:
                return {}
            tree = self.trees[self.commits[sha]["tree"]]
            return {path: self.blobs[blob] for path, (_, blob) in tree.items()}

    def history(self, owner: str, name: str) -> list[str]:
        """Commit shas of the default branch, newest first (first parents)."""
        with self._lock:
            repo = self.repos[(owner.lower(), name.lower())]
            sha, shas = repo.refs.get(f"heads/{repo.default_branch}"), []
            while sha:
                shas.append(sha)
                parents = self.commits[sha]["parents"]
                sha = parents[0] if parents else None
            return shas

    def commit_message(self, sha: str) -> str:
        with self._lock:
            return self.commits[sha]["message"]

    # -- FakeServer hooks -------------------------------------------------------------------------

    def is_public(self, request: RecordedRequest) -> bool:
        """The Pages site and repo pages need no token."""
        return request.path.startswith("/pages/") or request.method == "GET" and _is_html_path(request.path)

    def route(self, handler: Handler, request: RecordedRequest) -> None:
        if self._scripted(handler, request):
            return
        parts = [p for p in request.path.split("/") if p]
        method = request.method
        try:
            if parts and parts[0] == "pages":
                return self._serve_site(handler, parts[1:], request.path.endswith("/"))
            if parts == ["user"] and method == "GET":
                return self._ok(handler, self._user())
            if parts == ["user", "repos"] and method == "POST":
                return self._create_repo(handler, request, self.login, "User")
            if len(parts) == 3 and parts[0] == "orgs" and parts[2] == "repos" and method == "POST":
                if parts[1] not in self.orgs:
                    return self.reject(handler, 404, "Not Found")
                return self._create_repo(handler, request, parts[1], "Organization")
            if len(parts) >= 3 and parts[0] == "repos":
                return self._repo_route(handler, request, parts[1], parts[2], parts[3:])
            if len(parts) == 2 and method == "GET" and self.repo(parts[0], parts[1]):
                return self._repo_page(handler, self.repo(parts[0], parts[1]))
        except _Reject as reject:
            return self.reject(handler, reject.status, reject.message, errors=reject.errors)
        self.reject(handler, 404, "Not Found")

    # -- routing ------------------------------------------------------------------------------------

    def _repo_route(self, handler: Handler, request: RecordedRequest, owner: str, name: str, rest: list[str]) -> None:
        repo = self.repo(owner, name)
        if repo is None:
            raise _Reject(404, "Not Found")
        method, body = request.method, request.json if isinstance(request.json, dict) else {}
        if not rest and method == "GET":
            return self._ok(handler, self._repo_json(repo))
        if rest[:1] == ["git"]:
            return self._git(handler, request, repo, rest[1:], body)
        if rest[:1] == ["contents"] and method == "GET":
            return self._ok(handler, self._contents(repo, "/".join(rest[1:]), request.query.get("ref")))
        if rest == ["pages"]:
            return self._pages(handler, method, repo, body)
        if rest == ["pages", "builds", "latest"] and method == "GET":
            return self._ok(handler, self._build_json(repo, self._latest_build(repo)))
        if rest == ["pages", "builds"] and method == "POST":
            self._start_build(repo)
            return self._ok(handler, {"url": f"{self.url}/repos/{repo.owner}/{repo.name}/pages/builds/latest",
                                      "status": "queued"}, 201)
        raise _Reject(404, "Not Found")

    def _git(self, handler: Handler, request: RecordedRequest, repo: FakeRepo, rest: list[str], body: dict) -> None:
        method = request.method
        if method in ("POST", "PATCH") and rest[:1] in (["blobs"], ["trees"], ["commits"]) and not repo.refs:
            raise _Reject(409, "Git Repository is empty.")
        if rest == ["blobs"] and method == "POST":
            return self._ok(handler, self._create_blob(repo, body), 201)
        if len(rest) == 2 and rest[0] == "blobs" and method == "GET":
            return self._ok(handler, self._blob_json(repo, rest[1]))
        if rest == ["trees"] and method == "POST":
            return self._ok(handler, self._create_tree(repo, body), 201)
        if len(rest) >= 2 and rest[0] == "trees" and method == "GET":
            return self._ok(handler, self._tree_json(repo, "/".join(rest[1:]), request.query.get("recursive")))
        if rest == ["commits"] and method == "POST":
            return self._ok(handler, self._create_commit(repo, body), 201)
        if len(rest) == 2 and rest[0] == "commits" and method == "GET":
            return self._ok(handler, self._commit_json(repo, rest[1]))
        if rest == ["refs"] and method == "POST":
            return self._ok(handler, self._create_ref(repo, body), 201)
        if len(rest) >= 3 and rest[0] in ("ref", "refs") and method == "GET":
            return self._ok(handler, self._ref_json(repo, "/".join(rest[1:])))
        if len(rest) >= 3 and rest[0] == "refs" and method == "PATCH":
            return self._ok(handler, self._update_ref(repo, "/".join(rest[1:]), body))
        raise _Reject(404, "Not Found")

    # -- repositories -------------------------------------------------------------------------------

    def _create_repo(self, handler: Handler, request: RecordedRequest, owner: str, owner_type: str) -> None:
        body = request.json
        name = str(body.get("name") or "")
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", name):
            raise _Reject(422, "Repository creation failed.", [{"resource": "Repository", "code": "custom",
                                                                 "field": "name", "message": "name is invalid"}])
        with self._lock:
            if (owner.lower(), name.lower()) in self.repos:
                raise _Reject(422, "Repository creation failed.", [{
                    "resource": "Repository", "code": "custom", "field": "name",
                    "message": "name already exists on this account"}])
            self._counter += 1
            repo = FakeRepo(self._counter, owner, name, str(body.get("description") or ""),
                            str(body.get("homepage") or ""), owner_type, _now())
            self.repos[(owner.lower(), name.lower())] = repo
            if body.get("auto_init"):
                readme = f"# {name}\n\n{repo.description}\n".encode()
                tree = self._store_tree({"README.md": ("100644", self._store_blob(readme))})
                repo.refs["heads/main"] = self._store_commit(tree, [], "Initial commit")
        self._ok(handler, self._repo_json(repo), 201)

    def _repo_json(self, repo: FakeRepo) -> dict[str, Any]:
        full = f"{repo.owner}/{repo.name}"
        return {"id": repo.id, "node_id": f"R_{repo.id:08d}", "name": repo.name, "full_name": full,
                "private": False, "visibility": "public", "owner": self._owner(repo.owner, repo.owner_type),
                "html_url": f"{self.url}/{full}", "description": repo.description, "fork": False,
                "url": f"{self.url}/repos/{full}", "homepage": repo.homepage, "default_branch": repo.default_branch,
                "has_pages": repo.pages_branch is not None, "created_at": repo.created_at,
                "clone_url": f"{self.url}/{full}.git", "size": 0}

    def _repo_page(self, handler: Handler, repo: FakeRepo) -> None:
        files = self.files(repo.owner, repo.name)
        items = "".join(f"<li>{path} ({len(data)} bytes)</li>" for path, data in sorted(files.items()))
        _send(handler, 200, f"<!doctype html><title>{repo.owner}/{repo.name}</title><h1>{repo.owner}/{repo.name}"
                            f"</h1><ul>{items}</ul>".encode(), "text/html; charset=utf-8")

    # -- git data -----------------------------------------------------------------------------------

    def _create_blob(self, repo: FakeRepo, body: dict) -> dict[str, Any]:
        content, encoding = body.get("content"), body.get("encoding", "utf-8")
        if not isinstance(content, str):
            raise _Reject(422, "Invalid request.\n\n\"content\" wasn't supplied.")
        try:
            data = base64.b64decode(content) if encoding == "base64" else content.encode("utf-8")
        except ValueError:
            raise _Reject(422, "Invalid request.\n\nInvalid base64 content.") from None
        with self._lock:
            sha = self._store_blob(data)
        return {"sha": sha, "url": f"{self.url}/repos/{repo.owner}/{repo.name}/git/blobs/{sha}"}

    def _blob_json(self, repo: FakeRepo, sha: str) -> dict[str, Any]:
        with self._lock:
            data = self.blobs.get(sha)
        if data is None:
            raise _Reject(404, "Not Found")
        return {"sha": sha, "node_id": f"B_{sha[:12]}", "size": len(data), "encoding": "base64",
                "url": f"{self.url}/repos/{repo.owner}/{repo.name}/git/blobs/{sha}", "content": _b64_lines(data)}

    def _create_tree(self, repo: FakeRepo, body: dict) -> dict[str, Any]:
        entries = body.get("tree")
        if not isinstance(entries, list):
            raise _Reject(422, "Invalid tree info")
        with self._lock:
            files: dict[str, tuple[str, str]] = {}
            if body.get("base_tree"):
                base = self.trees.get(body["base_tree"])
                if base is None:
                    raise _Reject(422, "Invalid tree info: base_tree is not a valid tree")
                files = dict(base)
            for entry in entries:
                self._apply_entry(files, entry)
            sha = self._store_tree(files)
        return self._tree_json(repo, sha, "1")

    def _apply_entry(self, files: dict[str, tuple[str, str]], entry: Any) -> None:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise _Reject(422, "Invalid tree info")
        path, mode = entry["path"], entry.get("mode", "100644")
        if not path or MALFORMED.search(path) or path.split("/")[0] == ".git":
            raise _Reject(422, f"tree.path contains a malformed path component: {path}")
        if mode not in ("100644", "100755") or entry.get("type", "blob") != "blob":
            raise _Reject(422, f"Invalid tree info: mode {mode} / type {entry.get('type')} is not supported here")
        if "content" in entry:
            files[path] = (mode, self._store_blob(str(entry["content"]).encode("utf-8")))
        elif entry.get("sha") is None:
            if "sha" not in entry:
                raise _Reject(422, "Invalid tree info: either sha or content is required")
            files.pop(path, None)
        elif entry["sha"] in self.blobs:
            files[path] = (mode, entry["sha"])
        else:
            raise _Reject(422, f"Invalid tree info: {entry['sha']} is not a valid blob")

    def _tree_json(self, repo: FakeRepo, ref: str, recursive: str | None) -> dict[str, Any]:
        with self._lock:
            sha = ref
            if sha not in self.trees:  # a branch name or a commit sha names its tree too
                commit = repo.refs.get(f"heads/{ref}") or (ref if ref in self.commits else None)
                if commit is None:
                    raise _Reject(404, "Not Found")
                sha = self.commits[commit]["tree"]
            files = self.trees[sha]
            entries, directories = [], set()
            for path, (mode, blob) in sorted(files.items()):
                segments = path.split("/")
                for depth in range(1, len(segments)):
                    directories.add("/".join(segments[:depth]))
                if recursive or len(segments) == 1:
                    entries.append({"path": path, "mode": mode, "type": "blob", "sha": blob,
                                    "size": len(self.blobs[blob]),
                                    "url": f"{self.url}/repos/{repo.owner}/{repo.name}/git/blobs/{blob}"})
            for directory in sorted(directories):
                if recursive or "/" not in directory:
                    tree_sha = hashlib.sha1(f"{sha}:{directory}".encode()).hexdigest()
                    entries.append({"path": directory, "mode": "040000", "type": "tree", "sha": tree_sha,
                                    "url": f"{self.url}/repos/{repo.owner}/{repo.name}/git/trees/{tree_sha}"})
        entries.sort(key=lambda e: e["path"])
        return {"sha": sha, "url": f"{self.url}/repos/{repo.owner}/{repo.name}/git/trees/{sha}", "tree": entries,
                "truncated": False}

    def _create_commit(self, repo: FakeRepo, body: dict) -> dict[str, Any]:
        tree, parents, message = body.get("tree"), body.get("parents") or [], body.get("message")
        with self._lock:
            if not isinstance(message, str) or tree not in self.trees:
                raise _Reject(422, "Invalid request.\n\nTree SHA does not exist" if isinstance(message, str)
                              else "Invalid request.\n\n\"message\" wasn't supplied.")
            if any(p not in self.commits for p in parents):
                raise _Reject(422, "Invalid request.\n\nParent SHA does not exist or is not a commit object")
            sha = self._store_commit(tree, list(parents), message)
        return self._commit_json(repo, sha)

    def _commit_json(self, repo: FakeRepo, sha: str) -> dict[str, Any]:
        with self._lock:
            commit = self.commits.get(sha)
        if commit is None:
            raise _Reject(404, "Not Found")
        base = f"{self.url}/repos/{repo.owner}/{repo.name}/git"
        person = {"name": self.login, "email": f"{self.login}@users.noreply.github.com", "date": commit["date"]}
        return {"sha": sha, "node_id": f"C_{sha[:12]}", "url": f"{base}/commits/{sha}",
                "html_url": f"{self.url}/{repo.owner}/{repo.name}/commit/{sha}", "author": person,
                "committer": person, "message": commit["message"],
                "tree": {"sha": commit["tree"], "url": f"{base}/trees/{commit['tree']}"},
                "parents": [{"sha": p, "url": f"{base}/commits/{p}"} for p in commit["parents"]],
                "verification": {"verified": False, "reason": "unsigned"}}

    def _ref_json(self, repo: FakeRepo, ref: str) -> dict[str, Any]:
        ref = ref.removeprefix("refs/")
        with self._lock:
            if not repo.refs:
                raise _Reject(409, "Git Repository is empty.")
            sha = repo.refs.get(ref)
        if sha is None:
            raise _Reject(404, "Not Found")
        return {"ref": f"refs/{ref}", "node_id": f"REF_{sha[:8]}",
                "url": f"{self.url}/repos/{repo.owner}/{repo.name}/git/refs/{ref}",
                "object": {"sha": sha, "type": "commit",
                           "url": f"{self.url}/repos/{repo.owner}/{repo.name}/git/commits/{sha}"}}

    def _create_ref(self, repo: FakeRepo, body: dict) -> dict[str, Any]:
        ref, sha = str(body.get("ref") or ""), body.get("sha")
        if not ref.startswith("refs/") or ref.count("/") < 2:
            raise _Reject(422, "Reference name must start with 'refs/' and have at least two slashes.")
        with self._lock:
            if sha not in self.commits:
                raise _Reject(422, "Object does not exist")
            if ref[5:] in repo.refs:
                raise _Reject(422, "Reference already exists")
            self._move(repo, ref[5:], sha)
        return self._ref_json(repo, ref[5:])

    def _update_ref(self, repo: FakeRepo, ref: str, body: dict) -> dict[str, Any]:
        ref, sha = ref.removeprefix("refs/"), body.get("sha")
        with self._lock:
            current = repo.refs.get(ref)
            if current is None:
                raise _Reject(422, "Reference does not exist")
            if sha not in self.commits:
                raise _Reject(422, "Object does not exist")
            if not body.get("force") and not self._descends(sha, current):
                raise _Reject(422, "Update is not a fast forward")
            self._move(repo, ref, sha)
        return self._ref_json(repo, ref)

    def _contents(self, repo: FakeRepo, path: str, ref: str | None) -> Any:
        with self._lock:
            commit = repo.refs.get(f"heads/{ref or repo.default_branch}") or (ref if ref in self.commits else None)
            if commit is None:
                raise _Reject(404, "No commit found for the ref " + str(ref))
            files = self.trees[self.commits[commit]["tree"]]
            if path in files:
                data = self.blobs[files[path][1]]
                return {"type": "file", "encoding": "base64", "size": len(data), "name": path.rsplit("/", 1)[-1],
                        "path": path, "sha": files[path][1], "content": _b64_lines(data)}
            prefix = f"{path}/" if path else ""
            children = sorted({p[len(prefix):].split("/")[0] for p in files if p.startswith(prefix)})
        if not children:
            raise _Reject(404, "Not Found")
        return [{"name": c, "path": prefix + c, "type": "file" if prefix + c in files else "dir"} for c in children]

    # -- Pages --------------------------------------------------------------------------------------

    def _pages(self, handler: Handler, method: str, repo: FakeRepo, body: dict) -> None:
        if method == "GET":
            if repo.pages_branch is None:
                raise _Reject(404, "Not Found")
            return self._ok(handler, self._site_json(repo))
        if method != "POST":
            raise _Reject(404, "Not Found")
        source = body.get("source") if isinstance(body.get("source"), dict) else {}
        branch, path = source.get("branch"), source.get("path", "/")
        with self._lock:
            if repo.pages_branch is not None:
                raise _Reject(409, "GitHub Pages is already enabled.")
            if not branch or f"heads/{branch}" not in repo.refs or path not in ("/", "/docs"):
                raise _Reject(422, "Invalid source branch or path", [{"resource": "Page", "field": "source",
                                                                     "code": "invalid"}])
            repo.pages_branch, repo.pages_path = branch, path
            self._start_build(repo)
        self._ok(handler, self._site_json(repo), 201)

    def _site_json(self, repo: FakeRepo) -> dict[str, Any]:
        build = self._latest_build(repo)
        status = None if build is None else ("built" if time.time() >= build.ready_at else "building")
        return {"url": f"{self.url}/repos/{repo.owner}/{repo.name}/pages", "status": status, "cname": None,
                "custom_404": False, "html_url": self.pages_url(repo.owner, repo.name), "build_type": "legacy",
                "source": {"branch": repo.pages_branch, "path": repo.pages_path}, "public": True,
                "https_enforced": False}

    def pages_url(self, owner: str, name: str) -> str:
        return f"{self.url}/pages/{owner}/{name}/"

    def _start_build(self, repo: FakeRepo) -> None:
        sha = repo.refs.get(f"heads/{repo.pages_branch}")
        if sha:
            now = time.time()
            repo.builds.append(Build(sha, now, now + self.build_delay))

    def _latest_build(self, repo: FakeRepo) -> Build | None:
        return repo.builds[-1] if repo.builds else None

    def _build_json(self, repo: FakeRepo, build: Build | None) -> dict[str, Any]:
        if build is None:
            raise _Reject(404, "Not Found")
        built = time.time() >= build.ready_at
        return {"url": f"{self.url}/repos/{repo.owner}/{repo.name}/pages/builds/latest",
                "status": "built" if built else "building", "error": {"message": None},
                "pusher": self._owner(self.login, "User"), "commit": build.commit,
                "duration": int(self.build_delay * 1000), "created_at": _iso(build.started),
                "updated_at": _iso(build.ready_at if built else build.started)}

    def _serve_site(self, handler: Handler, parts: list[str], trailing_slash: bool) -> None:
        repo = self.repo(parts[0], parts[1]) if len(parts) >= 2 else None
        with self._lock:
            built = [b for b in (repo.builds if repo else []) if time.time() >= b.ready_at]
            files = self.trees[self.commits[built[-1].commit]["tree"]] if built else {}
            path = "/".join(parts[2:])
            if not path or trailing_slash:
                path = f"{path}/index.html" if path else "index.html"
            root = "docs/" if repo and repo.pages_path == "/docs" else ""
            blob = files.get(root + path)
            data = self.blobs[blob[1]] if blob else None
        if data is None:
            return _send(handler, 404, b"<!doctype html><title>Site not found</title><h1>404</h1>",
                         "text/html; charset=utf-8")
        _send(handler, 200, data, mimetypes.guess_type(path)[0] or "application/octet-stream")

    # -- storage (callers hold the lock) ------------------------------------------------------------

    def _store_blob(self, data: bytes) -> str:
        sha = hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()
        self.blobs[sha] = data
        return sha

    def _store_tree(self, files: dict[str, tuple[str, str]]) -> str:
        sha = hashlib.sha1(json.dumps(sorted(files.items())).encode()).hexdigest()
        self.trees[sha] = dict(files)
        return sha

    def _store_commit(self, tree: str, parents: list[str], message: str) -> str:
        self._counter += 1
        date = _now()
        sha = hashlib.sha1(json.dumps([tree, parents, message, date, self._counter]).encode()).hexdigest()
        self.commits[sha] = {"tree": tree, "parents": parents, "message": message, "date": date}
        return sha

    def _move(self, repo: FakeRepo, ref: str, sha: str) -> None:
        repo.refs[ref] = sha
        if repo.pages_branch and ref == f"heads/{repo.pages_branch}":
            self._start_build(repo)

    def _descends(self, sha: str, ancestor: str) -> bool:
        pending, seen = [sha], set()
        while pending:
            current = pending.pop()
            if current == ancestor:
                return True
            if current not in seen:
                seen.add(current)
                pending.extend(self.commits.get(current, {}).get("parents", []))
        return False

    # -- plumbing -----------------------------------------------------------------------------------

    def _scripted(self, handler: Handler, request: RecordedRequest) -> bool:
        with self._lock:
            fault = next((f for f in self._faults if f.method in (request.method, "*")
                          and f.pattern.search(request.path) and (f.times is None or f.times > 0)), None)
            if fault is not None and fault.times is not None:
                fault.times -= 1
        if fault is None:
            return False
        if fault.delay:
            self._stopping.wait(fault.delay)
            return False
        self.reject(handler, fault.status, fault.message or _phrase(fault.status))
        return True

    def _ok(self, handler: Handler, body: Any, status: int = 200) -> None:
        handler.send_json(status, body, self._headers())

    def _headers(self) -> dict[str, str]:
        return {"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "4999", "X-RateLimit-Resource": "core",
                "X-RateLimit-Reset": str(int(time.time()) + 3600), "X-GitHub-Media-Type": "github.v3; format=json"}

    def _user(self) -> dict[str, Any]:
        return self._owner(self.login, "User")

    def _owner(self, login: str, kind: str) -> dict[str, Any]:
        return {"login": login, "id": abs(hash(login)) % 10_000_000, "type": kind, "site_admin": False,
                "url": f"{self.url}/users/{login}", "html_url": f"{self.url}/{login}"}


class _Reject(Exception):
    def __init__(self, status: int, message: str, errors: list | None = None):
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors


def _send(handler: Handler, status: int, data: bytes, content_type: str) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def _is_html_path(path: str) -> bool:
    parts = [p for p in path.split("/") if p]
    return len(parts) == 2 and parts[0] not in ("user", "repos", "orgs", "users", "pages")


def _b64_lines(data: bytes) -> str:
    text = base64.b64encode(data).decode("ascii")
    return "\n".join(text[i:i + 60] for i in range(0, len(text), 60)) + "\n"


def _phrase(status: int) -> str:
    return {500: "Internal Server Error", 502: "Server Error", 503: "Service Unavailable"}.get(status, "Error")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def main(argv: list[str] | None = None) -> None:
    serve_from_command_line(FakeGitHubRepos, "python -m tests.fakes.github_repos_api", DEFAULT_TOKEN, "octo-fake",
                            argv)


if __name__ == "__main__":
    main()
