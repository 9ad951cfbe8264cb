"""Repositories, the Git Data API and Pages through `app.integrations.github.repos`, against the GitHub fake."""
from __future__ import annotations

import hashlib

import pytest
import requests

from app.core.errors import BadRequest, NotFound, UpstreamError
from app.integrations.github.client import GitHubClient
from app.integrations.github.repos import Repo, Repos, repo_name_for
from tests.fakes.github_repos_api import DEFAULT_TOKEN, FakeGitHubRepos


@pytest.fixture
def github():
    with FakeGitHubRepos(build_delay=0.05) as fake:
        yield fake


@pytest.fixture
def repos(github):
    client = GitHubClient(DEFAULT_TOKEN, github.url, timeout=(2, 5), sleep=lambda s: None)
    yield Repos(client)
    client.close()


def test_create_under_the_user_or_an_organisation(repos, github):
    mine = repos.create_repo("my-app", description="An app")
    assert (mine.owner, mine.name, mine.default_branch) == ("octo-fake", "my-app", "main")
    assert mine.html_url == f"{github.url}/octo-fake/my-app"
    assert repos.create_repo("team-app", owner="fake-org").owner == "fake-org"
    assert repos.create_repo("same", owner="OCTO-FAKE").owner == "octo-fake"  # the user itself, any case
    with pytest.raises(NotFound):
        repos.create_repo("x", owner="not-my-org")
    assert [r.path for r in github.requests if r.method == "POST"] == ["/user/repos", "/orgs/fake-org/repos",
                                                                      "/user/repos", "/orgs/not-my-org/repos"]


def test_a_taken_name_returns_the_existing_repo(repos, github):
    first = repos.create_repo("taken")
    assert repos.create_repo("taken") == first
    assert len(github.repos) == 1


def test_commit_files_in_one_commit_and_read_them_back(repos, github):
    repo = repos.create_repo("files")
    parent = repos.head(repo)
    png = b"\x89PNG\r\n\x1a\n\x00\x01binary"
    files = {"index.html": b"<h1>hi</h1>", "js/app.js": b"console.log(1)", "img/logo.png": png}
    sha = repos.commit_files(repo, files, "First", parent=parent, keep_existing=False)
    assert repos.head(repo) == parent  # not moved yet
    repos.move_branch(repo, sha)
    assert repos.head(repo) == sha and github.history("octo-fake", "files") == [sha, parent]
    assert github.files("octo-fake", "files") == files  # the initial README was replaced
    assert repos.read_files(repo, sha) == files
    blob_posts = [r for r in github.requests if r.path.endswith("/git/blobs")]
    assert len(blob_posts) == 1  # only the binary file; text goes inline in the tree
    assert blob_posts[0].json["encoding"] == "base64"

    second = repos.commit_files(repo, {"index.html": b"<h1>v2</h1>"}, "Second", parent=sha, keep_existing=True)
    repos.move_branch(repo, second)
    after = github.files("octo-fake", "files")
    assert after["index.html"] == b"<h1>v2</h1>" and after["img/logo.png"] == png  # the rest was kept


def test_blob_shas_are_git_hashes(repos):
    repo = repos.create_repo("hashes")
    data = b"hello\n"
    assert repos.create_blob(repo, data) == hashlib.sha1(b"blob 6\x00hello\n").hexdigest()


def test_moving_a_branch_is_a_fast_forward_only(repos):
    repo = repos.create_repo("ff")
    base = repos.head(repo)
    one = repos.commit_files(repo, {"a.txt": b"1"}, "one", parent=base, keep_existing=True)
    other = repos.commit_files(repo, {"b.txt": b"2"}, "other", parent=base, keep_existing=True)
    repos.move_branch(repo, one)
    with pytest.raises(BadRequest, match="not a fast forward"):
        repos.move_branch(repo, other)
    assert repos.head(repo) == one
    repos.move_branch(repo, one, branch="gh-pages")  # a missing branch is created
    assert repos.head(repo, "gh-pages") == one


def test_git_data_on_an_empty_repo_and_unknown_repos(repos, github):
    empty = Repo("octo-fake", "empty", f"{github.url}/octo-fake/empty", "main")
    repos.client.post("/user/repos", {"name": "empty", "auto_init": False})
    assert repos.head(empty) is None
    with pytest.raises(Exception, match="empty"):
        repos.create_blob(empty, b"x")
    with pytest.raises(NotFound):
        repos.get_repo("octo-fake", "nope")


def test_pages_enable_build_and_serve(repos, github):
    repo = repos.create_repo("site")
    sha = repos.commit_files(repo, {"index.html": b"<p>live</p>"}, "site", parent=repos.head(repo),
                             keep_existing=False)
    repos.move_branch(repo, sha)
    site = repos.enable_pages(repo)
    assert site["html_url"] == github.pages_url("octo-fake", "site") and site["source"]["branch"] == "main"
    assert repos.enable_pages(repo)["html_url"] == site["html_url"]  # already on (409) is fine
    build = repos.latest_pages_build(repo)
    assert build["commit"] == sha and build["status"] in ("building", "built")
    github.wait_until(lambda: False, 0.1)
    assert repos.latest_pages_build(repo)["status"] == "built"
    page = requests.get(site["html_url"], timeout=5)
    assert page.status_code == 200 and page.text == "<p>live</p>"
    assert requests.get(site["html_url"] + "missing.js", timeout=5).status_code == 404


def test_pages_of_a_repo_without_pages(repos):
    repo = repos.create_repo("no-site")
    assert repos.latest_pages_build(repo) is None
    with pytest.raises(NotFound):
        repos.pages(repo)


def test_a_bad_token_is_an_upstream_error(github):
    repos = Repos(GitHubClient("ghp_wrongwrongwrongwrongwrongwrongwrong", github.url, sleep=lambda s: None))
    with pytest.raises(UpstreamError, match="rejected the token"):
        repos.create_repo("x")


def test_server_errors_on_git_data_are_retried(repos, github):
    repo = repos.create_repo("flaky")
    github.fail("POST", r"/git/trees$", 500, times=2)
    sha = repos.commit_files(repo, {"a.txt": b"a"}, "m", parent=repos.head(repo), keep_existing=True)
    assert sha and len([r for r in github.requests if r.path.endswith("/git/trees")]) == 3


@pytest.mark.parametrize("task, name", [
    ("captcha-solver-abc", "captcha-solver-abc-1a2b3c"),
    ("My App #3 (final)", "my-app-3-final-1a2b3c"),
    ("../../etc", "etc-1a2b3c"),
    ("日本語", "app-1a2b3c"),
    ("x" * 300, "x" * 84 + "-1a2b3c"),
])
def test_repo_names(task, name):
    assert repo_name_for(task, "1a2b3c") == name
    assert len(repo_name_for(task, "1a2b3c")) <= 100
