"""What every cloud kind's `build(name, spec, options)` shares: checking the endpoint's spec keys, and
reading the options the models-file loader passes to every kind.

`spec` holds the endpoint's own settings (secrets already resolved); a key the kind does not know,
or a required key missing or empty, is a `ValueError` naming the key, which the loader reports with
its line. The message never holds a value: a spec is full of secrets.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

DEFAULT_CONNECT_TIMEOUT_S = 5.0  # as CONNECT_TIMEOUT_S, READ_TIMEOUT_S... in app/core/config.py
DEFAULT_READ_TIMEOUT_S = 120.0
DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_MAX_TOKENS = 4096


def checked_spec(kind: str, spec: Mapping[str, Any], required: tuple[str, ...],
                 optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """`spec` as a dict, once every key is known to `kind` and every required one is set."""
    unknown = sorted(set(spec) - set(required) - set(optional))
    if unknown:
        raise ValueError(f"{kind}: unknown key {unknown[0]!r} (known: {', '.join((*required, *optional))})")
    for key in required:
        if spec.get(key) in (None, ""):
            raise ValueError(f"{kind}: missing required key {key!r}")
    return dict(spec)


def exactly_one(kind: str, spec: Mapping[str, Any], keys: tuple[str, str]) -> None:
    """Two keys of which one, and only one, must be set (two ways to authenticate)."""
    given = [key for key in keys if spec.get(key)]
    if len(given) != 1:
        raise ValueError(f"{kind}: set one of {keys[0]!r} or {keys[1]!r}, not {'both' if given else 'neither'}")


@dataclass(frozen=True)
class EndpointOptions:
    """The options every kind takes, with the server's defaults for those not given."""

    default_model: str
    fallback_models: list[str] = field(default_factory=list)
    embedding_models: list[str] = field(default_factory=list)
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S
    read_timeout: float = DEFAULT_READ_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_tokens: int = DEFAULT_MAX_TOKENS
    fetch_image: Callable[[str], tuple[str, bytes]] | None = None

    @classmethod
    def of(cls, kind: str, options: Mapping[str, Any]) -> EndpointOptions:
        """The options of an endpoint; `default_model` is required, unknown keys are a ValueError."""
        known = {name for name in cls.__dataclass_fields__}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"{kind}: unknown option {unknown[0]!r}")
        if not options.get("default_model"):
            raise ValueError(f"{kind}: missing required option 'default_model'")
        given = {key: value for key, value in options.items() if value is not None}
        for key in ("fallback_models", "embedding_models"):
            if key in given:
                given[key] = list(given[key])
        return cls(**given)

    def models(self) -> dict[str, Any]:
        return {"default_model": self.default_model, "fallback_models": self.fallback_models}

    def client(self) -> dict[str, Any]:
        return {"connect_timeout": self.connect_timeout, "read_timeout": self.read_timeout,
                "max_connections": self.max_connections}
