"""The server secret client API keys are hashed with.

`KEY_HASH_SECRET` when set (required when several machines share one database). Otherwise one is
made on first use and kept in `KEY_HASH_SECRET_FILE` (mode 0600): written to a private temporary
file, then hard-linked into place, so two workers starting at once agree on the first one written
and none ever reads a half-written file. Losing that file invalidates every key (rotate them all).
"""
from __future__ import annotations

import os
import secrets
from typing import Any

from app.core.config import project_root


def hash_secret(config: dict[str, Any]) -> bytes:
    if config.get("KEY_HASH_SECRET"):
        return str(config["KEY_HASH_SECRET"]).encode("utf-8")
    path = config.get("KEY_HASH_SECRET_FILE") or os.path.join("data", "key_hash_secret")
    if not os.path.isabs(path):
        path = os.path.join(project_root(), path)
    return read_or_create(path)


def read_or_create(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read().strip()
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.{os.getpid()}.{secrets.token_hex(4)}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(secrets.token_urlsafe(48).encode("ascii"))
    try:
        os.link(temporary, path)  # fails if another process got there first: its secret wins
    except FileExistsError:
        pass
    finally:
        os.unlink(temporary)
    with open(path, "rb") as handle:
        return handle.read().strip()
