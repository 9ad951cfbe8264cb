"""What a credential looks like, written once: log redaction hides these shapes (`app.core.logs`) and the
deployment pipeline refuses generated files that hold one (`app.deployments.generate.find_secret`).

`TOKEN_SHAPES` matches bearer tokens, OpenAI/Anthropic keys (`sk-...`), this server's client keys
(`ais-...`), GitHub tokens (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`), `x-api-key:` headers,
`key=` parameters, AWS access key ids (`AKIA...`) and PEM private keys. Its `keep` group is the harmless
prefix ("Bearer ", "sk-proj-", "-----BEGIN RSA PRIVATE KEY-----") that `redact_tokens` leaves in place before `***`.
`sk-` counts only at the start of a word, so CSS classes such as `task-container` are not keys.
"""
from __future__ import annotations

import re

_TOKEN = r"[A-Za-z0-9._\-]{6,}"
TOKEN_SHAPES = re.compile(
    r"(?i:(?P<keep>bearer\s+|\bsk-(?:ant-|proj-)?|\bais-|gh[pousr]_|github_pat_|x-api-key:\s*|key=)" + _TOKEN + ")"
    r"|AKIA[0-9A-Z]{16}"
    r"|(?P<pem>-----BEGIN [A-Z ]*PRIVATE KEY-----)[A-Za-z0-9+/=\s]*")


def redact_tokens(text: str) -> str:
    """`text` with every token-shaped string replaced by its prefix and `***`."""
    return TOKEN_SHAPES.sub(lambda m: (m["keep"] or m["pem"] or "") + "***", text)


# What refuses a generated file must not fire on ordinary code or prose ("Bearer tokens", `key=value`
# in a URL, `const key=localStorage...`), or a valid app would fail its round: only unmistakable
# credential shapes, long enough to be real.
CREDENTIAL_SHAPES = re.compile(
    r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_\-]{20,}|\bais-[A-Za-z0-9_\-]{40,}|\bgh[pousr]_[A-Za-z0-9]{30,}"
    r"|\bgithub_pat_[A-Za-z0-9_]{30,}"
    r"|\bAKIA[0-9A-Z]{16}\b|-----BEGIN [A-Z ]*PRIVATE KEY-----")


def has_token(text: str) -> bool:
    """Whether `text` holds an unmistakable credential (for refusing files, not for redacting logs)."""
    return CREDENTIAL_SHAPES.search(text) is not None
