"""The SSRF guard: which URLs may be reached, and that a request goes to the address that was checked."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.integrations.netguard import BlockedURL, check_url, guarded_request, is_public
from tests.fakes.evaluator import FakeEvaluator


def resolver_of(table: dict[str, list[str]]):
    def resolve(host: str, port: int) -> list[str]:
        return table[host]
    return resolve


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.8", "172.16.4.1", "192.168.1.1", "169.254.169.254",
                                     "100.64.0.1", "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255", "::1",
                                     "fe80::1", "fc00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::"])
def test_private_and_special_addresses_are_not_public(address):
    assert not is_public(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are(address):
    assert is_public(address)


@pytest.mark.parametrize("url, message", [
    ("ftp://example.com/x", "Only http and https"),
    ("file:///etc/passwd", "Only http and https"),
    ("gopher://example.com", "Only http and https"),
    ("http://user:pw@example.com/", "credentials"),
    ("http:///nohost", "no host"),
    ("http://127.0.0.1:8080/", "private, loopback"),
    ("http://[::1]/", "private, loopback"),
    ("http://169.254.169.254/latest/meta-data/", "private, loopback"),
    ("http://internal.example/", "private, loopback"),
    ("http://mixed.example/", "private, loopback"),  # one private answer among public ones is enough
])
def test_refused_urls(url, message):
    table = {"internal.example": ["10.1.2.3"], "mixed.example": ["93.184.216.34", "192.168.0.5"]}
    with pytest.raises(BlockedURL) as caught:
        check_url(url, resolver=resolver_of(table))
    assert message in caught.value.message
    assert caught.value.status == 400


@pytest.mark.parametrize("url", ["http://localhost/", "http://2130706433/", "http://0x7f.1/", "http://127.1/"])
def test_loopback_spellings_are_resolved_then_refused(url):
    with pytest.raises(BlockedURL, match="private, loopback"):
        check_url(url)  # the system resolver: these never leave the machine


def test_allowed_hosts_skip_the_address_check():
    resolve = resolver_of({"evaluator.internal": ["10.0.0.9"], "localhost": ["127.0.0.1"]})
    assert check_url("http://127.0.0.1:9/notify", ["127.0.0.1"], resolve).address == "127.0.0.1"
    assert check_url("https://Evaluator.Internal/n", ["evaluator.internal"], resolve).port == 443
    assert check_url("http://localhost:1/", ["127.0.0.1"], resolve).address == "127.0.0.1"  # allowed by address
    with pytest.raises(BlockedURL):
        check_url("http://10.0.0.10/", ["127.0.0.1"], resolve)


def test_a_public_name_resolves_to_its_address():
    target = check_url("https://eval.example.com:8443/path?q=1#frag", resolver=resolver_of(
        {"eval.example.com": ["93.184.216.34"]}))
    assert (target.host, target.port, target.address) == ("eval.example.com", 8443, "93.184.216.34")
    assert target.url == "https://eval.example.com:8443/path?q=1"


def test_the_request_goes_to_the_checked_address_with_the_original_host():
    with FakeEvaluator() as evaluator:
        port = int(evaluator.url.rsplit(":", 1)[1])
        resolve = resolver_of({"evaluator.test": ["127.0.0.1"]})
        response = guarded_request("POST", f"http://evaluator.test:{port}/notify", json={"a": 1},
                                   allow_hosts=["evaluator.test"], resolver=resolve)
        assert response.status_code == 200
        seen = evaluator.requests[-1]
        assert seen.headers["host"] == f"evaluator.test:{port}" and seen.json == {"a": 1}


class _Redirect(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/big":
            self.send_response(200)
            self.send_header("Content-Length", str(3_000))
            self.end_headers()
            self.wfile.write(b"x" * 3_000)
            return
        self.send_response(302)
        self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def redirecting_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_redirects_are_not_followed_and_bodies_are_bounded(redirecting_server):
    response = guarded_request("GET", redirecting_server + "/", allow_hosts=["127.0.0.1"])
    assert response.status_code == 302  # returned as is: the metadata address was never asked
    assert len(guarded_request("GET", redirecting_server + "/big", allow_hosts=["127.0.0.1"],
                               max_bytes=5_000).content) == 3_000
    with pytest.raises(BlockedURL, match="more than 1000 bytes"):
        guarded_request("GET", redirecting_server + "/big", allow_hosts=["127.0.0.1"], max_bytes=1_000)


def test_loopback_is_refused_without_the_allow_list(redirecting_server):
    with pytest.raises(BlockedURL):
        guarded_request("GET", redirecting_server + "/")
