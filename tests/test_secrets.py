"""One set of token shapes: what the logs hide is what a generated app may not hold."""
from __future__ import annotations

import pytest

from app.core.credentials import redact_tokens
from app.core.logs import RedactSecrets
from app.deployments.generate import find_secret

PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n" \
      "-----END RSA PRIVATE KEY-----"


CREDENTIALS = [
    ("key sk-proj-abcdefghijklmnopqrstuvwx", "abcdefghijklmnopqrstuvwx"),
    ("key sk-ant-api03-abcdefghijklmnopqrst", "api03-abcdefghijklmnopqrst"),
    ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789", "abcdefghijklmnopqrstuvwxyz"),
    ("github_pat_11ABCDEFG0123456789_abcdefghijk", "11ABCDEFG0123456789"),
    ("aws AKIAIOSFODNN7EXAMPLE here", "AKIAIOSFODNN7EXAMPLE"),
    (PEM, "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu"),
]
LOG_ONLY = [  # hidden in logs, where a false alarm costs nothing; fine in a generated app
    ("Authorization: Bearer tok_abcdefghijkl", "tok_abcdefghijkl"),
    ("x-api-key: abcdef123456", "abcdef123456"),
    ("GET /v1/models?key=AIzaSyabcdef123", "AIzaSyabcdef123"),
]


@pytest.mark.parametrize("text, secret", CREDENTIALS + LOG_ONLY)
def test_each_shape_is_redacted_in_logs(text, secret):
    redacted = RedactSecrets([]).redact(text)
    assert secret not in redacted and "***" in redacted


@pytest.mark.parametrize("text, secret", CREDENTIALS)
def test_unmistakable_credentials_are_refused_in_generated_files(text, secret):
    assert find_secret({"index.html": f"<p>{text}</p>"}) == "index.html"


def test_the_harmless_prefix_stays_so_a_reader_knows_what_was_hidden():
    assert redact_tokens("Bearer tok_abcdefghijkl") == "Bearer ***"
    assert redact_tokens("sk-proj-abcdefghijklmnop") == "sk-proj-***"
    assert redact_tokens(PEM).startswith("-----BEGIN RSA PRIVATE KEY-----***")


@pytest.mark.parametrize("text", [
    ".task-container { display: flex; }",  # "sk-" inside a word is not a key
    "const headers = {Authorization: `Bearer ${token}`};",
    "A static page with no build step.",
])
def test_ordinary_code_is_not_a_secret(text):
    assert find_secret({"app.js": text}) is None and redact_tokens(text) == text


@pytest.mark.parametrize("text", ["Send Bearer tokens in the Authorization header.",
                                  "const key=localStorage.getItem('name');", "fetch(`/api?key=${value}`)",
                                  "Ask for an sk-something key in the settings."])
def test_ordinary_prose_and_code_never_fail_a_generated_app(text):
    assert find_secret({"README.md": text}) is None
