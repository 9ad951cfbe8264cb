"""The cloud kinds (Azure OpenAI, Bedrock, Vertex AI for Gemini and for Claude), each built by its
module's `build(name, spec, options)` and driven through the provider interface with the real SDK
against its wire-faithful fake; and the fakes refuse what the vendors refuse."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx2
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.llm.providers import azure, bedrock, vertex
from app.llm.providers.base import (
    ANTHROPIC_MESSAGES,
    CompletionRequest,
    NativeBody,
    ProviderRejected,
    StreamEnd,
    ToolCallDelta,
    TransientFailure,
)
from tests.conftest import AWS_KEY_ID, AWS_SECRET, AZURE_KEY, VERTEX_PROJECT, VERTEX_TOKEN
from tests.fakes.server import Reply

KINDS = ["azure", "bedrock", "vertex-gemini", "vertex-claude"]
MODELS = {"azure": "gpt4o-eu", "bedrock": "anthropic.claude-sonnet-5-5-v1:0", "vertex-gemini": "gemini-2.5-flash",
          "vertex-claude": "claude-sonnet-5-5@20260101"}
FALLBACKS = {"azure": ["gpt4o-mini-eu"], "bedrock": ["us.anthropic.claude-haiku-5-5-v1:0"],
             "vertex-gemini": ["gemini-2.5-pro"], "vertex-claude": ["claude-haiku-5-5@20260101"]}
SECRETS = (AZURE_KEY, AWS_SECRET, VERTEX_TOKEN)
HELLO = CompletionRequest([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}])
WEATHER = {"name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
ASK_WEATHER = CompletionRequest([{"role": "user", "content": "Weather in Paris and Oslo?"}], tools=[WEATHER])


def spec_for(kind: str, fake: Any, **changes: Any) -> dict[str, Any]:
    if kind == "azure":
        spec = {"api_key": AZURE_KEY, "base_url": fake.url, "api_version": "2024-10-21"}
    elif kind == "bedrock":
        spec = {"region": "us-east-1", "aws_access_key_id": AWS_KEY_ID, "aws_secret_access_key": AWS_SECRET,
                "base_url": fake.url}
    else:
        spec = {"project": VERTEX_PROJECT, "location": "us-east5", "access_token": VERTEX_TOKEN, "base_url": fake.url}
    return {**spec, **changes}


def build(kind: str, fake: Any, **changes: Any):
    module = {"azure": azure, "bedrock": bedrock}.get(kind, vertex)
    options = {"default_model": MODELS[kind], "fallback_models": FALLBACKS[kind], "connect_timeout": 2.0,
               "read_timeout": 5.0, "max_connections": 10, "max_tokens": 256}
    return module.build(f"{kind}-test", spec_for(kind, fake, **changes), options)


@pytest.fixture(params=KINDS)
def kind(request) -> str:
    return request.param


@pytest.fixture
def fake(kind, request):
    return request.getfixturevalue("fake_" + kind.partition("-")[0])


@pytest.fixture
def provider(kind, fake):
    return build(kind, fake)


def sent(fake) -> Any:
    return fake.requests[-1]


def assert_wire(kind: str, request: Any, stream: bool) -> None:
    """What each vendor's reference says its request looks like, as the fake received it."""
    if kind == "azure":
        assert request.path == "/openai/deployments/gpt4o-eu/chat/completions"
        assert request.query == {"api-version": "2024-10-21"}
        assert request.headers["api-key"] == AZURE_KEY and "authorization" not in request.headers
        assert request.json["model"] == "gpt4o-eu"  # the SDK leaves it in the body too; Azure goes by the path
    elif kind == "bedrock":
        action = "invoke-with-response-stream" if stream else "invoke"
        assert request.path == f"/model/anthropic.claude-sonnet-5-5-v1:0/{action}"
        assert request.json["anthropic_version"] == "bedrock-2023-05-31"
        assert "model" not in request.json and "stream" not in request.json
        assert request.headers["authorization"].startswith(
            f"AWS4-HMAC-SHA256 Credential={AWS_KEY_ID}/{datetime.now(timezone.utc):%Y%m%d}/us-east-1/bedrock/")
    elif kind == "vertex-gemini":
        method = "streamGenerateContent" if stream else "generateContent"
        assert request.path == (f"/v1beta1/projects/{VERTEX_PROJECT}/locations/us-east5/publishers/google/models/"
                                f"gemini-2.5-flash:{method}")
        assert request.query == ({"alt": "sse"} if stream else {})
        assert request.headers["authorization"] == f"Bearer {VERTEX_TOKEN}"
    else:
        method = "streamRawPredict" if stream else "rawPredict"
        assert request.path == (f"/v1/projects/{VERTEX_PROJECT}/locations/us-east5/publishers/anthropic/models/"
                                f"claude-sonnet-5-5@20260101:{method}")
        assert request.json["anthropic_version"] == "vertex-2023-10-16" and "model" not in request.json
        assert request.json.get("stream", False) is stream
        assert request.headers["authorization"] == f"Bearer {VERTEX_TOKEN}"


