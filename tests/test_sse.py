"""The stream formatters: error events are written from the typed errors, never by hand."""
from __future__ import annotations

import json

from app.core.errors import NotFound, UpstreamTimeout
from app.llm.gateway import StreamFailed
from app.llm.sse import NativeEvents, OpenAIChunks

BROKEN = StreamFailed("the provider closed the stream", "openai", "gpt-4o-mini")


def event(line: str) -> dict:
    assert line.startswith("data: ") and line.endswith("\n\n")
    return json.loads(line[6:])


def test_openai_stream_errors_have_openais_error_shape():
    chunks = OpenAIChunks()
    assert event(chunks.format(BROKEN)) == {"error": {"message": "the provider closed the stream",
                                                      "type": "upstream_error", "code": "stream_interrupted",
                                                      "param": None}}
    assert event(chunks.format(UpstreamTimeout("too slow"))) == {"error": {"message": "too slow",
                                                                          "type": "upstream_error",
                                                                          "code": "upstream_timeout", "param": None}}


def test_native_stream_errors_carry_message_code_and_details():
    native = NativeEvents(extra_done={"chat_id": "c1"})
    assert event(native.format(BROKEN)) == {"type": "error", "message": "the provider closed the stream",
                                            "code": "stream_interrupted", "provider": "openai",
                                            "model": "gpt-4o-mini", "chat_id": "c1"}
    assert event(native.format(NotFound("gone", details={"gist_id": "g1"}))) == {
        "type": "error", "message": "gone", "code": "not_found", "gist_id": "g1", "chat_id": "c1"}


def test_gist_chat_errors_add_the_status_they_would_have_had():
    gist_events = NativeEvents(error_status=True)
    assert event(gist_events.format(NotFound("gone")))["status"] == 404
    assert event(gist_events.format(BROKEN))["status"] == 502
    unexpected = event(gist_events.format(RuntimeError("bug")))
    assert unexpected == {"type": "error", "message": "Internal server error; the request id is in X-Request-ID.",
                          "code": "internal_error", "status": 500}
