"""Logging: one JSON object per line, request context on every line, levels filtered."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
import structlog

from inbox_allocation.db.seed_ids import ACME, ACME_OP4
from inbox_allocation.logging import configure_logging, get_logger
from tests.support.http import headers


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    output = io.StringIO()
    configure_logging("info", "json", stream=output, cache=False)
    try:
        yield output
    finally:
        root.handlers[:], root.level = saved_handlers, saved_level
        structlog.reset_defaults()


def lines(output: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.getvalue().splitlines() if line]


@pytest.mark.no_db
def test_levels_and_foreign_records(json_logs: io.StringIO) -> None:
    logging.getLogger("uvicorn.error").info("from uvicorn")
    logging.getLogger("uvicorn.error").debug("hidden")
    get_logger("ours").info("from us", answer=42)
    get_logger("ours").debug("hidden too")
    events = lines(json_logs)
    assert [e["event"] for e in events] == ["from uvicorn", "from us"]
    assert events[1]["answer"] == 42
    assert {"timestamp", "level", "logger"} <= set(events[0])


async def test_access_line_carries_request_tenant_and_operator(
    json_logs: io.StringIO, client: httpx.AsyncClient
) -> None:
    response = await client.get(
        "/api/v1/operator/status", headers=headers(ACME_OP4, **{"X-Request-ID": "req-log-1"})
    )
    assert response.status_code == 200
    access = [e for e in lines(json_logs) if e["event"] == "request"]
    assert len(access) == 1
    line = access[0]
    assert line["request_id"] == "req-log-1"
    assert line["tenant_id"] == ACME
    assert line["operator_id"] == ACME_OP4
    assert line["status"] == 200
    assert line["path"] == "/api/v1/operator/status"
    assert isinstance(line["duration_ms"], float)
    assert line["trace_id"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.no_db
@pytest.mark.parametrize(("stream", "is_json"), [(io.StringIO(), True), (_Terminal(), False)])
def test_auto_format_is_console_on_a_terminal_and_json_otherwise(
    stream: io.StringIO, is_json: bool
) -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        configure_logging("info", "auto", stream=stream, cache=False)
        get_logger("ours").info("hello", answer=42)
    finally:
        root.handlers[:], root.level = saved_handlers, saved_level
        structlog.reset_defaults()
    line = stream.getvalue().strip()
    assert line.startswith("{") is is_json, line
    assert "hello" in line


@pytest.mark.no_db
def test_alembic_dialect_chatter_is_dropped_but_upgrades_are_kept(
    json_logs: io.StringIO,
) -> None:
    alembic = logging.getLogger("alembic.runtime.migration")
    saved = alembic.level
    alembic.setLevel(logging.INFO)
    try:
        alembic.info("Context impl PostgresqlImpl.")
        alembic.info("Will assume transactional DDL.")
        alembic.info("Running upgrade 0004 -> 0005, Aged flag")
    finally:
        alembic.setLevel(saved)
    assert [e["event"] for e in lines(json_logs)] == ["Running upgrade 0004 -> 0005, Aged flag"]


@pytest.mark.no_db
@pytest.mark.parametrize("fmt", ["json", "console"])
def test_tracebacks_never_show_local_variables(fmt: str) -> None:
    """A frame's locals can hold a bearer token: the console renderer (with rich installed)
    would print them next to the traceback."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    output = io.StringIO()
    configure_logging("info", fmt, stream=output, cache=False)
    try:

        def authenticate(credential: str) -> None:
            raise ValueError("refused")

        try:
            authenticate("iat_" + "S" * 43)
        except ValueError:
            get_logger("test").exception("unhandled error")
    finally:
        root.handlers[:], root.level = saved_handlers, saved_level
        structlog.reset_defaults()
    text = output.getvalue()
    assert "ValueError" in text
    assert "S" * 43 not in text