# -- through the provider interface -------------------------------------------------------


def test_complete_sends_the_vendors_request_and_reads_its_answer(kind, provider, fake):
    fake.enqueue(Reply(text="Hello there, friend.", prompt_tokens=7, completion_tokens=4))
    result = provider.complete(HELLO, MODELS[kind])
    assert result.text == "Hello there, friend."
    assert result.finish_reason == "stop"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (7, 4)
    assert provider.name == f"{kind}-test"
    assert_wire(kind, sent(fake), stream=False)
    body = json.dumps(sent(fake).json)
    assert "Be brief." in body and "Say hello" in body
    if kind == "azure":
        assert result.model == "gpt-4o-2024-08-06"  # Azure names the model behind the deployment


def test_stream_yields_every_delta_then_the_end(kind, provider, fake):
    fake.enqueue(Reply(chunks=["Hel", "lo", " wor", "ld"], prompt_tokens=5, finish_reason="length"))
    items = list(provider.stream(HELLO, MODELS[kind]))
    assert items[:-1] == ["Hel", "lo", " wor", "ld"]
    assert isinstance(items[-1], StreamEnd)
    assert items[-1].finish_reason == "length"
    assert (items[-1].usage.prompt_tokens, items[-1].usage.completion_tokens) == (5, 4)
    assert_wire(kind, sent(fake), stream=True)


