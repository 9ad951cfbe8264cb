"""The SSRF guard: what a caller-supplied URL (an `evaluation_url`, an attachment, a Pages URL) may reach.

A caller who can make the server send requests could otherwise aim them at the server's own network
(cloud metadata at 169.254.169.254, a database on 127.0.0.1, an intranet host). So:

- only `http` and `https` URLs are accepted, without credentials in them;
- the host is resolved and *every* address it resolves to must be public: private, loopback,
  link-local, multicast, reserved, unspecified and shared (CGNAT) addresses are refused, as are
  IPv4-mapped IPv6 forms of them, 6to4 (`2002::/16`) and site-local (`fec0::/10`) addresses;
- hosts listed in `NOTIFY_ALLOW_HOSTS` (names or literal addresses, compared case-insensitively)
  skip the address check: tests list `127.0.0.1`, a deployment may list an internal evaluator;
- the request is then sent to the address that was checked (the connection is pinned to it, with
  the original name kept for `Host`, SNI and certificate checks), so a DNS answer that changes
  between the check and the connection (DNS rebinding) cannot redirect it; redirects are not
  followed.

`check_url` raises `BadRequest` (a caller's mistake at submission time); `guarded_request` sends
one request through the same check.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from app.core.clock import within
from app.core.errors import BadRequest
from app.core.schemas import IMAGE_MEDIA_TYPES

Resolver = Callable[[str, int], list[str]]
CGNAT = ipaddress.ip_network("100.64.0.0/10")
# Not `is_private` in Python's table, yet no public service lives there: 6to4 embeds any IPv4 address
# (2002:7f00:1:: is 127.0.0.1) and site-local is the deprecated IPv6 intranet range.
UNROUTED_V6 = (ipaddress.ip_network("2002::/16"), ipaddress.ip_network("fec0::/10"))


class BlockedURL(BadRequest):
    code = "url_not_allowed"


@dataclass(frozen=True)
class Target:
    """A checked URL: its scheme, host and port, and the address a connection must use."""

    url: str
    scheme: str
    host: str
    port: int
    address: str


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (A and AAAA)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise BlockedURL(f"The host {host!r} does not resolve: {exc}.", code="url_unresolvable") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_public(address: str) -> bool:
    """True for a globally routable unicast address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv4Address) and ip in CGNAT:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and any(ip in network for network in UNROUTED_V6):
        return False
    return not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
                or ip.is_unspecified or not ip.is_global)


def check_url(url: str, allow_hosts: Iterable[str] = (), resolver: Resolver = system_resolver) -> Target:
    """The checked target of `url`; `BlockedURL` (400) when it may not be reached."""
    if not isinstance(url, str) or len(url) > 2048:
        raise BlockedURL("The URL must be a string of at most 2048 characters.")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise BlockedURL("Only http and https URLs are allowed.")
    if parts.username or parts.password:
        raise BlockedURL("URLs with credentials are not allowed.")
    try:
        host, port = (parts.hostname or "").rstrip("."), parts.port
    except ValueError:
        raise BlockedURL("The URL's port is not valid.") from None
    if not host:
        raise BlockedURL("The URL has no host.")
    port = port or (443 if parts.scheme == "https" else 80)
    allowed = {h.strip().lower().strip("[]") for h in allow_hosts if h.strip()}
    addresses = [host] if _is_ip(host) else resolver(host, port)
    if not addresses:
        raise BlockedURL(f"The host {host!r} does not resolve.", code="url_unresolvable")
    if host.lower() not in allowed:
        blocked = [a for a in addresses if not is_public(a) and a.lower() not in allowed]
        if blocked:
            raise BlockedURL(f"The host {host!r} resolves to a private, loopback or reserved address "
                             f"({blocked[0]}); list it in NOTIFY_ALLOW_HOSTS to allow it.")
    return Target(urlunsplit(parts._replace(fragment="")), parts.scheme, host, port, addresses[0])


def guarded_request(method: str, url: str, *, allow_hosts: Iterable[str] = (), resolver: Resolver = system_resolver,
                    timeout: Any = (5, 15), max_bytes: int | None = None, **kwargs: Any) -> requests.Response:
    """Send one request to `url` after `check_url`, pinned to the checked address, redirects not followed.

    With `max_bytes`, a longer body raises `BlockedURL` instead of being read whole."""
    target = check_url(url, allow_hosts, resolver)
    with requests.Session() as session:
        session.trust_env = False
        session.mount(f"{target.scheme}://", PinnedAdapter(target))
        response = session.request(method, target.url, timeout=timeout, allow_redirects=False,
                                   stream=max_bytes is not None, **kwargs)
        if max_bytes is not None:
            body = bytearray()
            for chunk in response.iter_content(65536):
                body += chunk
                if len(body) > max_bytes:
                    response.close()
                    raise BlockedURL(f"{target.host} sent more than {max_bytes} bytes.", code="download_too_large")
            response._content = bytes(body)
        return response


def fetch_image(url: str, max_bytes: int, *, allow_hosts: Iterable[str] = (), timeout: float,
                resolver: Resolver = system_resolver) -> tuple[str, bytes]:
    """(media type, bytes) of the image at a caller's `url`, through the guard, at most `max_bytes`, all
    of it (connection, headers and body) within `timeout` seconds; `BadRequest` naming the URL's problem
    otherwise (it is the caller's URL). A timeout given to requests bounds each read, not the whole:
    an image dripped a byte a second held a request 39 s with a timeout of 10 s, so the whole fetch
    runs under one deadline (`within`: a `gevent.Timeout` in the server's gevent workers)."""
    try:
        with within(timeout, FetchTimedOut):
            response = guarded_request("GET", url, allow_hosts=allow_hosts, resolver=resolver,
                                       timeout=(timeout, timeout), max_bytes=max_bytes)
    except (requests.RequestException, FetchTimedOut) as exc:
        raise BadRequest(f"The image URL could not be fetched within {timeout:g}s: {type(exc).__name__}.",
                         code="image_fetch_failed", details={"param": "messages"}) from None
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if response.status_code != 200 or media_type not in IMAGE_MEDIA_TYPES:
        raise BadRequest(f"The image URL answered {response.status_code} with {media_type or 'no'} content, "
                         f"not an image of a supported type ({', '.join(IMAGE_MEDIA_TYPES)}).",
                         code="image_fetch_failed", details={"param": "messages"})
    return media_type, response.content


class FetchTimedOut(Exception):
    """An image fetch outlived its overall deadline."""


class PinnedAdapter(HTTPAdapter):
    """Connects to `target.address` whatever the URL's host says, keeping the name for TLS."""

    def __init__(self, target: Target):
        self.target = target
        super().__init__(max_retries=0)

    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
        if self.target.scheme == "https":
            pool_kwargs.update(server_hostname=self.target.host, assert_hostname=self.target.host)
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)

    def send(self, request, *args: Any, **kwargs: Any) -> requests.Response:
        parts = urlsplit(request.url)
        if (parts.hostname or "").rstrip(".").lower() != self.target.host.lower():
            raise BlockedURL("Refusing a request to a host that was not checked.")
        address = f"[{self.target.address}]" if ":" in self.target.address else self.target.address
        request.headers["Host"] = parts.netloc.rsplit("@", 1)[-1]
        request.url = urlunsplit(parts._replace(netloc=f"{address}:{self.target.port}"))
        return super().send(request, *args, **kwargs)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True
