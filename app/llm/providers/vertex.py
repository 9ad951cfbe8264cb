"""Google Cloud Vertex AI: Gemini models through `google-genai` (`vertexai=True`) with
`GeminiProvider`'s translation, and Claude models through the pinned `anthropic` SDK's
`AnthropicVertex` client with `AnthropicProvider`'s translation.

One `vertex` kind, and one SDK per endpoint, chosen by the family of its models: an endpoint whose
models are `claude-*` speaks Claude's `rawPredict`/`streamRawPredict`, any other endpoint Gemini's
`generateContent`. An endpoint does not mix the two, because a provider's answers to the gateway
are per provider, not per model: which parameters it cannot honour (`unsupported`), whether it takes
Anthropic's wire as it came (`native_wires`, which lets `/v1/messages` pass a Claude body
untranslated) and its embedding models. A models file that wants both names two `vertex` endpoints
with the same project; a mixed one is refused with the model that does not belong.

Credentials, shared by both SDKs: a service account's JSON file (`credentials_file`, whose signed
JWT is exchanged at its `token_uri` for an access token, refreshed before it expires), a static OAuth
token (`access_token`, for tests or a token minted elsewhere), or else Application Default
Credentials. The body of a Claude request carries `anthropic_version: vertex-2023-10-16` (Vertex's
reference; the pinned SDK would fill in the first-party API's version instead), without `model`.

Spec keys: `project`, `location`; optional one of `credentials_file` or `access_token`; optional
`base_url` (the service root, `https://us-east5-aiplatform.googleapis.com`, or the tests' fake):
google-genai adds its API version (`v1beta1` on Vertex), Claude's client `/v1`. Credentials that
cannot get a token fail as `ProviderRejected` (refused) or `TransientFailure` (token endpoint down),
not as google-auth's own exceptions, which both SDKs let through.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Generator, Iterator, Mapping

import anthropic
import google.auth.credentials
import google.auth.exceptions
import httpx2
from google import genai
from google.oauth2 import credentials as oauth2_credentials
from google.oauth2 import service_account

from app.llm.providers import google_gemini
from app.llm.providers.anthropic_messages import AnthropicProvider, client_timeout, http_client, translate_error
from app.llm.providers.base import (
    Completion,
    CompletionRequest,
    Provider,
    ProviderRejected,
    StreamItem,
    TransientFailure,
)
from app.llm.providers.endpoint_spec import EndpointOptions, checked_spec
from app.llm.providers.google_gemini import GeminiProvider

KIND = "vertex"
REQUIRED = ("project", "location")
OPTIONAL = ("credentials_file", "access_token", "base_url")
VERTEX_ANTHROPIC_VERSION = "vertex-2023-10-16"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
CLAUDE_FAMILY = "claude-"


@contextmanager
def google_auth_failures() -> Iterator[None]:
    """Credentials that cannot get a token as our failures: the SDKs let google-auth's errors through.
    A refused service account (`invalid_grant`) or no credentials at all is a rejection of the whole
    endpoint; a token endpoint that is down, a transient failure. The message names no credential."""
    try:
        yield
    except google.auth.exceptions.RefreshError as exc:
        if getattr(exc, "retryable", False):
            raise TransientFailure("Vertex AI: the OAuth token endpoint failed; try again") from None
        raise ProviderRejected("Vertex AI: the credentials were refused by the OAuth token endpoint",
                               status=401) from None
    except google.auth.exceptions.TransportError:
        raise TransientFailure("Vertex AI: the OAuth token endpoint is unreachable") from None
    except google.auth.exceptions.DefaultCredentialsError:
        raise ProviderRejected("Vertex AI: no credentials (credentials_file, access_token or Application "
                               "Default Credentials)", status=401) from None


class VertexGeminiProvider(GeminiProvider):
    def complete(self, request: CompletionRequest, model: str) -> Completion:
        with google_auth_failures():
            return super().complete(request, model)

    def stream(self, request: CompletionRequest, model: str) -> Generator[StreamItem, None, None]:
        with google_auth_failures():
            yield from super().stream(request, model)

    def check(self) -> None:
        with google_auth_failures():
            super().check()


class VertexClaudeProvider(AnthropicProvider):
    body_fields = {"anthropic_version": VERTEX_ANTHROPIC_VERSION}

    def complete(self, request: CompletionRequest, model: str) -> Completion:
        with google_auth_failures():
            return super().complete(request, model)

    def stream(self, request: CompletionRequest, model: str) -> Generator[StreamItem, None, None]:
        with google_auth_failures():
            yield from super().stream(request, model)

    def count_tokens(self, request: CompletionRequest, model: str) -> int | None:
        with google_auth_failures():
            return super().count_tokens(request, model)

    def check(self) -> None:
        """Vertex has no Anthropic model list; counting a word's tokens is free and proves the route."""
        try:
            with google_auth_failures():
                self.client.with_options(timeout=5).messages.count_tokens(
                    **self._with_body_fields({"model": self.default_model,
                                              "messages": [{"role": "user", "content": "ping"}]}))
        except (anthropic.APIError, httpx2.HTTPError) as exc:
            raise translate_error(exc, self.error_statuses) from None