def test_a_tool_call_and_its_result_turn(kind, provider, fake):
    fake.enqueue(Reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}]))
    first = provider.complete(ASK_WEATHER, MODELS[kind])
    assert first.finish_reason == "tool_calls"
    [call] = first.tool_calls
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
    fake.enqueue(Reply(text="Sunny in Paris."))
    answer = CompletionRequest([*ASK_WEATHER.messages,
                                {"role": "assistant", "content": None, "tool_calls": [call.to_dict()]},
                                {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "sunny"}'}],
                               tools=[WEATHER])
    assert provider.complete(answer, MODELS[kind]).text == "Sunny in Paris."
    # the fakes refuse a history whose tool results do not answer the calls, as the vendors do
    assert "sunny" in json.dumps(sent(fake).json)


def test_parallel_tool_calls_streamed_and_whole(kind, provider, fake):
    calls = [{"name": "get_weather", "arguments": {"city": "Paris"}},
             {"name": "get_weather", "arguments": {"city": "Oslo"}}]
    fake.enqueue(Reply(tool_calls=calls), Reply(tool_calls=calls))
    whole = provider.complete(ASK_WEATHER, MODELS[kind])
    assert [json.loads(c.arguments)["city"] for c in whole.tool_calls] == ["Paris", "Oslo"]
    items = list(provider.stream(ASK_WEATHER, MODELS[kind]))
    assert assembled(items) == [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Oslo"})]
    assert items[-1].finish_reason == "tool_calls"


def assembled(items: list[Any]) -> list[tuple[str, dict]]:
    """The tool calls of a stream, put together from their deltas."""
    calls: dict[int, list[str]] = {}
    for item in items:
        if isinstance(item, ToolCallDelta):
            calls.setdefault(item.index, ["", ""])
            calls[item.index][0] += item.name or ""
            calls[item.index][1] += item.arguments
    return [(name, json.loads(arguments)) for name, arguments in (calls[i] for i in sorted(calls))]


@pytest.mark.parametrize("status", [429, 503])
def test_upstream_overload_is_a_transient_failure(kind, provider, fake, status):
    fake.enqueue(Reply(status=status, error_message="scripted overload"))
    with pytest.raises(TransientFailure) as caught:
        provider.complete(HELLO, MODELS[kind])
    assert caught.value.status == status and "scripted overload" in caught.value.message
    fake.enqueue(Reply(status=status, error_message="scripted overload"))
    with pytest.raises(TransientFailure):
        next(provider.stream(HELLO, MODELS[kind]))


def test_an_overload_inside_a_started_stream_is_transient(kind, provider, fake):
    fake.enqueue(Reply(chunks=["one ", "two ", "three"], error_after=1, error_status=429))
    received = []
    with pytest.raises(TransientFailure) as caught:
        for item in provider.stream(HELLO, MODELS[kind]):
            received.append(item)
    assert received[:1] == ["one "]
    if kind in ("bedrock", "vertex-claude"):
        assert caught.value.status == 429  # Bedrock's throttlingException event, Anthropic's rate_limit_error


def test_bad_credentials_are_a_rejection_without_the_secret(kind, fake):
    wrong = {"azure": {"api_key": "not-the-key"}, "bedrock": {"aws_secret_access_key": "not-the-secret"},
             "vertex-gemini": {"access_token": "ya29.not-the-token"},
             "vertex-claude": {"access_token": "ya29.not-the-token"}}[kind]
    provider = build(kind, fake, **wrong)
    with pytest.raises(ProviderRejected) as caught:
        provider.complete(HELLO, MODELS[kind])
    assert caught.value.status in (401, 403)
    assert not any(secret in caught.value.message for secret in (*SECRETS, *wrong.values()))


def test_check_spends_no_tokens(kind, provider, fake):
    provider.check()
    assert fake.requests
    for request in fake.requests:  # a model list, or a free token count where the cloud has no list
        assert request.method == "GET" or request.path.endswith(("count-tokens", "count-tokens:rawPredict"))


# -- Azure -------------------------------------------------------------------------------------


def test_azure_stream_begins_with_the_prompt_filter_chunk(fake_azure):
    with httpx2.Client() as client:
        response = client.post(f"{fake_azure.url}/openai/deployments/gpt4o-eu/chat/completions",
                               params={"api-version": "2024-10-21"}, headers={"api-key": AZURE_KEY},
                               json={"messages": [{"role": "user", "content": "hi"}], "stream": True})
    first = json.loads(response.text.split("\n\n")[0].removeprefix("data: "))
    assert first["choices"] == [] and first["prompt_filter_results"][0]["prompt_index"] == 0


def test_azure_refuses_without_key_or_api_version_and_an_unknown_deployment(fake_azure):
    body = {"messages": [{"role": "user", "content": "hi"}]}
    url = f"{fake_azure.url}/openai/deployments/gpt4o-eu/chat/completions"
    with httpx2.Client() as client:
        no_key = client.post(url, params={"api-version": "2024-10-21"}, json=body)
        no_version = client.post(url, headers={"api-key": AZURE_KEY}, json=body)
        unknown = client.post(url.replace("gpt4o-eu", "nope"), params={"api-version": "2024-10-21"},
                              headers={"api-key": AZURE_KEY}, json=body)
    assert no_key.status_code == 401 and no_key.json()["error"]["code"] == "401"
    assert no_version.status_code == 404 and no_version.json()["error"]["message"] == "Resource not found"
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "DeploymentNotFound"


def test_azure_with_an_entra_id_token(fake_azure):
    fake_azure.ad_token = "entra-test-token"
    provider = build("azure", fake_azure, api_key=None, azure_ad_token="entra-test-token")
    provider.complete(HELLO, "gpt4o-eu")
    assert sent(fake_azure).headers["authorization"] == "Bearer entra-test-token"
    assert "api-key" not in sent(fake_azure).headers


# -- Bedrock ------------------------------------------------------------------------------------


def signed(fake, body: bytes, secret: str = AWS_SECRET, path: str = "/model/anthropic.claude-sonnet-5-5-v1:0/invoke"):
    """A request signed by botocore's SigV4 signer (the one AnthropicBedrock uses), as httpx2 arguments."""
    request = AWSRequest(method="POST", url=fake.url + path, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(AWS_KEY_ID, secret), "bedrock", "us-east-1").add_auth(request)
    return {"url": request.url, "content": body, "headers": dict(request.headers.items())}


BEDROCK_BODY = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10,
                           "messages": [{"role": "user", "content": "hi"}]}).encode()


