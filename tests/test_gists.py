"""The gist endpoints and their record, against the fake GitHub (SQLite, and PostgreSQL for the record)."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator

import pytest

from app.core.db import database
from app.gists.models import Gist, GistRevision
from app.gists.service import Requester, record
from tests.fakes.github_api import DEFAULT_TOKEN, FakeGitHub

HELLO = {"description": "Sample Gist", "public": True,
         "files": [{"filename": "sample.txt", "content": "This is a sample gist content."}]}


@pytest.fixture
def fake_github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake



@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'gists.db'}"
    return request.getfixturevalue("postgres_url")


def github_settings(fake: FakeGitHub, **extra):
    return {"GITHUB_TOKEN": DEFAULT_TOKEN, "GITHUB_API_URL": fake.url, "GITHUB_MAX_RATE_WAIT_S": 0, **extra}


@pytest.fixture
def app(make_app, fake_github):
    return make_app(**github_settings(fake_github))


@pytest.fixture
def client(app):
    return app.test_client()


def create(client, body=None, **headers):
    response = client.post("/gists", json=body or HELLO, headers=headers)
    assert response.status_code == 201, response.json
    return response.json


# -- create ---------------------------------------------------------------------------------------------


def test_create_returns_id_url_and_files_and_sends_githubs_map(client, fake_github):
    response = client.post("/gists", json=HELLO)
    assert response.status_code == 201
    gist = response.json
    assert gist["id"] in fake_github.gists and gist["html_url"].endswith(gist["id"])
    assert gist["files"][0]["filename"] == "sample.txt" and gist["files"][0]["content"] == HELLO["files"][0]["content"]
    assert gist["public"] is True and gist["owner"] == "octocat" and gist["success"] is True
    assert response.headers["Location"] == f"/gists/{gist['id']}"
    assert fake_github.writes[-1].json == {"description": "Sample Gist", "public": True,
                                           "files": {"sample.txt": {"content": "This is a sample gist content."}}}


def test_create_accepts_githubs_files_map(client, fake_github):
    gist = create(client, {"description": "map form", "files": {"a.py": {"content": "print(1)"}}})
    assert [f["filename"] for f in gist["files"]] == ["a.py"] and gist["public"] is False


@pytest.mark.parametrize("body, field", [
    ({"description": "no files"}, "files"),
    ({"files": []}, "files"),
    ({"files": {}}, "files"),
    ({"files": [{"filename": "", "content": "x"}]}, "files"),
    ({"files": [{"filename": "dir/a.txt", "content": "x"}]}, "files"),
    ({"files": [{"filename": "bad\x07name", "content": "x"}]}, "files"),
    ({"files": [{"filename": "a.txt"}]}, "files"),
    ({"files": [{"filename": "a.txt", "content": 5}]}, "files"),
    ({"files": [{"filename": "a.txt", "content": "x"}, {"filename": "a.txt", "content": "y"}]}, "files"),
    ({"files": "a.txt"}, "files"),
    ({"public": "perhaps", "files": [{"filename": "a.txt", "content": "x"}]}, "public"),
])
def test_create_rejects_bad_bodies_before_github(client, fake_github, body, field):
    response = client.post("/gists", json=body)
    assert response.status_code == 400, response.json
    assert response.json["error"]["code"] == "validation_error" and field in response.json["error"]["fields"]
    assert fake_github.requests == []


def test_not_json_and_malformed_json(client, fake_github):
    assert client.post("/gists", data="files=1").status_code == 415
    response = client.post("/gists", data="{nope", content_type="application/json")
    assert response.status_code == 400 and response.json["error"]["code"] == "malformed_json"
    assert fake_github.requests == []


def test_a_body_over_the_limit_is_413(make_app, fake_github):
    client = make_app(**github_settings(fake_github), MAX_BODY_BYTES=2000).test_client()
    body = {"files": [{"filename": "big.txt", "content": "x" * 5000}]}
    response = client.post("/gists", json=body)
    assert response.status_code == 413 and response.json["error"]["code"] == "payload_too_large"
    assert fake_github.requests == []


def test_githubs_422_is_a_400_with_its_message(client):
    response = client.post("/gists", json={"files": [{"filename": "blank.txt", "content": "   "}]})
    assert response.status_code == 400
    error = response.json["error"]
    assert error["code"] == "github_validation_failed" and error["message"].startswith("GitHub: Validation Failed")
    assert error["github_errors"][0]["field"] == "files"


# -- update, get, delete ----------------------------------------------------------------------------------


def test_update_description_content_add_delete_and_rename(client, fake_github):
    gist = create(client, {"files": [{"filename": "a.txt", "content": "a"}, {"filename": "b.txt", "content": "b"},
                                     {"filename": "c.txt", "content": "c"}]})
    body = {"description": "Updated", "files": [
        {"filename": "a.txt", "content": "new a"},
        {"filename": "b.txt", "content": None},
        {"filename": "c.txt", "new_filename": "renamed.txt"},
        {"filename": "d.txt", "content": "added"},
    ]}
    response = client.patch(f"/gists/{gist['id']}", json=body)
    assert response.status_code == 200, response.json
    files = {f["filename"]: f["content"] for f in response.json["files"]}
    assert files == {"a.txt": "new a", "renamed.txt": "c", "d.txt": "added"}
    assert response.json["description"] == "Updated"
    assert fake_github.writes[-1].json == {"description": "Updated", "files": {
        "a.txt": {"content": "new a"}, "b.txt": None, "c.txt": {"filename": "renamed.txt"},
        "d.txt": {"content": "added"}}}


def test_update_accepts_githubs_files_map(client, fake_github):
    gist = create(client, {"files": {"a.txt": {"content": "a"}, "b.txt": {"content": "b"}}})
    response = client.patch(f"/gists/{gist['id']}", json={"files": {"a.txt": None, "b.txt": {"filename": "c.txt"}}})
    assert response.status_code == 200, response.json
    assert [f["filename"] for f in response.json["files"]] == ["c.txt"]


@pytest.mark.parametrize("body", [
    {},
    {"files": []},
    {"files": [{"filename": "a.txt"}]},
    {"files": [{"filename": "a.txt", "content": None, "new_filename": "b.txt"}]},
    {"files": [{"filename": "a.txt", "new_filename": "x/y"}]},
])
def test_update_rejects_bodies_that_change_nothing_or_contradict(client, fake_github, body):
    gist = create(client)
    response = client.patch(f"/gists/{gist['id']}", json=body)
    assert response.status_code == 400, response.json
    assert len(fake_github.writes) == 1


def test_get_and_delete(client, fake_github):
    gist = create(client)
    response = client.get(f"/gists/{gist['id']}")
    assert response.status_code == 200 and response.json["files"][0]["content"].startswith("This is")
    response = client.delete(f"/gists/{gist['id']}")
    assert response.status_code == 200 and response.json["deleted"] is True
    assert fake_github.gists == {}


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_an_unknown_gist_stays_404(client, method):
    kwargs = {"json": {"description": "x"}} if method == "patch" else {}
    response = getattr(client, method)("/gists/0123456789abcdef0123456789abcdef", **kwargs)
    assert response.status_code == 404 and response.json["error"]["code"] == "github_not_found"


def test_a_gist_id_that_is_not_one_never_reaches_github(client, fake_github):
    response = client.get("/gists/abc.def")
    assert response.status_code == 400 and response.json["error"]["code"] == "invalid_gist_id"
    assert fake_github.requests == []


# -- list -----------------------------------------------------------------------------------------------------


def seed(fake: FakeGitHub, count: int) -> list[dict]:
    return [fake.add_gist({f"f{n}.txt": "x"}, description=f"g{n}", created_at=f"2024-01-{n + 1:02d}T00:00:00Z")
            for n in range(count)]


def test_list_defaults_to_30_per_page(client, fake_github):
    seed(fake_github, 2)
    response = client.get("/gists")
    assert response.status_code == 200
    assert [g["description"] for g in response.json["gists"]] == ["g1", "g0"]
    assert fake_github.requests[-1].query == {"page": "1", "per_page": "30"}
    assert "Link" not in response.headers and response.json["pages"] == {}


def test_list_passes_githubs_pagination_back(client, fake_github):
    seed(fake_github, 5)
    response = client.get("/gists?per_page=2&page=2")
    body = response.json
    assert [g["description"] for g in body["gists"]] == ["g2", "g1"]
    assert body["pages"] == {"prev": 1, "first": 1, "next": 3, "last": 3}
    assert body["links"]["next"] == "http://localhost/gists?page=3&per_page=2"
    assert '<http://localhost/gists?page=3&per_page=2>; rel="next"' in response.headers["Link"]
    last = client.get(body["links"]["next"]).json
    assert [g["description"] for g in last["gists"]] == ["g0"] and "next" not in last["pages"]


def test_list_since_goes_to_github_and_until_is_filtered_here(client, fake_github):
    seed(fake_github, 5)
    response = client.get("/gists?since=2024-01-02T00:00:00%2B00:00&until=2024-01-04")
    assert response.status_code == 200, response.json
    assert [g["description"] for g in response.json["gists"]] == ["g3", "g2", "g1"]
    assert fake_github.requests[-1].query["since"] == "2024-01-02T00:00:00Z"
    links = client.get("/gists?per_page=1&since=2024-01-02T00:00:00Z&until=2024-01-04").json["links"]
    assert links["next"] == "http://localhost/gists?page=2&per_page=1&since=2024-01-02T00:00:00Z&until=2024-01-04"


@pytest.mark.parametrize("query", ["per_page=101", "per_page=0", "page=0", "per_page=ten", "since=yesterday",
                                   "until=2024-13-01", "since=2024-02-01&until=2024-01-01"])
def test_list_rejects_bad_queries(client, fake_github, query):
    response = client.get(f"/gists?{query}")
    assert response.status_code == 400, response.json
    assert fake_github.requests == []


# -- GitHub failing --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method, path", [("post", "/gists"), ("get", "/gists"), ("get", "/gists/abc"),
                                          ("patch", "/gists/abc"), ("delete", "/gists/abc"),
                                          ("post", "/chat/gist")])
def test_without_a_token_gist_endpoints_are_503_naming_github_token(make_app, method, path):
    client = make_app().test_client()
    response = getattr(client, method)(path, json={"messages": [{"role": "user", "content": "hi"}], **HELLO})
    assert response.status_code == 503
    assert "GITHUB_TOKEN" in response.json["error"]["message"] and response.json["error"]["variable"] == "GITHUB_TOKEN"
    assert client.get("/gists/local").status_code == 200


def test_a_rejected_token_is_502_and_no_token_leaks_to_bodies_or_logs(make_app, fake_github, tmp_path):
    wrong = "ghp_wrongTokenThatMustNeverLeak1234567890"
    app = make_app(**github_settings(fake_github, GITHUB_TOKEN=wrong), LOG_LEVEL="DEBUG")
    client = app.test_client()
    responses = [client.get("/gists"), client.post("/gists", json=HELLO), client.get("/gists/abc")]
    for response in responses:
        assert response.status_code == 502
        assert response.json["error"]["message"] == "GitHub rejected the token (401): check GITHUB_TOKEN."
        assert wrong not in response.get_data(as_text=True) and DEFAULT_TOKEN not in response.get_data(as_text=True)
    logs = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))
    assert "GET /gists" in logs and wrong not in logs


def test_the_valid_token_never_reaches_logs_or_bodies(make_app, fake_github, tmp_path):
    client = make_app(**github_settings(fake_github), LOG_LEVEL="DEBUG").test_client()
    bodies = [create(client), client.get("/gists").json, client.get("/gists/local").json]
    assert DEFAULT_TOKEN not in str(bodies)
    logs = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))
    assert "GitHub POST /gists -> 201" in logs and DEFAULT_TOKEN not in logs


def test_a_spent_rate_limit_is_429_with_retry_after(client, fake_github):
    fake_github.set_quota(0, reset_in=600)
    response = client.get("/gists")
    assert response.status_code == 429 and 600 <= int(response.headers["Retry-After"]) <= 602
    assert response.json["error"]["code"] == "github_rate_limited"


def test_a_secondary_rate_limit_is_429_with_retry_after(client, fake_github):
    fake_github.secondary_limit(times=1, retry_after=30, status=429)
    response = client.post("/gists", json=HELLO)
    assert response.status_code == 429 and response.headers["Retry-After"] == "30"
    assert fake_github.gists == {}


def test_github_down_is_502_or_503_and_the_record_still_answers(make_app, fake_github):
    client = make_app(**github_settings(fake_github)).test_client()
    gist = create(client)
    fake_github.fail_next(times=1, status=502)
    response = client.post("/gists", json=HELLO)  # a POST is not retried: it may have been carried out
    assert response.status_code == 502 and response.json["error"]["code"] == "github_unavailable"
    fake_github.stop()
    response = client.get("/gists")
    assert response.status_code == 503 and response.json["error"]["code"] == "github_unreachable"
    local = client.get("/gists/local").json
    assert [g["id"] for g in local["gists"]] == [gist["id"]]


# -- the record ---------------------------------------------------------------------------------------------


def test_every_change_is_recorded_with_who_and_where(make_app, fake_github, database_url):
    client = make_app(**github_settings(fake_github), DATABASE_URL=database_url).test_client()
    with database.connection_context():
        GistRevision.delete().execute()
        Gist.delete().execute()
    gist = create(client, **{"X-Client-Id": "alice-laptop"})
    client.patch(f"/gists/{gist['id']}", json={"files": [{"filename": "sample.txt", "new_filename": "s.md"}]},
                 headers={"X-Client-Id": "bob"})
    client.delete(f"/gists/{gist['id']}")
    record = client.get(f"/gists/local/{gist['id']}").json
    assert record["owner"] == "octocat" and record["description"] == "Sample Gist" and record["public"] is True
    assert record["html_url"] == gist["html_url"] and record["created_at"] == gist["created_at"]
    assert record["deleted_at"] is not None and record["revision_count"] == 3
    revisions = [(r["action"], r["endpoint"], r["client_id"], r["client_ip"], r["files"]) for r in record["revisions"]]
    assert revisions == [("create", "POST /gists", "alice-laptop", "127.0.0.1", ["sample.txt"]),
                         ("update", "PATCH /gists/{gist_id}", "bob", "127.0.0.1", ["s.md"]),
                         ("delete", "DELETE /gists/{gist_id}", None, "127.0.0.1", [])]
    assert record["revisions"][1]["changes"] == {"renamed": {"sample.txt": "s.md"}}
    assert len(record["revisions"][0]["version"]) == 40 and record["revisions"][2]["version"] is None


def test_concurrent_first_records_of_one_gist_share_its_row(make_app, database_url):
    """Two changes of a gist this server never recorded, at once: one row, both revisions."""
    make_app(DATABASE_URL=database_url)
    with database.connection_context():
        GistRevision.delete().execute()
        Gist.delete().execute()
    gist = {"id": "abc123", "description": "d", "public": False, "files": {"a.txt": {}},
            "html_url": "https://gist.github.com/abc123", "owner": {"login": "octocat"}}
    start, results = threading.Barrier(4), []

    def change(n: int) -> None:
        start.wait(5)
        results.append(record(gist, "update", Requester("PATCH /gists/{gist_id}", f"client-{n}"), {}))

    threads = [threading.Thread(target=change, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert results == [True] * 4
    with database.connection_context():
        row = Gist.get(Gist.gist_id == "abc123")
        assert Gist.select().count() == 1 and row.revision_count == 4 and row.files == ["a.txt"]
        assert GistRevision.select().where(GistRevision.gist == row).count() == 4


def test_failed_changes_are_not_recorded(client, fake_github):
    client.patch("/gists/0123456789abcdef0123456789abcdef", json={"description": "x"})
    client.post("/gists", json={"files": [{"filename": "a.txt", "content": " "}]})
    assert client.get("/gists/local").json["gists"] == []
    response = client.get("/gists/local/0123456789abcdef0123456789abcdef")
    assert response.status_code == 404 and response.json["error"]["code"] == "gist_not_recorded"


def test_local_list_pages_with_a_cursor_newest_first(make_app, fake_github, database_url):
    client = make_app(**github_settings(fake_github), DATABASE_URL=database_url).test_client()
    with database.connection_context():
        GistRevision.delete().execute()
        Gist.delete().execute()
    made = [create(client, {"description": f"n{n}", "files": [{"filename": "a.txt", "content": "a"}]})["id"]
            for n in range(5)]
    seen, cursor = [], None
    for _ in range(5):
        page = client.get("/gists/local?limit=2" + (f"&cursor={cursor}" if cursor else "")).json
        seen += [g["id"] for g in page["gists"]]
        assert all(g["last_revision"]["action"] == "create" for g in page["gists"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == made[::-1]


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "cursor=abc", "cursor=-1"])
def test_local_list_rejects_bad_queries(client, query):
    assert client.get(f"/gists/local?{query}").status_code == 400


def test_endpoints_are_documented(client):
    paths = client.get("/openapi.json").json["paths"]
    assert {"post", "get"} <= set(paths["/gists"]) and {"get", "patch", "delete"} <= set(paths["/gists/{gist_id}"])
    assert "post" in paths["/chat/gist"] and "get" in paths["/gists/local"]


def test_the_fake_runs_from_the_command_line(tmp_path: Path):
    import subprocess
    import sys

    import requests

    process = subprocess.Popen([sys.executable, "-m", "tests.fakes.github_api", "--port", "0"],
                               cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip().split("=", 1)[1]
        token = process.stdout.readline().strip().split("=", 1)[1]
        answer = requests.get(f"{url}/user", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert answer.json()["login"] == "octocat"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_description_only_update_sends_no_files(client, fake_github):
    gist = create(client)
    response = client.patch(f"/gists/{gist['id']}", json={"description": "Only this"})
    assert response.status_code == 200 and response.json["description"] == "Only this"
    assert fake_github.writes[-1].json == {"description": "Only this"}
    assert response.json["files"][0]["filename"] == "sample.txt"


def test_behind_the_local_proxy_the_forwarded_address_is_recorded(make_app, fake_github):
    client = make_app(TRUSTED_PROXIES=1, **github_settings(fake_github)).test_client()
    gist = create(client, **{"X-Forwarded-For": "203.0.113.9, 10.0.0.7"})
    assert client.get(f"/gists/local/{gist['id']}").json["revisions"][0]["client_ip"] == "10.0.0.7"


def test_without_a_trusted_proxy_a_forwarded_address_is_not_believed(client):
    gist = create(client, **{"X-Forwarded-For": "10.0.0.7"})
    assert client.get(f"/gists/local/{gist['id']}").json["revisions"][0]["client_ip"] == "127.0.0.1"
