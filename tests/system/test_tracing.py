"""W3C traceparent: strict parsing, ids in every log line of the request, `traceparent` in the
response, and the optional OpenTelemetry export (off by default, lazily imported)."""

from __future__ import annotations

import http.server
import os
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from structlog.testing import capture_logs

from inbox_allocation.api.middleware import RequestContextMiddleware
from inbox_allocation.config import Settings
from inbox_allocation.logging import get_logger
from inbox_allocation.observability import tracing
from inbox_allocation.observability.tracing import parse_traceparent
from inbox_allocation.processes import free_port
from tests.support.auth import http_client, running_app
from tests.support.paths import REPO_ROOT

pytestmark = pytest.mark.no_db

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
VALID = f"00-{TRACE_ID}-{PARENT_ID}-01"
TRACEPARENT_FORM = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
ROOT = REPO_ROOT


# --- Parsing ---------------------------------------------------------------------------------


def test_a_valid_traceparent_is_parsed() -> None:
    parsed = parse_traceparent(VALID)
    assert parsed is not None
    assert (parsed.trace_id, parsed.parent_id, parsed.flags) == (TRACE_ID, PARENT_ID, "01")


def test_a_later_version_may_carry_more_fields() -> None:
    parsed = parse_traceparent(f"01-{TRACE_ID}-{PARENT_ID}-00-future-stuff")
    assert parsed is not None
    assert parsed.flags == "00"


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        VALID.upper(),  # uppercase hex is invalid
        f"00-{TRACE_ID}-{PARENT_ID}-01-extra",  # version 00 is exactly 55 characters
        f"ff-{TRACE_ID}-{PARENT_ID}-01",  # version ff is invalid
        f"00-{'0' * 32}-{PARENT_ID}-01",  # all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero parent id
        f"00-{TRACE_ID[:-1]}-{PARENT_ID}-01",  # short trace id
        f"00-{TRACE_ID}-{PARENT_ID}0-01",  # long parent id
        f"00-{TRACE_ID}-{PARENT_ID}-1",  # short flags
        f"0-{TRACE_ID}-{PARENT_ID}-01",
        f"00-{TRACE_ID}-{PARENT_ID[:-1]}g-01",  # not hex
        f"00_{TRACE_ID}_{PARENT_ID}_01",
        f" {VALID}",
        f"01-{TRACE_ID}-{PARENT_ID}-01extra",  # a later version's extra fields start with -
    ],
)
def test_malformed_traceparents_are_ignored(value: str | None) -> None:
    assert parse_traceparent(value) is None


# --- Through the middleware ------------------------------------------------------------------


def echo_app() -> Starlette:
    """A bare app behind the request-context middleware; its handler logs one line."""

    async def handler(_: Request) -> PlainTextResponse:
        get_logger("tests.handler").info("inside the handler")
        return PlainTextResponse(str(structlog.contextvars.get_contextvars()))

    app = Starlette(routes=[Route("/echo", handler)])
    app.add_middleware(RequestContextMiddleware)
    return app


@pytest.fixture
async def echo() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=echo_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def parts(traceparent: str) -> tuple[str, str, str, str]:
    assert TRACEPARENT_FORM.fullmatch(traceparent), traceparent
    version, trace_id, span_id, flags = traceparent.split("-")
    return version, trace_id, span_id, flags


async def test_an_incoming_trace_is_continued(echo: httpx.AsyncClient) -> None:
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        response = await echo.get("/echo", headers={"traceparent": VALID})
    _, trace_id, span_id, flags = parts(response.headers["traceparent"])
    assert trace_id == TRACE_ID  # same trace
    assert span_id != PARENT_ID  # a span of our own
    assert flags == "01"  # the caller's sampling decision travels on
    # Every line of the request carries the ids: the handler's and the access log.
    lines = {entry["event"]: entry for entry in logs}
    for event in ("inside the handler", "request"):
        assert lines[event]["trace_id"] == TRACE_ID
        assert lines[event]["span_id"] == span_id
        assert lines[event]["request_id"] == response.headers["x-request-id"]


async def test_a_malformed_traceparent_starts_a_new_trace(echo: httpx.AsyncClient) -> None:
    response = await echo.get("/echo", headers={"traceparent": VALID.upper()})
    _, trace_id, _, flags = parts(response.headers["traceparent"])
    assert trace_id != TRACE_ID
    assert flags == "00"


async def test_without_traceparent_each_request_gets_its_own_trace(
    echo: httpx.AsyncClient,
) -> None:
    first = parts((await echo.get("/echo")).headers["traceparent"])
    second = parts((await echo.get("/echo")).headers["traceparent"])
    assert first[1] != second[1]
    assert first[2] != second[2]
    assert first[1] != "0" * 32