def test_bedrock_fake_verifies_the_signature(fake_bedrock):
    with httpx2.Client() as client:
        good = client.post(**signed(fake_bedrock, BEDROCK_BODY))
        unsigned = client.post(fake_bedrock.url + "/model/anthropic.claude-sonnet-5-5-v1:0/invoke",
                               content=BEDROCK_BODY, headers={"Content-Type": "application/json"})
        wrong_secret = client.post(**signed(fake_bedrock, BEDROCK_BODY, secret="not-the-secret"))
        tampered = signed(fake_bedrock, BEDROCK_BODY)
        tampered["content"] = BEDROCK_BODY.replace(b"hi", b"yo")
        changed_body = client.post(**tampered)
    assert good.status_code == 200 and good.json()["type"] == "message"
    assert (unsigned.status_code, unsigned.headers["x-amzn-ErrorType"].split(":")[0]) == (
        403, "MissingAuthenticationTokenException")
    for refused in (wrong_secret, changed_body):
        assert refused.status_code == 403
        assert refused.headers["x-amzn-ErrorType"].startswith("InvalidSignatureException")
        assert "signature we calculated does not match" in refused.json()["message"]


def test_bedrock_fake_refuses_a_body_bedrock_refuses(fake_bedrock):
    with_model = json.dumps({"anthropic_version": "bedrock-2023-05-31", "model": "x", "max_tokens": 10,
                             "messages": [{"role": "user", "content": "hi"}]}).encode()
    first_party_version = BEDROCK_BODY.replace(b"bedrock-2023-05-31", b"2026-10-21")
    with httpx2.Client() as client:
        for body, problem in ((with_model, "extraneous key [model]"), (first_party_version, "anthropic_version")):
            refused = client.post(**signed(fake_bedrock, body))
            assert refused.status_code == 400 and problem in refused.json()["message"]
            assert refused.headers["x-amzn-ErrorType"].startswith("ValidationException")


def test_bedrock_stream_is_aws_event_stream_framing(fake_bedrock):
    """Decoded with botocore's own event-stream parser: lengths, both CRC32s and the headers check out."""
    fake_bedrock.enqueue(Reply(chunks=["Hi", " there"]))
    with httpx2.Client() as client:
        response = client.post(**signed(fake_bedrock, BEDROCK_BODY,
                                         path="/model/anthropic.claude-sonnet-5-5-v1:0/invoke-with-response-stream"))
    assert response.headers["content-type"] == "application/vnd.amazon.eventstream"
    buffer = EventStreamBuffer()
    buffer.add_data(response.content)
    messages = list(buffer)
    assert all(m.headers == {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}
               for m in messages)
    events = [json.loads(base64.b64decode(json.loads(m.payload)["bytes"])) for m in messages]
    assert [e["type"] for e in events][0] == "message_start" and events[-1]["type"] == "message_stop"
    assert events[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] == 2
    assert "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta") == "Hi there"


