"""The provider registry: names (and their aliases) to providers, built once from configuration.

It also answers the routing questions: which (provider, model) pairs to try, in order, for a
request (`plan`, `routes_for_model`), and which provider serves a model named in the
OpenAI-compatible API (`resolve_model`, `resolve_embedding_model`). A provider that is known but not
configured is kept as the variable to set, so callers get a 503 that says how to fix it.

Routing never surprises: a model that names one provider (`provider/model`, a provider's name, one
of its models) is answered by that provider only, its own fallback models included; crossing to
another vendor (PROVIDER_FALLBACKS) happens only for aliases and the default provider.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from app.core.errors import NotConfigured, NotFound
from app.llm.providers.base import Provider

ALIASES = {"gpt": "openai", "chatgpt": "openai", "claude": "anthropic", "google": "gemini"}
MODEL_FAMILIES = {"openai": ("gpt-", "chatgpt-", "o1", "o3", "o4"), "anthropic": ("claude-",), "gemini": ("gemini-",)}


@dataclass(frozen=True)
class Route:
    provider: Provider
    model: str


class UnknownProvider(NotFound):
    code = "unknown_provider"


class UnknownModel(NotFound):
    code = "model_not_found"


class Registry:
    def __init__(self, providers: dict[str, Provider], missing: dict[str, str], default: str = "",
                 provider_fallbacks: list[str] | None = None, model_aliases: dict[str, str] | None = None,
                 missing_models: dict[str, list[str]] | None = None):
        """`missing` maps each known but unconfigured provider to the variable that turns it on;
        `missing_models` to the models configured for it all the same (`OPENAI_MODEL_DEFAULT`...)."""
        self.providers = providers
        self.missing = missing
        self.missing_models = missing_models or {}
        self.default_name = default
        self.provider_fallbacks = provider_fallbacks or []
        self.model_aliases = model_aliases or {}

    @property
    def names(self) -> list[str]:
        return [*self.providers, *self.missing]

    def canonical(self, name: str) -> str:
        name = name.strip().lower()
        return ALIASES.get(name, name)

    def get(self, name: str) -> Provider:
        """The provider called `name` (or an alias); 404 if unknown, 503 naming the variable if unset."""
        name = self.canonical(name)
        if name in self.providers:
            return self.providers[name]
        if name in self.missing:
            raise NotConfigured(f"Provider '{name}' is not configured: set {self.missing[name]}.",
                                details={"provider": name, "variable": self.missing[name]})
        raise UnknownProvider(f"Unknown provider '{name}'. Known providers: {', '.join(self.names)}.",
                              details={"param": "provider"})

    def default(self) -> Provider:
        if self.default_name:
            return self.get(self.default_name)
        if not self.providers:
            raise NotConfigured("No LLM provider is configured: set OPENAI_API_KEY, ANTHROPIC_API_KEY, "
                                "GEMINI_API_KEY, OLLAMA_HOST or LITELLM_API_BASE.",
                                details={"variable": "OPENAI_API_KEY"})
        return next(iter(self.providers.values()))

    def plan(self, provider_name: str | None = None, model: str | None = None) -> list[Route]:
        """Routes to try in order: the model (or the provider's default), the provider's fallback models,
        then each configured provider of PROVIDER_FALLBACKS with its default and fallbacks."""
        first = self.get(provider_name) if provider_name else self.default()
        routes = [Route(first, m) for m in unique([model or first.default_model, *first.fallback_models])]
        return routes + self.fallback_routes({first.name})

    def routes_for_model(self, model: str) -> list[Route]:
        """Routes for `model` of the OpenAI API: an alias's chain (each target with its provider's
        fallback models) then PROVIDER_FALLBACKS; any other model, its own provider only."""
        if model not in self.model_aliases:
            provider, bare = self.resolve_model(model)
            return [Route(provider, m) for m in unique([bare, *provider.fallback_models])]
        routes: list[Route] = []
        for target in self.model_aliases[model].split("|"):
            provider, bare = self.resolve_model(target.strip())
            routes += [Route(provider, m) for m in unique([bare, *provider.fallback_models])]
        routes += self.fallback_routes({route.provider.name for route in routes})
        return list({(r.provider.name, r.model): r for r in routes}.values())

    def fallback_routes(self, tried: set[str]) -> list[Route]:
        """The default and fallback models of each PROVIDER_FALLBACKS provider not in `tried`."""
        routes: list[Route] = []
        for name in self.provider_fallbacks:
            provider = self.providers.get(self.canonical(name))
            if provider is not None and provider.name not in tried:
                routes += [Route(provider, m) for m in unique([provider.default_model, *provider.fallback_models])]
        return routes

    def resolve_model(self, model: str) -> tuple[Provider, str]:
        """`model` of the OpenAI API: an alias (its first target), `provider/model`, a provider name, a
        configured model, or a model of a vendor's family (`gpt-...`, `claude-...`, `gemini-...`). A
        model that belongs to a known provider without its key or address (by prefix, by family, or
        configured as one of its models) is a 503 naming the variable to set; any other model is a 404."""
        target = self.model_aliases.get(model, model).split("|")[0].strip()
        if "/" in target:
            name, _, bare = target.partition("/")
            if self.canonical(name) in self.names:
                return self.serving(self.canonical(name), bare)
        if self.canonical(target) in self.names:
            provider = self.get(target)
            return provider, provider.default_model
        for provider in self.providers.values():
            if target in provider.list_models():
                return provider, target
        for name, models in self.missing_models.items():
            if target in models:
                return self.serving(name, target)
        for name, prefixes in MODEL_FAMILIES.items():
            if target.startswith(prefixes) and name in self.names:
                return self.serving(name, target)
        raise UnknownModel(f"The model '{model}' does not exist or is not served here; GET /v1/models lists them.",
                           details={"param": "model"})

    def serving(self, name: str, model: str) -> tuple[Provider, str]:
        """The provider `name` (canonical) with `model`; 503 naming the variable when it is not configured."""
        if name in self.missing:
            variable = self.missing[name]
            raise NotConfigured(f"The model '{model}' belongs to provider '{name}', which is not configured: "
                                f"set {variable}.", details={"provider": name, "variable": variable, "param": "model"})
        return self.providers[name], model

    def configured_models(self, provider_name: str) -> set[str]:
        """The models configured for a provider: its default and fallbacks, and the targets of its aliases."""
        provider = self.providers.get(provider_name)
        listed = set(provider.list_models()) if provider is not None else set()
        for chain in self.model_aliases.values():
            for target in chain.split("|"):
                name, _, bare = target.strip().partition("/")
                if self.canonical(name) == provider_name:
                    listed.add(bare)
        return listed

    def resolve_embedding_model(self, model: str) -> tuple[Provider, str]:
        """An embedding model: `provider/model`, or a model one provider lists in its embedding models."""
        name, _, bare = model.partition("/")
        if bare and self.canonical(name) in self.names:
            provider = self.get(name)
            if bare in provider.embedding_models:
                return provider, bare
        for provider in self.providers.values():
            if model in provider.embedding_models:
                return provider, model
        raise UnknownModel(f"The embedding model '{model}' is not served here; GET /v1/models lists them.",
                           details={"param": "model"})

    def models(self) -> list[tuple[str, str, str]]:
        """(model id, owner, mode) for /v1/models: aliases, then every configured provider's chat models,
        then its embedding models; mode is "chat" or "embedding"."""
        listed = [(alias, self.model_aliases[alias].partition("/")[0], "chat") for alias in self.model_aliases]
        for name, provider in self.providers.items():
            chat = unique(provider.list_models())
            listed += [(f"{name}/{m}", name, "chat") for m in chat]
            listed += [(f"{name}/{m}", name, "embedding") for m in unique(provider.embedding_models) if m not in chat]
        return listed


def unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))


def names(value: str | None) -> list[str]:
    """A comma-separated setting of model names as a list."""
    return [m.strip() for m in (value or "").split(",") if m.strip()]


def build_registry(config: dict[str, Any], fetch_image: Callable[..., tuple[str, bytes]] | None = None) -> Registry:
    """Providers for every configured vendor. Each SDK is imported only when its provider is
    configured: the three SDKs together take seconds to import, and start-up time matters.
    `fetch_image` downloads an image URL for a vendor that needs the bytes (Gemini): an
    `app.llm.images.ImageFetcher`."""
    client_options = {"connect_timeout": config["CONNECT_TIMEOUT_S"], "read_timeout": config["READ_TIMEOUT_S"],
                      "max_connections": config["WEB_WORKER_CONNECTIONS"]}
    providers: dict[str, Provider] = {}
    missing: dict[str, str] = {}

    def models(prefix: str, default_key: str | None = None) -> dict[str, Any]:
        return {"default_model": config.get(default_key or f"{prefix}_MODEL_DEFAULT") or "",
                "fallback_models": names(config.get(f"{prefix}_MODEL_FALLBACKS")), **client_options}

    def configured_models(prefix: str, default_key: str | None = None) -> list[str]:
        chosen = models(prefix, default_key)
        return unique([chosen["default_model"], *chosen["fallback_models"]])

    def openai_compatible(name: str, api_key: str, base_url: str, prefix: str, default_key: str | None = None,
                          **options: Any):
        from app.llm.providers.openai_compatible import OpenAICompatibleProvider

        return OpenAICompatibleProvider(name, api_key=api_key, base_url=base_url, **models(prefix, default_key),
                                        embedding_models=names(config.get(f"{prefix}_EMBEDDING_MODELS")), **options)

    def anthropic():
        from app.llm.providers.anthropic_messages import AnthropicProvider

        return AnthropicProvider(api_key=config["ANTHROPIC_API_KEY"], base_url=config["ANTHROPIC_BASE_URL"],
                                 max_tokens=config["ANTHROPIC_MAX_TOKENS"], **models("ANTHROPIC"))

    def gemini():
        from app.llm.providers.google_gemini import GeminiProvider

        extra: dict[str, Any] = {"fetch_image": fetch_image} if fetch_image else {}
        return GeminiProvider(api_key=config["GEMINI_API_KEY"], base_url=config["GEMINI_BASE_URL"],
                              embedding_models=names(config.get("GEMINI_EMBEDDING_MODELS")),
                              **extra, **models("GEMINI"))

    def compatible_builder(name: str, prefix: str) -> Callable[[], Provider]:
        """The builder of a named OpenAI-compatible endpoint (`OPENAI_COMPATIBLE=vllm`: VLLM_API_BASE...)."""
        return lambda: openai_compatible(name, config.get(f"{prefix}_API_KEY", ""), config[f"{prefix}_API_BASE"],
                                         prefix)

    builders = [
        ("openai", "OPENAI_API_KEY", configured_models("OPENAI"), lambda: openai_compatible(
            "openai", config["OPENAI_API_KEY"], config["OPENAI_BASE_URL"], "OPENAI",
            max_tokens_field="max_completion_tokens", developer_role=True)),
        ("anthropic", "ANTHROPIC_API_KEY", configured_models("ANTHROPIC"), anthropic),
        ("gemini", "GEMINI_API_KEY", configured_models("GEMINI"), gemini),
        ("ollama", "OLLAMA_HOST", configured_models("OLLAMA"), lambda: openai_compatible(
            "ollama", "ollama", config["OLLAMA_HOST"].rstrip("/") + "/v1", "OLLAMA")),
        ("litellm", "LITELLM_API_BASE", configured_models("LITELLM", "LITELLM_MODEL"), lambda: openai_compatible(
            "litellm", config["LITELLM_API_KEY"], config["LITELLM_API_BASE"], "LITELLM", "LITELLM_MODEL")),
    ]
    for endpoint in config["OPENAI_COMPATIBLE"]:
        name, prefix = endpoint.lower(), endpoint.upper().replace("-", "_")
        builders.append((name, f"{prefix}_API_BASE", configured_models(prefix), compatible_builder(name, prefix)))
    missing_models: dict[str, list[str]] = {}
    for name, variable, model_names, build in builders:
        if config.get(variable):
            providers[name] = build()
        else:
            missing[name] = variable
            missing_models[name] = model_names
    aliases = dict(pair.split("=", 1) for pair in config["MODEL_ALIASES"] if "=" in pair)
    return Registry(providers, missing, default=config["DEFAULT_PROVIDER"],
                    provider_fallbacks=config["PROVIDER_FALLBACKS"], model_aliases=aliases,
                    missing_models=missing_models)