async def test_the_ids_are_bound_while_the_handler_runs(echo: httpx.AsyncClient) -> None:
    response = await echo.get("/echo", headers={"traceparent": VALID})
    assert f"'trace_id': '{TRACE_ID}'" in response.text
    # Nothing leaks into the next request's context.
    other = await echo.get("/echo")
    assert TRACE_ID not in other.text


async def test_errors_and_unknown_routes_carry_traceparent_too(echo: httpx.AsyncClient) -> None:
    response = await echo.get("/nowhere", headers={"traceparent": VALID})
    assert response.status_code == 404
    assert parts(response.headers["traceparent"])[1] == TRACE_ID


async def test_the_service_answers_with_traceparent(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"traceparent": VALID})
    assert parts(response.headers["traceparent"])[1] == TRACE_ID


async def test_browsers_may_send_and_read_traceparent(settings: Settings) -> None:
    origin = "https://console.example"
    async with (
        running_app(settings, cors_allowed_origins=origin) as app,
        http_client(app) as client,
    ):
        preflight = await client.options(
            "/api/v1/allocate",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "traceparent"},
        )  # fmt: skip
        assert "traceparent" in preflight.headers["access-control-allow-headers"]
        assert "tracestate" in preflight.headers["access-control-allow-headers"]
        normal = await client.get("/health", headers={"Origin": origin})
        assert "traceparent" in normal.headers["access-control-expose-headers"]


# --- OpenTelemetry ---------------------------------------------------------------------------


def test_no_endpoint_means_no_export() -> None:
    assert tracing.configure_tracing(None) is False
    assert tracing.configure_tracing("") is False


def test_without_the_extra_one_warning_and_the_service_runs_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tracing._OtelState, "configured", False)
    monkeypatch.setattr(tracing._OtelState, "span_ids", None)
    for module in (
        "opentelemetry.sdk",
        "opentelemetry.sdk.trace",
        "opentelemetry.sdk.trace.export",
        "opentelemetry.sdk.resources",
        "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    ):
        monkeypatch.setitem(sys.modules, module, None)  # `import` raises ImportError
    with capture_logs() as logs:
        assert tracing.configure_tracing("http://127.0.0.1:4318") is False
        assert tracing.configure_tracing("http://127.0.0.1:4318") is False
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert len(warnings) == 1
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in warnings[0]["event"]
    assert "inbox-allocation[otel]" in warnings[0]["event"]
    # Requests still get ids of their own.
    assert tracing.start_request_trace(VALID).trace_id == TRACE_ID


def run_script(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_opentelemetry_sdk_is_not_loaded_when_export_is_off() -> None:
    result = run_script("""
        import sys
        from inbox_allocation.app import create_app
        from inbox_allocation.config import Settings
        create_app(Settings(database_url="postgresql://nobody@127.0.0.1:1/none"))
        loaded = [m for m in sys.modules
                  if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter"))]
        print(loaded)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.fixture
def otlp_receiver() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    """A stand-in OTLP/HTTP collector on localhost: remembers what is posted to it."""
    received: list[tuple[str, bytes]] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            received.append((self.path, self.rfile.read(length)))
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", received
    finally:
        server.shutdown()
        server.server_close()


def test_spans_are_exported_over_otlp_with_the_logged_ids(
    otlp_receiver: tuple[str, list[tuple[str, bytes]]],
) -> None:
    endpoint, received = otlp_receiver
    result = run_script(
        f"""
        import asyncio, httpx
        from opentelemetry import trace
        from inbox_allocation.app import create_app_from_env

        async def main():
            app = create_app_from_env()
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.get("/version", headers={{"traceparent": "{VALID}"}})
            print(response.headers["traceparent"])

        asyncio.run(main())
        trace.get_tracer_provider().shutdown()  # flush the batch
        """,
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        DATABASE_URL="postgresql://nobody@127.0.0.1:1/none",
        LOG_LEVEL="info",
    )
    assert result.returncode == 0, result.stderr
    response_traceparent = result.stdout.splitlines()[0]
    _, trace_id, span_id, flags = parts(response_traceparent)
    assert trace_id == TRACE_ID
    assert flags == "01"  # sampled: the SDK's default sampler follows the parent
    # The server span went to <endpoint>/v1/traces, with the ids the response (and the logs)
    # carry: protobuf stores them as raw bytes.
    assert received, "nothing was exported"
    paths = {path for path, _ in received}
    assert paths == {"/v1/traces"}
    exported = b"".join(body for _, body in received)
    assert bytes.fromhex(trace_id) in exported
    assert bytes.fromhex(span_id) in exported
    assert bytes.fromhex(PARENT_ID) in exported  # the caller's span is the parent
    access_log = next(line for line in result.stderr.splitlines() if '"path":"/version"' in line)
    assert f'"trace_id":"{TRACE_ID}"' in access_log
    assert f'"span_id":"{span_id}"' in access_log
    assert "exporting traces over OTLP/HTTP" in result.stderr