def test_bedrock_model_not_ready_and_in_stream_throttling(fake_bedrock):
    provider = build("bedrock", fake_bedrock)
    fake_bedrock.error_types[429] = "ModelNotReadyException"
    fake_bedrock.enqueue(Reply(status=429, error_message="Model is not ready to serve inference requests."))
    with pytest.raises(TransientFailure) as caught:
        provider.complete(HELLO, MODELS["bedrock"])
    assert caught.value.status == 429 and "not ready" in caught.value.message
    fake_bedrock.enqueue(Reply(chunks=["a", "b"], error_after=1, error_status=503))
    with pytest.raises(TransientFailure) as stream_failure:
        list(provider.stream(HELLO, MODELS["bedrock"]))
    assert stream_failure.value.status == 503  # a serviceUnavailableException event


def test_bedrock_session_token_and_native_token_count(fake_bedrock):
    fake_bedrock.session_token = "session-test-token"
    provider = build("bedrock", fake_bedrock, aws_session_token="session-test-token")
    native = NativeBody(ANTHROPIC_MESSAGES, {"model": "claude", "max_tokens": 50,
                                             "messages": [{"role": "user", "content": "count me"}]})
    assert provider.count_tokens(CompletionRequest([], native=native), MODELS["bedrock"]) > 0
    assert sent(fake_bedrock).path == "/model/anthropic.claude-sonnet-5-5-v1:0/count-tokens"
    assert sent(fake_bedrock).headers["x-amz-security-token"] == "session-test-token"
    without = build("bedrock", fake_bedrock)
    with pytest.raises(ProviderRejected):
        without.complete(HELLO, MODELS["bedrock"])


# -- Vertex AI -------------------------------------------------------------------------------


def test_vertex_fake_refuses_a_missing_token_and_another_project(fake_vertex):
    path = f"/v1beta1/projects/{VERTEX_PROJECT}/locations/us-east5/publishers/google/models/gemini-2.5-flash"
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    with httpx2.Client() as client:
        missing = client.post(fake_vertex.url + path + ":generateContent", json=body)
        other = client.post(fake_vertex.url + path.replace(VERTEX_PROJECT, "someone-else") + ":generateContent",
                            json=body, headers={"Authorization": f"Bearer {VERTEX_TOKEN}"})
    assert missing.status_code == 401 and missing.json()["error"]["status"] == "UNAUTHENTICATED"
    assert other.status_code == 403 and other.json()["error"]["status"] == "PERMISSION_DENIED"


def test_vertex_gemini_checks_the_history_as_the_gemini_api_does(fake_vertex):
    """A Gemini 3 function call sent back without its thought signature is refused, on Vertex too."""
    path = (f"/v1beta1/projects/{VERTEX_PROJECT}/locations/us-east5/publishers/google/models/"
            "gemini-3-pro:generateContent")
    history = {"contents": [{"role": "user", "parts": [{"text": "weather?"}]},
                            {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {}}}]}]}
    with httpx2.Client() as client:
        refused = client.post(fake_vertex.url + path, json=history,
                              headers={"Authorization": f"Bearer {VERTEX_TOKEN}"})
    assert refused.status_code == 400 and "thought_signature" in refused.json()["error"]["message"]


