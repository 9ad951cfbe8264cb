"""Repositories for deployments: create a repo, commit a whole file set in one commit through the Git
Data API (blobs, tree, commit, ref), read a repo's current files, and publish it with GitHub Pages.

Everything goes through `GitHubClient` (auth, rate limits, retries, error mapping). Git objects are
content-addressed, so creating a blob, tree or commit again is harmless: those POSTs are sent as
idempotent (retried on a 5xx). Moving a branch is a fast-forward only (`force: false`), so a commit
made on a stale parent fails instead of dropping someone else's work.

A new repo is created with `auto_init` (an initial commit), because GitHub's Git Data API refuses
to work on an empty repository (409 "Git Repository is empty").
"""
from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

from app.core.errors import APIError, BadRequest, Conflict, NotFound
from app.integrations.github.client import GitHubClient

FILE_MODE = "100644"


@dataclass(frozen=True)
class Repo:
    owner: str
    name: str
    html_url: str
    default_branch: str

    @classmethod
    def from_api(cls, body: dict[str, Any]) -> "Repo":
        return cls(body["owner"]["login"], body["name"], body["html_url"], body.get("default_branch") or "main")


class Repos:
    """Repository operations on one `GitHubClient`."""

    def __init__(self, client: GitHubClient):
        self.client = client
        self._login: str | None = None

    # -- repositories ---------------------------------------------------------------------------

    def login(self) -> str:
        """The token's user (asked once)."""
        if self._login is None:
            self._login = self.client.get("/user")["login"]
        return self._login

    def get_repo(self, owner: str, name: str) -> Repo:
        return Repo.from_api(self.client.get(f"/repos/{owner}/{name}"))

    def create_repo(self, name: str, *, owner: str = "", description: str = "", homepage: str = "") -> Repo:
        """A new public repo under `owner` (an organisation, or the token's user when empty or equal to it).

        If the name is taken under that owner, the existing repo is returned: callers derive names
        that only they use, so that repo is the one an interrupted earlier attempt created."""
        body = {"name": name, "description": description[:350], "private": False, "auto_init": True,
                "has_issues": True, "has_wiki": False}
        if homepage:
            body["homepage"] = homepage
        user = self.login()
        path = "/user/repos" if not owner or owner.lower() == user.lower() else f"/orgs/{owner}/repos"
        try:
            return Repo.from_api(self.client.post(path, body))
        except APIError as exc:
            if exc.status == 400 and _name_taken(exc):
                return self.get_repo(owner or user, name)
            raise

    # -- reading ------------------------------------------------------------------------------------

    def head(self, repo: Repo, branch: str | None = None) -> str | None:
        """The commit sha `branch` (default: the default branch) points at; None if it does not exist."""
        try:
            ref = self.client.get(f"/repos/{repo.owner}/{repo.name}/git/ref/heads/{branch or repo.default_branch}")
        except NotFound:
            return None
        except Conflict:  # an empty repository
            return None
        return ref["object"]["sha"]

    def commit(self, repo: Repo, sha: str) -> dict[str, Any]:
        return self.client.get(f"/repos/{repo.owner}/{repo.name}/git/commits/{sha}")

    def tree(self, repo: Repo, tree_sha: str) -> list[dict[str, Any]]:
        """Every entry of a tree, recursively (blobs and subtrees, with full paths)."""
        body = self.client.get(f"/repos/{repo.owner}/{repo.name}/git/trees/{tree_sha}", recursive="1")
        if body.get("truncated"):
            raise APIError("The repository is too large to read through the trees API.", status=502,
                           code="github_tree_truncated")
        return body.get("tree") or []

    def read_files(self, repo: Repo, commit_sha: str, *, max_file_bytes: int = 500_000,
                   max_total_bytes: int = 5_000_000) -> dict[str, bytes]:
        """The files of the commit `commit_sha` (path -> bytes); larger files and those past the total are
        left out, so a revision prompt stays bounded."""
        tree_sha = self.commit(repo, commit_sha)["tree"]["sha"]
        files: dict[str, bytes] = {}
        total = 0
        for entry in self.tree(repo, tree_sha):
            if entry.get("type") != "blob" or (entry.get("size") or 0) > max_file_bytes:
                continue
            if total + (entry.get("size") or 0) > max_total_bytes:
                break
            files[entry["path"]] = self.blob(repo, entry["sha"])
            total += len(files[entry["path"]])
        return files

    def blob(self, repo: Repo, sha: str) -> bytes:
        body = self.client.get(f"/repos/{repo.owner}/{repo.name}/git/blobs/{sha}")
        if body.get("encoding") == "base64":
            return base64.b64decode(body.get("content") or "")
        return (body.get("content") or "").encode("utf-8")

    # -- writing ------------------------------------------------------------------------------------

    def create_blob(self, repo: Repo, data: bytes) -> str:
        return self._post(repo, "git/blobs", {"content": base64.b64encode(data).decode("ascii"),
                                              "encoding": "base64"})["sha"]

    def create_tree(self, repo: Repo, files: dict[str, bytes], base_tree: str | None = None) -> str:
        """A tree holding `files` (on top of `base_tree` when given). Text goes inline in the tree
        request; binary files become blobs first."""
        entries = []
        for path, data in sorted(files.items()):
            entry: dict[str, Any] = {"path": path, "mode": FILE_MODE, "type": "blob"}
            text = utf8_text(data)
            if text is None:
                entry["sha"] = self.create_blob(repo, data)
            else:
                entry["content"] = text
            entries.append(entry)
        body: dict[str, Any] = {"tree": entries}
        if base_tree:
            body["base_tree"] = base_tree
        return self._post(repo, "git/trees", body)["sha"]

    def create_commit(self, repo: Repo, message: str, tree_sha: str, parents: list[str]) -> str:
        return self._post(repo, "git/commits", {"message": message, "tree": tree_sha, "parents": parents})["sha"]

    def move_branch(self, repo: Repo, sha: str, branch: str | None = None) -> None:
        """Point `branch` at `sha`: a fast-forward only; creates the branch if it does not exist."""
        branch = branch or repo.default_branch
        try:
            self.client.patch(f"/repos/{repo.owner}/{repo.name}/git/refs/heads/{branch}", {"sha": sha, "force": False})
        except (NotFound, BadRequest) as exc:  # GitHub: 422 "Reference does not exist"
            if isinstance(exc, BadRequest) and "does not exist" not in exc.message:
                raise
            self.client.post(f"/repos/{repo.owner}/{repo.name}/git/refs", {"ref": f"refs/heads/{branch}", "sha": sha})

    def commit_files(self, repo: Repo, files: dict[str, bytes], message: str, *, parent: str | None,
                     keep_existing: bool) -> str:
        """One commit of `files` on top of `parent`; with `keep_existing`, files not named stay as they
        are, else the commit holds exactly `files`. Returns the commit sha (the branch is not moved)."""
        base_tree = self.commit(repo, parent)["tree"]["sha"] if parent and keep_existing else None
        tree_sha = self.create_tree(repo, files, base_tree)
        return self.create_commit(repo, message, tree_sha, [parent] if parent else [])

    # -- Pages ------------------------------------------------------------------------------------------

    def enable_pages(self, repo: Repo, branch: str | None = None, path: str = "/") -> dict[str, Any]:
        """Turn GitHub Pages on from `branch` (default: the default branch); already on is fine.
        Returns the Pages site (`html_url` is the site's URL)."""
        body = {"source": {"branch": branch or repo.default_branch, "path": path}}
        try:
            return self.client.post(f"/repos/{repo.owner}/{repo.name}/pages", body)
        except Conflict:
            return self.pages(repo)

    def pages(self, repo: Repo) -> dict[str, Any]:
        return self.client.get(f"/repos/{repo.owner}/{repo.name}/pages")

    def latest_pages_build(self, repo: Repo) -> dict[str, Any] | None:
        """The latest Pages build (`status`: queued, building, built, errored; `commit`), or None."""
        try:
            return self.client.get(f"/repos/{repo.owner}/{repo.name}/pages/builds/latest")
        except NotFound:
            return None

    def _post(self, repo: Repo, what: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.client.request("POST", f"/repos/{repo.owner}/{repo.name}/{what}", json=body, idempotent=True)
        try:
            return response.json()
        except ValueError:
            raise APIError("GitHub answered with invalid JSON.", status=502, code="github_invalid_json") from None


def repo_name_for(task: str, suffix: str) -> str:
    """A repo name from the task ("Captcha Solver #3" -> "captcha-solver-3-<suffix>"), at most 100 chars."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", task.lower()).strip("-.") or "app"
    return f"{slug[:90 - len(suffix)].rstrip('-.')}-{suffix}"


def _name_taken(exc: APIError) -> bool:
    errors = exc.details.get("github_errors") or []
    text = " ".join(str(e.get("message", "")) if isinstance(e, dict) else str(e) for e in errors) + exc.message
    return "already exists" in text


def utf8_text(data: bytes) -> str | None:
    """`data` as text if it is UTF-8 without NUL characters (what a tree entry takes inline, and what a
    prompt can show); None for anything binary."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if "\x00" in text else text
