"""The provider registry: names (and their aliases) to providers, built once from configuration.

It also answers the routing questions: which (provider, model) pairs to try, in order, for a
request (`plan`, `routes_for_model`), and which provider serves a model named in the
OpenAI-compatible API (`resolve_model`, `resolve_embedding_model`). A provider that is known but not
configured is kept as the variable to set, so callers get a 503 that says how to fix it.

Routing never surprises: a model that names one provider (`provider/model`, a provider's name, one
of its models) is answered by that provider only, its own fallback models included; crossing to
another vendor (PROVIDER_FALLBACKS) happens only for aliases and the default provider.

A plan is a list of routes in tiers: the routes of one tier serve the same model (the upstreams of a
model group, spread by weight), each target of an alias or PROVIDER_FALLBACKS is the next tier, and
a tier's provider's fallback models ride along marked `fallback` (see `app.llm.gateway` for the
order in which a failure moves through them).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from typing import Any, Callable

from app.core.errors import APIError, NotConfigured, NotFound
from app.llm import modelsfile
from app.llm.providers.base import Provider

ALIASES = {"gpt": "openai", "chatgpt": "openai", "claude": "anthropic", "google": "gemini"}
MODEL_FAMILIES = {"openai": ("gpt-", "chatgpt-", "o1", "o3", "o4"), "anthropic": ("claude-",), "gemini": ("gemini-",)}


@dataclass(frozen=True)
class Route:
    """One upstream (a model on a provider's endpoint) as a step of a request's plan."""

    provider: Provider
    model: str
    tier: int = 0  # routes of one tier serve the same model; a vendor-wide failure moves to another tier
    fallback: bool = False  # one of the tier's provider's fallback models (for a model-specific failure)
    weight: float = 1.0  # share of the tier's requests while it is healthy
    rpm: int = 0  # the upstream's own requests per minute (0: no limit of ours)
    tpm: int = 0  # the upstream's own tokens per minute

    @property
    def upstream(self) -> str:
        """The upstream's name, as health, /admin/upstreams and the usage rows know it."""
        return f"{self.provider.name}/{self.model}"


@dataclass(frozen=True)
class ModelGroup:
    """A model name clients use, served by one or more upstreams (the models file's `models:`), with
    the model names tried after it (`fallbacks`)."""

    routes: tuple[Route, ...]
    fallbacks: tuple[str, ...] = ()


class UnknownProvider(NotFound):
    code = "unknown_provider"


class UnknownModel(NotFound):
    code = "model_not_found"


class Registry:
    def __init__(self, providers: dict[str, Provider], missing: dict[str, str], default: str = "",
                 provider_fallbacks: list[str] | None = None, model_aliases: dict[str, str] | None = None,
                 missing_models: dict[str, list[str]] | None = None, groups: dict[str, ModelGroup] | None = None):
        """`missing` maps each known but unconfigured provider to the variable that turns it on;
        `missing_models` to the models configured for it all the same (`OPENAI_MODEL_DEFAULT`...)."""
        self.providers = providers
        self.missing = missing
        self.missing_models = missing_models or {}
        self.default_name = default
        self.provider_fallbacks = provider_fallbacks or []
        self.model_aliases = model_aliases or {}
        self.groups = groups or {}
        self.prices: dict[str, dict[str, float]] = {}  # USD per million tokens, from the models file
        self.configured: dict[str, frozenset[str]] = {}  # configured_models, per provider, once served

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
        """Routes to try: the model (or the provider's default) with the provider's fallback models, then
        each configured provider of PROVIDER_FALLBACKS with its default and fallbacks, a tier each."""
        first = self.get(provider_name) if provider_name else self.default()
        routes = provider_routes(first, model or first.default_model, tier=0)
        return routes + self.fallback_routes({first.name}, tier=1)

    def routes_for_model(self, model: str) -> list[Route]:
        """Routes for `model` of the OpenAI API: a model group's upstreams then its fallbacks; an
        alias's chain (each target with its provider's fallback models) then PROVIDER_FALLBACKS; any
        other model, its own provider only. Each target is a tier."""
        targets = self.chain(model)
        routes: list[Route] = []
        for tier, target in enumerate(targets):
            if target in self.groups:
                routes += [replace(route, tier=tier) for route in self.groups[target].routes]
            else:
                provider, bare = self.resolve_model(target)
                routes += provider_routes(provider, bare, tier)
        if model in self.model_aliases:
            routes += self.fallback_routes({route.provider.name for route in routes}, tier=len(targets))
        return unique_routes(routes)

    def chain(self, model: str, seen: frozenset[str] = frozenset()) -> list[str]:
        """The model names `model` stands for, in order: an alias's targets, a group and its
        fallbacks (each expanded in turn, once)."""
        if model in seen:
            return []
        seen = seen | {model}
        if model in self.model_aliases:
            targets = self.model_aliases[model].split("|")
            return [name for target in targets for name in self.chain(target.strip(), seen)]
        if model in self.groups:
            return [model, *(name for other in self.groups[model].fallbacks for name in self.chain(other, seen))]
        return [model]

    def fallback_routes(self, tried: set[str], tier: int) -> list[Route]:
        """The default and fallback models of each PROVIDER_FALLBACKS provider not in `tried`, a tier each
        from `tier` on."""
        routes: list[Route] = []
        for name in self.provider_fallbacks:
            provider = self.providers.get(self.canonical(name))
            if provider is not None and provider.name not in tried:
                tried = tried | {provider.name}
                routes += provider_routes(provider, provider.default_model, tier)
                tier += 1
        return routes

    def resolve_model(self, model: str) -> tuple[Provider, str]:
        """`model` of the OpenAI API: an alias (its first target), `provider/model`, a provider name, a
        configured model, or a model of a vendor's family (`gpt-...`, `claude-...`, `gemini-...`). A
        model that belongs to a known provider without its key or address (by prefix, by family, or
        configured as one of its models) is a 503 naming the variable to set; any other model is a 404."""
        target = self.chain(model)[0] if model in self.model_aliases else model
        if target in self.groups:
            first = self.groups[target].routes[0]
            return first.provider, first.model
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

    def configured_models(self, provider_name: str) -> frozenset[str]:
        """The models configured for a provider: its default and fallbacks, and the targets of its aliases.
        Asked once a call (the metrics label), so computed once per provider: the registry is complete
        before the first request."""
        models = self.configured.get(provider_name)
        if models is None:
            models = self.configured[provider_name] = frozenset(self.listed_models(provider_name))
        return models

    def listed_models(self, provider_name: str) -> set[str]:
        provider = self.providers.get(provider_name)
        listed = set(provider.list_models()) if provider is not None else set()
        for chain in self.model_aliases.values():
            for target in chain.split("|"):
                name, _, bare = target.strip().partition("/")
                if self.canonical(name) == provider_name:
                    listed.add(bare)
        listed.update(route.model for group in self.groups.values() for route in group.routes
                      if route.provider.name == provider_name)
        return listed

    def upstreams(self) -> list[Route]:
        """Every configured upstream: each model group's, then each provider's own models."""
        routes = [route for group in self.groups.values() for route in group.routes]
        routes += [Route(provider, model) for provider in self.providers.values()
                   for model in unique(provider.list_models())]
        return unique_routes(routes)

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
        listed += [(name, group.routes[0].provider.name, "chat") for name, group in self.groups.items()]
        for name, provider in self.providers.items():
            chat = unique(provider.list_models())
            listed += [(f"{name}/{m}", name, "chat") for m in chat]
            listed += [(f"{name}/{m}", name, "embedding") for m in unique(provider.embedding_models) if m not in chat]
        return listed


def unique_routes(routes: list[Route]) -> list[Route]:
    """Each upstream once, where it first appears."""
    first: dict[str, Route] = {}
    for route in routes:
        first.setdefault(route.upstream, route)
    return list(first.values())


def provider_routes(provider: Provider, model: str, tier: int) -> list[Route]:
    """`model` on `provider`, then the provider's fallback models (marked `fallback`), as tier `tier`."""
    return [Route(provider, model, tier), *(Route(provider, other, tier, fallback=True)
                                            for other in unique(provider.fallback_models) if other != model)]


def unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))


