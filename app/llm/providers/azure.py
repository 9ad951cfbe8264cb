"""OpenAI models on Azure (Azure OpenAI / Azure AI Foundry) through the pinned `openai` SDK's
`AzureOpenAI` client, with `OpenAICompatibleProvider`'s translation.

The request's model is the Azure *deployment* name: the SDK moves it into the path
(`{base_url}/openai/deployments/{deployment}/chat/completions?api-version=...`), authenticating with
the resource key in the `api-key` header or an Entra ID token (`azure_ad_token`) as a bearer. The
answer names the deployment's underlying model. Azure's streams begin with a chunk holding only
`prompt_filter_results` (no choices), which the shared stream reader already passes over.

Spec keys: `base_url` (the resource endpoint, `https://NAME.openai.azure.com`), `api_version`, and
one of `api_key` or `azure_ad_token`.
"""
from __future__ import annotations

from typing import Any, Mapping

import openai

from app.llm.providers.base import Provider
from app.llm.providers.endpoint_spec import EndpointOptions, checked_spec, exactly_one
from app.llm.providers.openai_compatible import OpenAICompatibleProvider, client_timeout, http_client

KIND = "azure"
REQUIRED = ("base_url", "api_version")
OPTIONAL = ("api_key", "azure_ad_token")


def build(name: str, spec: Mapping[str, Any], options: Mapping[str, Any]) -> Provider:
    """An Azure OpenAI endpoint; ValueError naming the key for a spec that cannot work."""
    settings = checked_spec(KIND, spec, REQUIRED, OPTIONAL)
    exactly_one(KIND, settings, ("api_key", "azure_ad_token"))
    chosen = EndpointOptions.of(KIND, options)
    client = openai.AzureOpenAI(
        azure_endpoint=settings["base_url"], api_version=settings["api_version"],
        api_key=settings.get("api_key") or None, azure_ad_token=settings.get("azure_ad_token") or None,
        max_retries=0, timeout=client_timeout(chosen.connect_timeout, chosen.read_timeout),
        http_client=http_client(chosen.max_connections))
    return OpenAICompatibleProvider(name, client=client, max_tokens_field="max_completion_tokens", developer_role=True,
                                    embedding_models=chosen.embedding_models, **chosen.models(), **chosen.client())
