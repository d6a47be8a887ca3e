"""Request tracing: W3C Trace Context in, ids in every log line, `traceparent` out.

Every request gets a trace id and a span id of its own, bound to the log context (`trace_id`,
`span_id`) next to `request_id`:
- an incoming `traceparent` (version-traceid-parentid-flags, validated strictly: lowercase
  hex, no all-zero ids, version ff invalid) is continued: same trace id and flags, new span
  id; a malformed one is ignored and a new trace starts;
- the response carries `traceparent: 00-<trace id>-<span id>-<flags>`, so a caller can find
  this request's log lines and spans.

OpenTelemetry export is optional and off by default. Only when OTEL_EXPORTER_OTLP_ENDPOINT is
set does `configure_tracing` import the SDK (the `[otel]` extra), install a tracer provider
exporting over OTLP/HTTP, and from then on FastAPI's built-in instrumentation opens a server
span per request (parent taken from `traceparent`); the ids above are then that span's, so
logs and exported traces agree. Set but not installed: one warning, and the service runs on.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from fastapi.telemetry import TelemetryConfig

from inbox_allocation import __version__
from inbox_allocation.logging import get_logger

TRACEPARENT_HEADER = b"traceparent"
NOT_SAMPLED = "00"
SERVICE_NAME = "inbox-allocation"
# Probes and scrapes: no server spans for them when exporting (they would drown the rest).
UNTRACED_PATHS = frozenset({"/health", "/ready", "/metrics"})

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE_ID = "0" * 32
_ZERO_SPAN_ID = "0" * 16


@dataclass(frozen=True, slots=True)
class TraceParent:
    """A valid incoming `traceparent`."""

    trace_id: str
    parent_id: str
    flags: str


def parse_traceparent(value: str | None) -> TraceParent | None:
    """The header's fields, or None when absent or malformed (W3C Trace Context §3.2).

    Version 00 is exactly 55 characters; a later version may append `-…` fields, which are
    ignored; version ff is invalid.
    """
    if not value:
        return None
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    if trace_id == _ZERO_TRACE_ID or parent_id == _ZERO_SPAN_ID:
        return None
    return TraceParent(trace_id, parent_id, flags)


@dataclass(frozen=True, slots=True)
class RequestTrace:
    """This request's place in a trace."""

    trace_id: str
    span_id: str
    flags: str

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


class _OtelState:
    """Set by `configure_tracing` (once per process)."""

    configured = False
    # While OpenTelemetry export runs: the current span's (trace id, span id, flags), or
    # None outside a recorded span.
    span_ids: Callable[[], tuple[str, str, str] | None] | None = None


def start_request_trace(traceparent: str | None) -> RequestTrace:
    """The ids of a request with this incoming `traceparent` header (or none)."""
    if _OtelState.span_ids is not None:
        ids = _OtelState.span_ids()
        if ids is not None:
            return RequestTrace(*ids)
    incoming = parse_traceparent(traceparent)
    random_hex = os.urandom(24).hex()  # one system call: 16 bytes trace id, 8 bytes span id
    if incoming is not None:
        return RequestTrace(incoming.trace_id, random_hex[32:], incoming.flags)
    return RequestTrace(random_hex[:32], random_hex[32:], NOT_SAMPLED)


def fastapi_telemetry(exporting: bool) -> TelemetryConfig:
    """FastAPI's `telemetry=` setting: no spans for probes and scrapes. Switched off entirely
    when nothing is exported: otherwise FastAPI asks OpenTelemetry for its providers on every
    request, for nothing."""
    if not exporting:
        return {"tracing": False, "metrics": False, "logs": False}
    return {"exclude": lambda scope: scope.get("path") in UNTRACED_PATHS}


def configure_tracing(endpoint: str | None) -> bool:
    """Export traces over OTLP/HTTP to `endpoint` (OTEL_EXPORTER_OTLP_ENDPOINT), once per
    process. True when export is active; False when no endpoint is set or the `[otel]`
    extra is not installed (one warning). OpenTelemetry is imported only here."""
    if not endpoint:
        return False
    if _OtelState.configured:
        return _OtelState.span_ids is not None
    _OtelState.configured = True
    try:
        # Imported lazily: the extra is optional and must not load when export is off.
        from opentelemetry import trace  # noqa: PLC0415
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )
        from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
    except ImportError as exc:
        get_logger(__name__).warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed: traces "
            "are not exported (install the extra: pip install 'inbox-allocation[otel]')",
            missing=exc.name,
        )
        return False

    resource = Resource.create(
        {
            "service.name": os.environ.get("OTEL_SERVICE_NAME") or SERVICE_NAME,
            "service.version": __version__,
        }
    )
    provider = TracerProvider(resource=resource)
    # A signal-specific endpoint in the environment wins, as the OpenTelemetry spec says.
    traces_endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or (
        endpoint.rstrip("/") + "/v1/traces"
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_endpoint)))
    trace.set_tracer_provider(provider)

    def current_span_ids() -> tuple[str, str, str] | None:
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return None
        return (
            format(context.trace_id, "032x"),
            format(context.span_id, "016x"),
            format(context.trace_flags, "02x"),
        )

    _OtelState.span_ids = current_span_ids
    get_logger(__name__).info("exporting traces over OTLP/HTTP", endpoint=traces_endpoint)
    return True
