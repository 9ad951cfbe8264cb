"""GitHub: the REST client (`client`), gists (`gists`) and, for deployments, repositories (`repos`).

`client_from_config` makes the one client of a process (`create_app` keeps it in
`app.extensions["github"]`), with the providers' connect timeout and first backoff
(`CONNECT_TIMEOUT_S`, `RETRY_BACKOFF_S`) and `GITHUB_MAX_RATE_WAIT_S`; without a token it is None
and `require_client` answers 503 naming `GITHUB_TOKEN`.
"""
from __future__ import annotations

from typing import Any

from app.core.errors import NotConfigured
from app.integrations.github.client import GitHubClient


def client_from_config(config: dict[str, Any]) -> GitHubClient | None:
    """The process's GitHub client, or None when no `GITHUB_TOKEN` (or `GITHUB_PAT`) is set."""
    if not config.get("GITHUB_TOKEN"):
        return None
    return GitHubClient(config["GITHUB_TOKEN"], config.get("GITHUB_API_URL") or "https://api.github.com",
                        timeout=(config.get("CONNECT_TIMEOUT_S", 5), config.get("GITHUB_READ_TIMEOUT_S", 30)),
                        max_rate_wait=config.get("GITHUB_MAX_RATE_WAIT_S", 60),
                        backoff=config.get("RETRY_BACKOFF_S", 0.5))


def require_client(client: GitHubClient | None, needed_to: str = "write gists") -> GitHubClient:
    """`client`, or a 503 that names the variable to set and what the token must be allowed to do."""
    if client is None:
        raise NotConfigured(f"GitHub is not configured: set GITHUB_TOKEN (or GITHUB_PAT) to a token that may "
                            f"{needed_to}.", code="github_not_configured", details={"variable": "GITHUB_TOKEN"})
    return client


__all__ = ["GitHubClient", "client_from_config", "require_client"]