def test_vertex_service_account_file_gets_a_token_from_the_token_endpoint(fake_vertex, tmp_path):
    account = service_account_file(tmp_path, fake_vertex)
    for model in ("gemini-2.5-flash", "claude-sonnet-5-5@20260101"):
        kind = "vertex-claude" if model.startswith("claude") else "vertex-gemini"
        provider = build(kind, fake_vertex, access_token=None, credentials_file=str(account))
        assert provider.complete(HELLO, model).text == "Hello from the fake."
        token_requests = [r for r in fake_vertex.requests if r.path == "/token"]
        assert token_requests and b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer" in \
            token_requests[-1].body
        assert sent(fake_vertex).headers["authorization"] == f"Bearer {fake_vertex.issued[-1]}"


@pytest.mark.parametrize("kind", ["vertex-gemini", "vertex-claude"])
def test_vertex_token_endpoint_refuses_a_jwt_signed_by_another_key(kind, fake_vertex, tmp_path):
    account = service_account_file(tmp_path, fake_vertex)
    fake_vertex.service_accounts["robot@aiserver-test.iam.gserviceaccount.com"] = public_pem(new_key())
    provider = build(kind, fake_vertex, access_token=None, credentials_file=str(account))
    with pytest.raises(ProviderRejected):
        provider.complete(HELLO, MODELS[kind])
    with pytest.raises(ProviderRejected):
        next(provider.stream(HELLO, MODELS[kind]))
    assert not fake_vertex.issued
    assert all(r.path == "/token" for r in fake_vertex.requests)  # no model call without a token


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def service_account_file(tmp_path: Path, fake) -> Path:
    """A service account key file whose token_uri is the fake's token endpoint, its public key given to the fake."""
    key = new_key()
    email = "robot@aiserver-test.iam.gserviceaccount.com"
    fake.service_accounts[email] = public_pem(key)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps({"type": "service_account", "project_id": VERTEX_PROJECT, "private_key_id": "k1",
                                "private_key": private, "client_email": email, "client_id": "1",
                                "token_uri": fake.token_uri}))
    return path


# -- build ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("module, spec, named", [
    (azure, {"api_key": "s3cret", "base_url": "https://x.openai.azure.com", "api_version": "2024-10-21",
             "region": "x"}, "region"),
    (azure, {"api_key": "s3cret", "base_url": "https://x.openai.azure.com"}, "api_version"),
    (azure, {"base_url": "https://x.openai.azure.com", "api_version": "2024-10-21"}, "api_key"),
    (bedrock, {"aws_access_key_id": "AKID", "aws_secret_access_key": "s3cret"}, "region"),
    (bedrock, {"region": "us-east-1", "aws_access_key_id": "AKID"}, "aws_secret_access_key"),
    (bedrock, {"region": "us-east-1", "api_key": "s3cret"}, "api_key"),
    (vertex, {"location": "us-east5", "access_token": "s3cret"}, "project"),
    (vertex, {"project": "p", "location": "us-east5", "access_token": "s3cret", "credentials_file": "/x"},
     "credentials_file"),
])
def test_build_names_the_key_of_a_bad_spec_never_its_value(module, spec, named):
    with pytest.raises(ValueError) as caught:
        module.build("endpoint", spec, {"default_model": "m"})
    assert named in str(caught.value) and "s3cret" not in str(caught.value)


def test_vertex_endpoint_does_not_mix_claude_and_gemini():
    options = {"default_model": "gemini-2.5-flash", "fallback_models": ["claude-haiku-5-5@20260101"]}
    with pytest.raises(ValueError, match="claude-haiku-5-5@20260101"):
        vertex.build("vx", {"project": "p", "location": "us-east5", "access_token": "t"}, options)


def test_bedrock_without_keys_uses_the_default_credential_chain(fake_bedrock, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AWS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_BEARER_TOKEN_BEDROCK", raising=False)
    provider = bedrock.build("bedrock-env", {"region": "us-east-1", "base_url": fake_bedrock.url},
                             {"default_model": MODELS["bedrock"]})
    assert provider.complete(HELLO, MODELS["bedrock"]).text == "Hello from the fake."
    assert fake_bedrock.signatures_verified == 1
