"""Claude on Amazon Bedrock through the pinned `anthropic` SDK's `AnthropicBedrock` client (the
`anthropic[bedrock]` extra: boto3 and botocore), with `AnthropicProvider`'s translation.

The SDK moves the model into the path (`/model/{modelId}/invoke`, `/invoke-with-response-stream`),
signs each request with AWS Signature Version 4 (botocore's signer, credentials from the spec or
boto's default chain: environment, profile, instance role) and decodes the AWS event-stream framing
of a stream back into Anthropic's events. Model ids are Bedrock's (`anthropic.claude-sonnet-5-5-v1:0`)
or an inference profile's (`us.anthropic...`, or its ARN).

Two things are set here rather than left to the SDK. The body's `anthropic_version`: Bedrock's
reference requires `bedrock-2023-05-31`, while the pinned SDK fills in the first-party API's version
(`2026-10-21`) when none is given. And token counting: the SDK refuses it on Bedrock, so the request
goes to Bedrock's own `CountTokens` (`POST /model/{modelId}/count-tokens`, free), which is also the
health check (Bedrock's runtime has no model list).

Bedrock's errors come as the SDK's `APIStatusError` with Bedrock's JSON body (`{"message"}`) and
status (`ThrottlingException` and `ModelNotReadyException` 429, `ServiceUnavailableException` 503,
`AccessDeniedException` 403...), mapped like every vendor's by `classify_status`; an exception
inside a stream (`throttlingException`...) takes the status Bedrock documents for it.

Spec keys: `region`; optional `aws_access_key_id` with `aws_secret_access_key` (and
`aws_session_token`), else boto's default credential chain; optional `base_url` (a VPC endpoint).
"""
from __future__ import annotations

import base64
import json
from typing import Any, Mapping
from urllib.parse import quote

import anthropic
import httpx2

from app.llm.providers.anthropic_messages import (
    STATUS_OF_ANTHROPIC_ERROR_TYPE,
    AnthropicProvider,
    client_timeout,
    http_client,
    native_params,
    translate_error,
)
from app.llm.providers.base import CompletionRequest, Provider
from app.llm.providers.endpoint_spec import EndpointOptions, checked_spec

KIND = "bedrock"
REQUIRED = ("region",)
OPTIONAL = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token", "base_url")
BEDROCK_VERSION = "bedrock-2023-05-31"
# the status of each Bedrock exception, named as InvokeModel answers them and as a stream's events do
BEDROCK_ERROR_STATUSES = {
    "ValidationException": 400, "validationException": 400,
    "AccessDeniedException": 403, "ResourceNotFoundException": 404,
    "ModelTimeoutException": 408, "modelTimeoutException": 408,
    "ModelErrorException": 424, "modelStreamErrorException": 424,
    "ThrottlingException": 429, "throttlingException": 429, "ModelNotReadyException": 429,
    "ServiceQuotaExceededException": 429,
    "InternalServerException": 500, "internalServerException": 500,
    "ServiceUnavailableException": 503, "serviceUnavailableException": 503,
}


class BedrockProvider(AnthropicProvider):
    body_fields = {"anthropic_version": BEDROCK_VERSION}
    error_statuses = {**STATUS_OF_ANTHROPIC_ERROR_TYPE, **BEDROCK_ERROR_STATUSES}

    def check(self) -> None:
        self._count_tokens({"max_tokens": 1, "messages": [{"role": "user", "content": "ping"}]},
                           self.default_model, timeout=5)

    def count_tokens(self, request: CompletionRequest, model: str) -> int | None:
        """Bedrock's exact count of a request in Anthropic's wire format; None for any other request."""
        params = native_params(request, model)
        if params is None:
            return None
        body = {**params.pop("extra_body"), "messages": params["messages"],
                "max_tokens": params.get("max_tokens") or self.max_tokens}
        return self._count_tokens(body, model)

    def _count_tokens(self, body: dict[str, Any], model: str, timeout: float | None = None) -> int:
        """`CountTokens` for the InvokeModel body `body` (sent as bytes: the SDK would add its own
        `anthropic_version` to a JSON body it builds)."""
        invoke_body = json.dumps({**body, **self.body_fields}).encode()
        wire = json.dumps({"input": {"invokeModel": {"body": base64.b64encode(invoke_body).decode()}}}).encode()
        client = self.client.with_options(timeout=timeout) if timeout else self.client
        try:
            response = client.post(f"/model/{quote(model, safe=':')}/count-tokens", content=wire,
                                   cast_to=httpx2.Response, options={"headers": {"Content-Type": "application/json"}})
            return int(json.loads(response.content)["inputTokens"])
        except (anthropic.APIError, httpx2.HTTPError) as exc:
            raise translate_error(exc, self.error_statuses) from None
        except (ValueError, KeyError, TypeError):
            raise translate_error(ValueError(f"{self.name} answered CountTokens with an unexpected body"),
                                  self.error_statuses) from None


def build(name: str, spec: Mapping[str, Any], options: Mapping[str, Any]) -> Provider:
    """A Bedrock endpoint; ValueError naming the key for a spec that cannot work."""
    settings = checked_spec(KIND, spec, REQUIRED, OPTIONAL)
    if bool(settings.get("aws_access_key_id")) != bool(settings.get("aws_secret_access_key")):
        raise ValueError(f"{KIND}: set 'aws_access_key_id' and 'aws_secret_access_key' together")
    if settings.get("aws_session_token") and not settings.get("aws_access_key_id"):
        raise ValueError(f"{KIND}: 'aws_session_token' needs 'aws_access_key_id' and 'aws_secret_access_key'")
    chosen = EndpointOptions.of(KIND, options)
    client = anthropic.AnthropicBedrock(
        aws_region=settings["region"], aws_access_key=settings.get("aws_access_key_id") or None,
        aws_secret_key=settings.get("aws_secret_access_key") or None,
        aws_session_token=settings.get("aws_session_token") or None, base_url=settings.get("base_url") or None,
        max_retries=0, timeout=client_timeout(chosen.connect_timeout, chosen.read_timeout),
        http_client=http_client(chosen.max_connections))
    return BedrockProvider(name=name, client=client, max_tokens=chosen.max_tokens, **chosen.models(),
                           **chosen.client())
