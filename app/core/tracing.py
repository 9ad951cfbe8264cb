"""OpenTelemetry traces, on when the standard `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
`OTEL_EXPORTER_OTLP_ENDPOINT` is set (README, "Traces"); off and free otherwise.

`tracing_from_environ()` is called once per process (by `create_app`, which runs in each Gunicorn
worker after the fork, and in the huey worker). Off, it returns `OFF`, whose methods do nothing and
which never imports the SDK. On, it builds the official SDK's `TracerProvider` with a
`BatchSpanProcessor` and the OTLP/HTTP exporter, all configured by the SDK from the other standard
variables (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS`,
`OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`, `OTEL_PROPAGATORS`...). The provider is this object's own, not the
process's global one: a vendor SDK's own spans stay out, and tests can build several apps.

Ending a span only appends it to the processor's queue; the processor's thread (a greenlet under
gevent's monkey-patching) exports batches. An export that fails (a collector that is down, refuses or
hangs) costs that thread its retries and drops the batch; it is logged once, when export starts
failing, and once when it works again, never per batch (`ReportOnce`).
"""
from __future__ import annotations

import logging
import os
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Mapping

log = logging.getLogger("aiserver.tracing")

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
HEADER_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS")
CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
CAPTURE_VALUES = {"true", "span_only", "span_and_event"}  # the older boolean and the newer modes that fill spans
# the exporter's loggers (a logger's filters see only its own records, not its children's)
EXPORTER_LOGGERS = ("opentelemetry.exporter.otlp.proto.http.trace_exporter", "opentelemetry.exporter.otlp.common.http")
PROCESSOR_LOGGER = "opentelemetry.sdk._shared_internal"  # the batch processor's "Queue full, dropping spans"
REQUEST_ID = "aiserver.request.id"


class NoSpan:
    """A span that records nothing: what every span is while tracing is off (and the part of the
    OpenTelemetry `Span` API this project uses)."""

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        pass

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        pass

    def update_name(self, name: str) -> None:
        pass

    def is_recording(self) -> bool:
        return False

    def end(self) -> None:
        pass


NO_SPAN = NoSpan()


class Tracing:
    """Tracing off: every method is a no-op (`enabled` lets a caller skip building attributes)."""

    enabled = False
    capture_content = False

    def wrap_wsgi(self, app: Callable) -> Callable:
        """`app` with a server span per request; off, `app` itself."""
        return app

    def start(self, name: str, attributes: Mapping[str, Any] | None = None, client: bool = False) -> Any:
        """A span started as a child of the current one (not made current), ended by the caller."""
        return NO_SPAN

    @contextmanager
    def span(self, name: str, attributes: Mapping[str, Any] | None = None, new_trace: bool = False,
             origin: Mapping[str, str] | None = None) -> Iterator[Any]:
        """An internal span made current for the block (children started inside it are its own);
        `new_trace` starts a trace of its own rather than a child of the current span, linked to the
        span of `origin` (a `carrier()` made where the work was asked for) when given."""
        yield NO_SPAN

    def carrier(self) -> dict[str, str]:
        """The current span's context as propagation headers (`traceparent`...), to go along with work
        handed to another process (a queued job), which links to it; empty while off."""
        return {}

    def current(self) -> Any:
        """The current span (the request's server span in a view), or `NO_SPAN`."""
        return NO_SPAN

    def secrets(self) -> list[str]:
        """Secret values of the tracing settings (the exporter's headers), for the log redaction."""
        return []

    def shutdown(self) -> None:
        pass


OFF = Tracing()


def tracing_from_environ(environ: Mapping[str, str] = os.environ, version: str = "") -> Tracing:
    """`OFF` unless an OTLP endpoint is set (and neither `OTEL_SDK_DISABLED=true` nor
    `OTEL_TRACES_EXPORTER=none` says otherwise); else tracing with the SDK, from `environ`."""
    if not any(environ.get(name) for name in ENDPOINT_VARIABLES):
        return OFF
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return OFF
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() in ("none", ""):
        return OFF
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol and protocol.strip().lower() != "http/protobuf":
        log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%s is not supported; traces are sent as http/protobuf", protocol)
    capture = environ.get(CAPTURE_CONTENT, "").strip().lower() in CAPTURE_VALUES
    return SdkTracing(version, capture, header_values(environ))


def header_values(environ: Mapping[str, str]) -> list[str]:
    """The values of the exporter's headers (`key=value,...`, often an API key of the backend)."""
    values = []
    for name in HEADER_VARIABLES:
        for pair in environ.get(name, "").split(","):
            _, _, value = pair.partition("=")
            if value.strip():
                values.append(value.strip())
    return values