def build(name: str, spec: Mapping[str, Any], options: Mapping[str, Any]) -> Provider:
    """A Vertex AI endpoint for Gemini or for Claude models; ValueError naming the key (or the model)
    for a spec that cannot work."""
    settings = checked_spec(KIND, spec, REQUIRED, OPTIONAL)
    if settings.get("credentials_file") and settings.get("access_token"):
        raise ValueError(f"{KIND}: set one of 'credentials_file' or 'access_token', not both")
    chosen = EndpointOptions.of(KIND, options)
    models = [chosen.default_model, *chosen.fallback_models]
    claude = chosen.default_model.startswith(CLAUDE_FAMILY)
    for model in models:
        if model.startswith(CLAUDE_FAMILY) != claude:
            raise ValueError(f"{KIND}: model {model!r} is not of the family of {chosen.default_model!r}; "
                             f"Claude and Gemini models need two vertex endpoints")
    credentials = load_credentials(settings)
    if claude:
        return claude_provider(name, settings, chosen, credentials)
    return gemini_provider(name, settings, chosen, credentials)


def load_credentials(settings: dict[str, Any]) -> google.auth.credentials.Credentials | None:
    """The spec's credentials; None for Application Default Credentials, which each SDK finds itself."""
    if settings.get("access_token"):
        return oauth2_credentials.Credentials(token=settings["access_token"])
    if settings.get("credentials_file"):
        try:
            return service_account.Credentials.from_service_account_file(
                settings["credentials_file"], scopes=[CLOUD_PLATFORM])
        except (OSError, ValueError) as exc:
            raise ValueError(f"{KIND}: 'credentials_file' is not a readable service account file "
                             f"({type(exc).__name__})") from None
    return None


def gemini_provider(name: str, settings: dict[str, Any], chosen: EndpointOptions,
                    credentials: google.auth.credentials.Credentials | None) -> Provider:
    http_options = google_gemini.http_options(settings.get("base_url"), chosen.connect_timeout, chosen.read_timeout,
                                              chosen.max_connections)
    client = genai.Client(vertexai=True, project=settings["project"], location=settings["location"],
                          credentials=credentials, http_options=http_options)
    extra: dict[str, Any] = {"fetch_image": chosen.fetch_image} if chosen.fetch_image else {}
    return VertexGeminiProvider(name=name, client=client, embedding_models=chosen.embedding_models,
                                **extra, **chosen.models(), **chosen.client())


def claude_provider(name: str, settings: dict[str, Any], chosen: EndpointOptions,
                    credentials: google.auth.credentials.Credentials | None) -> Provider:
    base_url = settings.get("base_url")
    client = anthropic.AnthropicVertex(
        region=settings["location"], project_id=settings["project"], access_token=settings.get("access_token"),
        credentials=None if settings.get("access_token") else credentials,
        base_url=base_url.rstrip("/") + "/v1" if base_url else None, max_retries=0,
        timeout=client_timeout(chosen.connect_timeout, chosen.read_timeout),
        http_client=http_client(chosen.max_connections))
    return VertexClaudeProvider(name=name, client=client, max_tokens=chosen.max_tokens, **chosen.models(),
                                **chosen.client())
