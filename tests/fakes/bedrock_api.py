"""Fake of Amazon Bedrock's runtime for Claude (``InvokeModel``, ``InvokeModelWithResponseStream``,
``CountTokens``), as ``anthropic.AnthropicBedrock`` calls it with ``base_url=fake.url``.

The SDK (``lib/bedrock/_client.py``) moves the body's ``model`` into the path and drops ``stream``:
``POST /model/{modelId}/invoke`` or ``/model/{modelId}/invoke-with-response-stream``, the model id
percent-encoded except ``:`` (``anthropic.claude-sonnet-5-5-v1:0``, ``us.anthropic...``, or an ARN).
The body is Anthropic's Messages body with ``anthropic_version`` (Bedrock's API reference: it "must
be bedrock-2023-05-31") and without ``model``; extraneous keys are refused as Bedrock does.

Every request must carry a valid AWS Signature Version 4 for service ``bedrock`` in the fake's region:
the fake recomputes it from the request as it arrived (canonical request with the path URI-encoded
once more, the signed headers, the body's SHA-256; key derived from the secret it was given) and
refuses a missing, stale or wrong one with the 403s and ``x-amzn-ErrorType`` AWS sends. The check is
written here from AWS's SigV4 reference, not borrowed from botocore, so it also checks the signer.

Streams use the AWS event-stream binary framing (``application/vnd.amazon.eventstream``): each
message is a prelude (total length, headers length, prelude CRC32), headers (``:event-type: chunk``,
``:content-type: application/json``, ``:message-type: event``), a payload ``{"bytes": base64(<an
Anthropic stream event>), "p": <padding>}`` and the message CRC32. Bedrock adds its
``amazon-bedrock-invocationMetrics`` to the ``message_stop`` event. An error inside a stream is an
exception message (``:message-type: exception``, ``:exception-type: throttlingException``...).
Errors before a stream are JSON ``{"message"}`` with the type in ``x-amzn-ErrorType``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import struct
import time
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from typing import Iterator
from urllib.parse import quote, unquote

from .anthropic_api import FakeAnthropic, counted_tokens
from .server import Frame, Handler, RecordedRequest, Reply

BEDROCK_VERSION = "bedrock-2023-05-31"
INVOKE = re.compile(r"^/model/([^/]+)/(invoke|invoke-with-response-stream|count-tokens)$")
# Bedrock's exception type for each status it answers with (InvokeModel's API reference, "Errors")
ERROR_TYPES = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
# the exception events of InvokeModelWithResponseStream's ResponseStream
STREAM_EXCEPTIONS = {400: "validationException", 408: "modelTimeoutException", 424: "modelStreamErrorException",
                     429: "throttlingException", 500: "internalServerException", 503: "serviceUnavailableException"}
ALGORITHM = "AWS4-HMAC-SHA256"
MAX_CLOCK_SKEW_S = 300
BAD_SIGNATURE = ("The request signature we calculated does not match the signature you provided. Check your AWS "
                 "Secret Access Key and signing method. Consult the service documentation for details.")
PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


class FakeBedrock(FakeAnthropic):
    """``access_key_id``/``secret_access_key`` (and ``session_token``, when given, which must come as
    ``x-amz-security-token``) are the only credentials it accepts; ``region`` the one it serves.
    ``error_types`` may rename the exception of a scripted status (429: ``ModelNotReadyException``).
    ``signatures_verified`` counts the requests whose signature it checked and accepted."""

    default_models = ("anthropic.claude-sonnet-5-5-v1:0", "anthropic.claude-haiku-5-5-v1:0")
    stream_content_type = "application/vnd.amazon.eventstream"

    def __init__(self, *, access_key_id: str = "AKIDFAKEBEDROCK0001", secret_access_key: str = "fake-secret-key",
                 session_token: str | None = None, region: str = "us-east-1", **options) -> None:
        super().__init__(**options)
        self.access_key_id, self.secret_access_key = access_key_id, secret_access_key
        self.session_token, self.region = session_token, region
        self.error_types = dict(ERROR_TYPES)
        self.signatures_verified = 0

    # -- routing ------------------------------------------------------------------

    def _handle(self, handler: Handler, request: RecordedRequest) -> None:
        """The signature comes first: AWS authenticates a request before it looks at anything else."""
        refused = signature_problem(request, self)
        if refused:
            with self._changed:
                self._requests.append(request)
                self._changed.notify_all()
            error_type, message = refused
            return handler.send_json(403, {"message": message}, self._error_headers(error_type))
        with self._lock:
            self.signatures_verified += 1
        super()._handle(handler, request)

    def route(self, handler: Handler, request: RecordedRequest) -> None:
        match = INVOKE.match(request.path)
        if request.method != "POST" or match is None:
            return self._send_error(handler, 404, "UnknownOperationException", "")
        model, operation = unquote(match.group(1)), match.group(2)
        if operation == "count-tokens":
            return self._count_tokens(handler, request)
        body = {key: value for key, value in request.json.items() if key not in ("anthropic_version", "anthropic_beta")}
        self.serve(handler, replace(request, json=body), model, stream=operation != "invoke")

    def invalid(self, request: RecordedRequest) -> str | None:
        match = INVOKE.match(request.path)
        if match is None or match.group(2) == "count-tokens":
            return None
        body = request.json
        if "anthropic_version" not in body:
            return malformed("#: required key [anthropic_version] not found")
        if body["anthropic_version"] != BEDROCK_VERSION:
            return malformed(f"#/anthropic_version: {body['anthropic_version']} is not a valid enum value")
        for key in ("model", "stream"):
            if key in body:
                return malformed(f"#: extraneous key [{key}] is not permitted")
        messages_body = {k: v for k, v in body.items() if k not in ("anthropic_version", "anthropic_beta")}
        return super().invalid(replace(request, path="/v1/messages", json={**messages_body, "model": "m"}))

    def auth_error(self, request: RecordedRequest) -> tuple[int, str] | None:
        return None  # the signature was checked in _handle

    # -- answers ------------------------------------------------------------------

    def reject(self, handler: Handler, status: int, message: str, reply: Reply | None = None) -> None:
        headers = self._error_headers(self.error_types.get(status, "InternalServerException"))
        handler.send_json(status, self.error_body(status, message, reply), {**headers, **self.retry_headers(reply)}
                          if reply else headers)

    def error_body(self, status: int, message: str, reply: Reply | None = None) -> dict:
        return {"message": message}

    def retry_headers(self, reply: Reply) -> dict[str, str]:
        return {}  # Bedrock sends no Retry-After

    def response_headers(self) -> dict[str, str]:
        return {"x-amzn-RequestId": str(uuid.uuid4()), "X-Amzn-Bedrock-Content-Type": "application/json"}

    def frames(self, reply: Reply, model: str, request: RecordedRequest) -> Iterator[Frame]:
        """Anthropic's stream events, each as the payload of one event-stream ``chunk`` message."""
        started = time.monotonic()
        for frame in super().frames(reply, model, request):
            event = json.loads(frame.data.decode().split("data: ", 1)[1])
            if event["type"] == "message_stop":
                latency = round((time.monotonic() - started) * 1000)
                event["amazon-bedrock-invocationMetrics"] = {
                    "inputTokenCount": reply.prompt_tokens, "outputTokenCount": reply.output_tokens,
                    "invocationLatency": latency, "firstByteLatency": latency}
            yield Frame(chunk_message(event), frame.content)

    def stream_error(self, status: int, message: str) -> Frame:
        return Frame(exception_message(STREAM_EXCEPTIONS.get(status, "internalServerException"), message))

    def _count_tokens(self, handler: Handler, request: RecordedRequest) -> None:
        """``CountTokens``: ``{"input": {"invokeModel": {"body": base64 of an InvokeModel body}}}``."""
        try:
            body = json.loads(base64.b64decode(request.json["input"]["invokeModel"]["body"]))
        except (KeyError, TypeError, ValueError, binascii.Error):
            return self._send_error(handler, 400, "ValidationException", "Malformed input request.")
        handler.send_json(200, {"inputTokens": counted_tokens(body)}, self.response_headers())

    def _send_error(self, handler: Handler, status: int, error_type: str, message: str) -> None:
        handler.send_json(status, {"message": message}, self._error_headers(error_type))

    def _error_headers(self, error_type: str) -> dict[str, str]:
        return {**self.response_headers(),
                "x-amzn-ErrorType": f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/"}


def malformed(problem: str) -> str:
    """Bedrock's ValidationException message for a body its schema refuses."""
    return f"Malformed input request: {problem}, please reformat your input and try again."


# -- AWS event-stream framing ---------------------------------------------------------


def event_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (total and headers length, CRC32), string headers, payload, CRC32."""
    encoded = b"".join(struct.pack("B", len(name)) + name.encode() + struct.pack(">BH", 7, len(value.encode()))
                       + value.encode() for name, value in headers.items())
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", binascii.crc32(message))


def chunk_message(event: dict) -> bytes:
    """A ``chunk`` event carrying one Anthropic stream event, base64-encoded, with Bedrock's padding field."""
    data = json.dumps(event, separators=(",", ":")).encode()
    payload = {"bytes": base64.b64encode(data).decode(), "p": PADDING[: len(data) % len(PADDING) + 1]}
    return event_message({":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"},
                         json.dumps(payload).encode())


def exception_message(exception_type: str, message: str) -> bytes:
    headers = {":exception-type": exception_type, ":content-type": "application/json", ":message-type": "exception"}
    return event_message(headers, json.dumps({"message": message}).encode())


# -- Signature Version 4 ----------------------------------------------------------------


def signature_problem(request: RecordedRequest, fake: FakeBedrock) -> tuple[str, str] | None:
    """(x-amzn-ErrorType, message) of the 403 AWS answers a request whose SigV4 signature is missing,
    stale or wrong, or None when it is valid for the fake's credentials, region and service."""
    authorization = request.headers.get("authorization", "")
    if not authorization.startswith(ALGORITHM + " "):
        return "MissingAuthenticationTokenException", "Missing Authentication Token"
    fields = dict(part.strip().split("=", 1) for part in authorization[len(ALGORITHM) + 1 :].split(",") if "=" in part)
    try:
        key_id, date, region, service, terminal = fields["Credential"].split("/")
        signed_headers, signature = fields["SignedHeaders"].split(";"), fields["Signature"]
    except (KeyError, ValueError):
        return "IncompleteSignatureException", ("Authorization header requires 'Credential', 'SignedHeaders' and "
                                                "'Signature' parameters.")
    if key_id != fake.access_key_id:
        return "UnrecognizedClientException", "The security token included in the request is invalid."
    if fake.session_token is not None and request.headers.get("x-amz-security-token") != fake.session_token:
        return "UnrecognizedClientException", "The security token included in the request is invalid."
    amz_date = request.headers.get("x-amz-date", "")
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return "IncompleteSignatureException", ("Authorization header requires existence of either a 'X-Amz-Date' "
                                                "or a 'Date' header.")
    now = datetime.now(timezone.utc)
    if abs((now - signed_at).total_seconds()) > MAX_CLOCK_SKEW_S:
        return "InvalidSignatureException", (f"Signature expired: {amz_date} is now earlier than "
                                             f"{now.strftime('%Y%m%dT%H%M%SZ')} (5 min.)")
    if (date, region, service, terminal) != (amz_date[:8], fake.region, "bedrock", "aws4_request"):
        return "InvalidSignatureException", (f"Credential should be scoped to a valid region and service, not "
                                             f"'{region}/{service}'.")
    if "host" not in signed_headers or any(name not in request.headers for name in signed_headers):
        return "InvalidSignatureException", BAD_SIGNATURE
    expected = sigv4_signature(request, signed_headers, f"{date}/{region}/{service}/{terminal}", amz_date,
                               fake.secret_access_key)
    return None if hmac.compare_digest(expected, signature) else ("InvalidSignatureException", BAD_SIGNATURE)


def sigv4_signature(request: RecordedRequest, signed_headers: list[str], scope: str, amz_date: str,
                    secret: str) -> str:
    """The signature AWS computes: HMAC-SHA256 of the string to sign with the key derived for the scope."""
    canonical_headers = "".join(f"{name}:{' '.join(request.headers[name].split())}\n" for name in signed_headers)
    query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(request.query.items()))
    payload_hash = hashlib.sha256(request.body).hexdigest()  # a client's x-amz-content-sha256 must say the same
    canonical_request = "\n".join([request.method, quote(request.path, safe="/~"), query, canonical_headers,
                                   ";".join(signed_headers), payload_hash])
    string_to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