class SdkTracing(Tracing):
    """Tracing on, with the OpenTelemetry SDK (imported here only)."""

    enabled = True

    def __init__(self, version: str, capture_content: bool, header_secrets: list[str]):
        from opentelemetry import context, propagate, trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self.capture_content = capture_content
        self._header_secrets = header_secrets
        self._trace, self._propagate, self._context = trace, propagate, context
        # our defaults, then what OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES say over them
        resource = Resource.create({"service.name": "aiserver", "service.version": version}).merge(
            OTELResourceDetector().detect())
        self.provider = TracerProvider(resource=resource)
        exporter = OTLPSpanExporter()
        # ReportOnce and ENVIRON_GETTER are duck-typed: subclassing the SDK's types would import it while off
        self.provider.add_span_processor(BatchSpanProcessor(ReportOnce(exporter, exporter._endpoint)))  # type: ignore[arg-type]
        self.tracer = self.provider.get_tracer("aiserver", version)

    def wrap_wsgi(self, app: Callable) -> Callable:
        return TracedWSGI(app, self)

    def start(self, name: str, attributes: Mapping[str, Any] | None = None, client: bool = False) -> Any:
        kind = self._trace.SpanKind.CLIENT if client else self._trace.SpanKind.INTERNAL
        return self.tracer.start_span(name, kind=kind, attributes=attributes)

    @contextmanager
    def span(self, name: str, attributes: Mapping[str, Any] | None = None, new_trace: bool = False,
             origin: Mapping[str, str] | None = None) -> Iterator[Any]:
        links = []
        if origin:
            asked = self._trace.get_current_span(self._propagate.extract(dict(origin))).get_span_context()
            links = [self._trace.Link(asked)] if asked.is_valid else []
        # an exception's text is not recorded: it may quote a secret (callers record failures themselves)
        with self.tracer.start_as_current_span(name, context=self._context.Context() if new_trace else None,
                                               attributes=attributes, links=links, record_exception=False) as span:
            yield span

    def carrier(self) -> dict[str, str]:
        carrier: dict[str, str] = {}
        self._propagate.inject(carrier)
        return carrier

    def current(self) -> Any:
        return self._trace.get_current_span()

    def secrets(self) -> list[str]:
        return list(self._header_secrets)

    def shutdown(self) -> None:
        self.provider.shutdown()

    def server_span(self, environ: dict[str, Any]) -> Any:
        """The server span of the request in `environ` (HTTP semantic conventions), continuing the trace
        of its `traceparent` (or whatever `OTEL_PROPAGATORS` names)."""
        parent = self._propagate.extract(environ, getter=ENVIRON_GETTER)  # type: ignore[arg-type]
        method = environ.get("REQUEST_METHOD", "GET")
        attributes = {"http.request.method": method, "url.path": environ.get("PATH_INFO", "/"),
                      "url.scheme": environ.get("wsgi.url_scheme", "http"),
                      "network.protocol.version": environ.get("SERVER_PROTOCOL", "HTTP/1.1").partition("/")[2]}
        if environ.get("REMOTE_ADDR"):
            attributes["client.address"] = environ["REMOTE_ADDR"]
        if environ.get("HTTP_USER_AGENT"):
            attributes["user_agent.original"] = environ["HTTP_USER_AGENT"]
        return self.tracer.start_span(method, context=parent, kind=self._trace.SpanKind.SERVER, attributes=attributes)

    def activate(self, span: Any) -> object:
        """Make `span` current; returns the token for `deactivate`."""
        return self._context.attach(self._trace.set_span_in_context(span))

    def deactivate(self, token: object) -> None:
        self._context.detach(token)  # type: ignore[arg-type]


class _EnvironGetter:
    """Reads propagation headers (`traceparent`...) from a WSGI environ (`HTTP_TRACEPARENT`)."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get("HTTP_" + key.upper().replace("-", "_"))
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return [name[5:].lower().replace("_", "-") for name in carrier if name.startswith("HTTP_")]


ENVIRON_GETTER = _EnvironGetter()


class TracedWSGI:
    """A server span around each request: started before the app runs, current while it runs (and
    while its body is read, for code that runs then), ended when the response is closed, which for a
    stream is after its last byte. 5xx answers and exceptions mark the span as an error."""

    def __init__(self, app: Callable, tracing: SdkTracing):
        self.app = app
        self.tracing = tracing

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        span = self.tracing.server_span(environ)
        token = self.tracing.activate(span)

        def record_status(status: str, headers: list, exc_info: Any = None) -> Any:
            code = int(status.split(" ", 1)[0])
            span.set_attribute("http.response.status_code", code)
            if code >= 500:
                span.set_attribute("error.type", str(code))
                span.set_status(self.tracing._trace.StatusCode.ERROR)
            return start_response(status, headers, exc_info)

        try:
            body = self.app(environ, record_status)
        except BaseException as error:
            span.set_attribute("error.type", type(error).__qualname__)
            span.set_status(self.tracing._trace.StatusCode.ERROR)
            span.end()
            raise
        finally:
            self.tracing.deactivate(token)
        return TracedBody(body, span, self.tracing)


class TracedBody:
    """A response body that keeps its request's span current while it is read and ends it on close."""

    def __init__(self, body: Iterable[bytes], span: Any, tracing: SdkTracing):
        self.body = body
        self.chunks = iter(body)
        self.span = span
        self.tracing = tracing

    def __iter__(self) -> "TracedBody":
        return self

    def __next__(self) -> bytes:
        token = self.tracing.activate(self.span)
        try:
            return next(self.chunks)
        finally:
            self.tracing.deactivate(token)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                token = self.tracing.activate(self.span)
                try:
                    close()
                finally:
                    self.tracing.deactivate(token)
        finally:
            self.span.end()


