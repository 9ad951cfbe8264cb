"""Fake OpenTelemetry collector: an OTLP/HTTP receiver of traces on loopback.

It answers `POST /v1/traces` as the OTLP specification's HTTP transport says: a binary protobuf
`ExportTraceServiceRequest` (`Content-Type: application/x-protobuf`, gzip- or deflate-encoded when
`Content-Encoding` says so) gets `200` with an `ExportTraceServiceResponse` in the same encoding;
another content type gets `415`, a body that does not decode `400`. Requests are decoded with the
official `opentelemetry-proto` package and every span is kept as a `ReceivedSpan`, with the request's
headers, so tests read the span tree, attributes and events that an exporter really sent.
`GET /stats` answers `{"spans": N}` (the benchmark checks that traces arrived).

Run it by hand to watch a server's traces: ``python -m tests.fakes.otlp_receiver --port 4318`` prints a
line per span; start the server with ``OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318``.
"""
from __future__ import annotations

import argparse
import gzip
import json
import signal
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

PROTOBUF = "application/x-protobuf"
KINDS = {Span.SPAN_KIND_INTERNAL: "internal", Span.SPAN_KIND_SERVER: "server", Span.SPAN_KIND_CLIENT: "client",
         Span.SPAN_KIND_PRODUCER: "producer", Span.SPAN_KIND_CONSUMER: "consumer"}


def value_of(value: AnyValue) -> Any:
    """An OTLP `AnyValue` as Python (arrays as lists, key-value lists as dicts)."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [value_of(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {pair.key: value_of(pair.value) for pair in value.kvlist_value.values}
    return None if kind is None else getattr(value, kind)


@dataclass
class ReceivedSpan:
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root span
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    status: str  # "unset", "ok" or "error"
    status_message: str
    start_ns: int
    end_ns: int
    resource: dict[str, Any] = field(default_factory=dict)
    scope: str = ""
    links: list[tuple[str, str]] = field(default_factory=list)  # (trace id, span id) of each linked span

    def event(self, name: str) -> dict[str, Any] | None:
        return next((attributes for event, attributes in self.events if event == name), None)


def received(span: Span, resource: dict[str, Any], scope: str) -> ReceivedSpan:
    status = {0: "unset", 1: "ok", 2: "error"}[span.status.code]
    return ReceivedSpan(span.name, KINDS.get(span.kind, "unspecified"), span.trace_id.hex(), span.span_id.hex(),
                        span.parent_span_id.hex(), {a.key: value_of(a.value) for a in span.attributes},
                        [(e.name, {a.key: value_of(a.value) for a in e.attributes}) for e in span.events],
                        status, span.status.message, span.start_time_unix_nano, span.end_time_unix_nano,
                        resource, scope, [(link.trace_id.hex(), link.span_id.hex()) for link in span.links])


class FakeCollector:
    """`with FakeCollector() as collector:` — its `endpoint` is what OTEL_EXPORTER_OTLP_ENDPOINT takes."""

    def __init__(self, port: int = 0, on_span: Callable[[ReceivedSpan], None] | None = None) -> None:
        self.on_span = on_span
        self.spans: list[ReceivedSpan] = []
        self.requests: list[dict[str, str]] = []  # each export request's headers
        self.lock = threading.Lock()
        self.answer_delay = 0.0  # seconds each export waits for its answer (a slow collector)
        self.refuse_with = 0  # an HTTP status every export is answered with instead of 200
        collector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(collector.answer_delay)
                if collector.refuse_with:
                    return self.answer(collector.refuse_with, b"refused by the test", "text/plain")
                if self.path != "/v1/traces":
                    return self.answer(404, b"", "text/plain")
                if self.headers.get("Content-Type", "").split(";")[0].strip() != PROTOBUF:
                    return self.answer(415, b"only application/x-protobuf", "text/plain")
                try:
                    request = ExportTraceServiceRequest.FromString(decoded(body, self.headers.get("Content-Encoding")))
                except (DecodeError, OSError, zlib.error):
                    return self.answer(400, b"undecodable ExportTraceServiceRequest", "text/plain")
                collector.keep(request, dict(self.headers.items()))
                self.answer(200, ExportTraceServiceResponse().SerializeToString(), PROTOBUF)

            def do_GET(self) -> None:
                if self.path != "/stats":
                    return self.answer(404, b"", "text/plain")
                with collector.lock:
                    count = len(collector.spans)
                self.answer(200, json.dumps({"spans": count}).encode(), "application/json")

            def answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def keep(self, request: ExportTraceServiceRequest, headers: dict[str, str]) -> None:
        with self.lock:
            self.requests.append(headers)
            for resource_spans in request.resource_spans:
                resource = {a.key: value_of(a.value) for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append(received(span, resource, scope_spans.scope.name))
                        if self.on_span is not None:
                            self.on_span(self.spans[-1])

    def wait_for(self, found: Callable[[list[ReceivedSpan]], bool], timeout: float = 10.0) -> list[ReceivedSpan]:
        """The spans received, once `found(spans)` holds; AssertionError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                spans = list(self.spans)
            if found(spans):
                return spans
            time.sleep(0.02)
        raise AssertionError(f"the collector did not receive the spans in {timeout}s: {[s.name for s in spans]}")

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self.lock:
            return [span for span in self.spans if span.trace_id == trace_id]

    def __enter__(self) -> "FakeCollector":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def decoded(body: bytes, encoding: str | None) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    return body


def print_span(span: ReceivedSpan) -> None:
    milliseconds = (span.end_ns - span.start_ns) / 1e6
    print(f"{span.trace_id} {span.span_id} parent={span.parent_id or '-'} {span.kind:<8} {milliseconds:8.1f} ms "
          f"{span.name} {json.dumps(span.attributes)}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.otlp_receiver", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=4318, help="port on 127.0.0.1 (default %(default)s; 0: any)")
    parser.add_argument("--quiet", action="store_true", help="print no span (the benchmark reads GET /stats)")
    args = parser.parse_args(argv)
    with FakeCollector(args.port, on_span=None if args.quiet else print_span) as collector:
        print(f"OTEL_EXPORTER_OTLP_ENDPOINT={collector.endpoint}", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