def truthy(value: Any) -> bool:
    """A named endpoint's boolean setting, read raw from the environment (`VLLM_RESPONSES_API=true`)."""
    return str(value or "").strip().lower() in ("1", "true", "yes", "on")


def names(value: str | None) -> list[str]:
    """A comma-separated setting of model names as a list."""
    return [m.strip() for m in (value or "").split(",") if m.strip()]


def build_registry(config: dict[str, Any], fetch_image: Callable[..., tuple[str, bytes]] | None = None,
                   fresh: bool = False) -> Registry:
    """Providers for every configured vendor, then the models file's. Each SDK is imported only when
    its provider is configured: the three SDKs together take seconds to import, and start-up time
    matters. `fetch_image` downloads an image URL for a vendor that needs the bytes (Gemini): an
    `app.llm.images.ImageFetcher`; `fresh` reads the models file as it is now, not the copy the Gunicorn
    master last found valid."""
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
                                         prefix, responses_api=truthy(config.get(f"{prefix}_RESPONSES_API")))

    builders = [
        ("openai", "OPENAI_API_KEY", configured_models("OPENAI"), lambda: openai_compatible(
            "openai", config["OPENAI_API_KEY"], config["OPENAI_BASE_URL"], "OPENAI",
            max_tokens_field="max_completion_tokens", developer_role=True,
            responses_api=config["OPENAI_RESPONSES_API"])),
        ("anthropic", "ANTHROPIC_API_KEY", configured_models("ANTHROPIC"), anthropic),
        ("gemini", "GEMINI_API_KEY", configured_models("GEMINI"), gemini),
        ("ollama", "OLLAMA_HOST", configured_models("OLLAMA"), lambda: openai_compatible(
            "ollama", "ollama", config["OLLAMA_HOST"].rstrip("/") + "/v1", "OLLAMA",
            responses_api=config["OLLAMA_RESPONSES_API"])),
        ("litellm", "LITELLM_API_BASE", configured_models("LITELLM", "LITELLM_MODEL"), lambda: openai_compatible(
            "litellm", config["LITELLM_API_KEY"], config["LITELLM_API_BASE"], "LITELLM", "LITELLM_MODEL",
            responses_api=config["LITELLM_RESPONSES_API"])),
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
    registry = Registry(providers, missing, default=config["DEFAULT_PROVIDER"],
                        provider_fallbacks=config["PROVIDER_FALLBACKS"], model_aliases=aliases,
                        missing_models=missing_models)
    models_file = modelsfile.configured(config, fresh)
    if models_file is not None:
        add_models_file(registry, models_file, {**client_options, "max_tokens": config["ANTHROPIC_MAX_TOKENS"],
                                                "fetch_image": fetch_image})
    return registry


def add_models_file(registry: Registry, models_file: modelsfile.ModelsFile, options: dict[str, Any]) -> None:
    """The models file's endpoints (one provider each; one named like a provider configured by
    environment variables replaces it), its models as groups, its aliases and prices; every name it
    uses checked, with errors naming the line."""
    for name, spec in models_file.endpoints.items():
        served = unique([u.model for entry in models_file.models.values() for u in entry.upstreams
                         if u.endpoint == name])
        try:
            registry.providers[name] = build_endpoint(name, spec, {
                **options, "default_model": served[0] if served else "", "fallback_models": [],
                "embedding_models": []})
        except ValueError as error:
            raise models_file.error(f"endpoints.{name}", str(error)) from None
        registry.missing.pop(name, None)
    for name, entry in models_file.models.items():
        routes = tuple(Route(registry.providers[u.endpoint], u.model, weight=u.weight, rpm=u.rpm, tpm=u.tpm)
                       for u in entry.upstreams)
        registry.groups[name] = ModelGroup(routes, entry.fallbacks)
        if entry.price:
            registry.prices.update({model: entry.price for model in {name, *(u.model for u in entry.upstreams)}})
    registry.model_aliases.update({alias: "|".join(targets) for alias, targets in models_file.aliases.items()})
    places = [(f"models.{name}.fallbacks.{i}", target) for name, entry in models_file.models.items()
              for i, target in enumerate(entry.fallbacks)]
    places += [(f"aliases.{alias}.{i}", target) for alias, targets in models_file.aliases.items()
               for i, target in enumerate(targets)]
    for where, target in places:
        if target not in registry.groups and target not in registry.model_aliases:
            try:
                registry.resolve_model(target)
            except APIError as error:
                raise models_file.error(where, error.message) from None


def build_endpoint(name: str, spec: dict[str, Any], options: dict[str, Any]) -> Provider:
    """The provider of a models-file endpoint, by its `kind`; `ValueError` for a spec it cannot use.
    Each kind's SDK is imported only when an endpoint of that kind exists."""
    kind = spec["kind"]
    common: dict[str, Any] = {key: options[key] for key in ("default_model", "fallback_models", "connect_timeout",
                                                             "read_timeout", "max_connections")}
    if kind in ("openai", "ollama", "openai-compatible"):
        from app.llm.providers.openai_compatible import OpenAICompatibleProvider

        if kind == "openai-compatible" and not spec.get("base_url"):
            raise ValueError("an openai-compatible endpoint needs base_url")
        base_url = spec.get("base_url") or ("http://127.0.0.1:11434/v1" if kind == "ollama" else "")
        openai_only: dict[str, Any] = ({"max_tokens_field": "max_completion_tokens", "developer_role": True}
                                       if kind == "openai" else {})
        return OpenAICompatibleProvider(name, api_key=spec.get("api_key", ""), base_url=base_url,
                                        embedding_models=options["embedding_models"], **common, **openai_only,
                                        responses_api=spec.get("responses_api", kind == "openai"))
    if kind == "anthropic":
        from app.llm.providers.anthropic_messages import AnthropicProvider

        return AnthropicProvider(name=name, api_key=spec.get("api_key", ""), base_url=spec.get("base_url"),
                                 max_tokens=spec.get("max_tokens") or options["max_tokens"], **common)
    if kind == "gemini":
        from app.llm.providers.google_gemini import GeminiProvider

        images: dict[str, Any] = {"fetch_image": options["fetch_image"]} if options.get("fetch_image") else {}
        return GeminiProvider(name=name, api_key=spec.get("api_key", ""), base_url=spec.get("base_url"),
                              embedding_models=options["embedding_models"], **common, **images)
    module = importlib.import_module(f"app.llm.providers.{kind}")  # azure, bedrock, vertex
    cloud = {key: value for key, value in spec.items() if key not in ("kind", "max_tokens")}
    return module.build(name, cloud, {**options, "max_tokens": spec.get("max_tokens") or options["max_tokens"]})