def name_request(span: Any, method: str, route: str | None, request_id: str) -> None:
    """Name the server `span` after its route (`GET /v1/models`, HTTP semantic conventions) and give
    it the request id; a request that matched no route keeps the method alone as its name."""
    if not span.is_recording():
        return
    span.set_attribute(REQUEST_ID, request_id)
    if route:
        span.set_attribute("http.route", route)
        span.update_name(f"{method} {route}")


def record_failure(span: Any, error_type: str, description: str = "") -> None:
    """Mark `span` as failed: `error.type` (a low-cardinality class of the error) and an ERROR status
    with `description`, which must hold no secret (callers pass redacted text)."""
    if not span.is_recording():
        return
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, description[:500]))


class ReportOnce:
    """The OTLP exporter, with its log lines (one per retry and per batch) replaced by one warning
    when export starts failing and one line when it works again."""

    def __init__(self, exporter: Any, endpoint: str):
        self.exporter = exporter
        self.endpoint = endpoint
        self.failing = False
        self.reasons = EXPORTER_LINES
        for name in EXPORTER_LOGGERS:
            logging.getLogger(name).addFilter(EXPORTER_LINES)  # once: adding a filter twice keeps one
        logging.getLogger(PROCESSOR_LOGGER).addFilter(QUEUE_LINES)

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        QUEUE_LINES.export_started()
        try:
            result = self.exporter.export(spans)
        finally:
            QUEUE_LINES.export_ended()
        if result is SpanExportResult.SUCCESS:
            EXPORTER_LINES.last = ""
        if result is SpanExportResult.SUCCESS and self.failing:
            self.failing = False
            QUEUE_LINES.failing -= 1
            log.warning("traces are exported to %s again", self.endpoint)
        elif result is not SpanExportResult.SUCCESS and not self.failing:
            self.failing = True
            QUEUE_LINES.failing += 1
            log.warning("traces cannot be exported to %s (%s); spans are dropped until it answers "
                        "(this is logged once)", self.endpoint, self.reasons.last or "no reason given")
        QUEUE_LINES.decide(succeeded=result is SpanExportResult.SUCCESS)
        return result

    def shutdown(self) -> None:
        self.exporter.shutdown()
        if self.failing:  # its trouble ends with it (tests build several apps in one process)
            self.failing = False
            QUEUE_LINES.failing -= 1
            EXPORTER_LINES.last = ""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)


class _LastReason(logging.Filter):
    """Keeps the exporter's own lines out of the log, remembering the last one's text."""

    def __init__(self) -> None:
        super().__init__()
        self.last = ""

    def filter(self, record: logging.LogRecord) -> bool:
        self.last = record.getMessage()[:300]  # an export is in trouble (retrying, or failed)
        return False


class _QueueFullWhileFailing(logging.Filter):
    """Drops the processor's "Queue full" lines while export is in trouble (failing, or retrying before
    it gives up): the one warning of the failure says that spans are dropped. (With export working, a
    full queue is news, and is logged.)

    A queue can fill during an export whose outcome is not known yet (a collector refusing connections
    fails the first export a few milliseconds after it starts, before the exporter says anything), so
    the first such line is held and, once that export has ended, logged if it succeeded or dropped if
    it failed."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = 0  # exporters of this process whose export is failing
        self.exporting = 0  # exports under way
        self.held: logging.LogRecord | None = None
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("Queue full"):
            return True
        with self.lock:
            if self.failing or EXPORTER_LINES.last:
                return False
            if self.exporting:
                self.held = self.held or record
                return False
        return True

    def export_started(self) -> None:
        with self.lock:
            self.exporting += 1

    def export_ended(self) -> None:
        with self.lock:
            self.exporting -= 1

    def decide(self, succeeded: bool) -> None:
        """After an export: log the line held during it if it succeeded, else drop it."""
        with self.lock:
            held, self.held = self.held, None
        if held is not None and succeeded:  # past the logger's filters already (the SDK's own drops a repeat)
            logging.getLogger(PROCESSOR_LOGGER).callHandlers(held)


EXPORTER_LINES = _LastReason()
QUEUE_LINES = _QueueFullWhileFailing()
