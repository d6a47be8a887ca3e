"""structlog set-up: JSON (production) or console (humans), one pipeline for every logger.

LOG_FORMAT=auto (the default) picks console lines when the log goes to a terminal (a developer
running `make run`) and JSON otherwise (a container or a log collector reading a pipe).

Request id, tenant and operator are bound as context variables by the request middleware and
the identity dependency, so every line logged while serving a request carries them. Records
of stdlib loggers (uvicorn, asyncpg, alembic, our launcher) go through the same renderer.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from typing import Any, TextIO

import orjson
import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
           "warning": logging.WARNING, "error": logging.ERROR}  # fmt: skip


def _orjson_dumps(value: Any, **_: Any) -> str:
    return orjson.dumps(value, default=str).decode()


class _AlembicChatter(logging.Filter):
    """Alembic announces its dialect on every run, migrations or not; keep what it applies."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(("Context impl ", "Will assume "))


def configure_logging(
    level: str = "info", fmt: str = "json", stream: TextIO | None = None, *, cache: bool = True
) -> None:
    """`cache`: bind each logger once (fast; tests that reconfigure logging turn it off)."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: structlog.types.Processor
    if fmt == "console":
        # Tracebacks without local variables: rich (when installed) would print them, and a
        # frame's locals can hold a bearer token or a database password.
        formatter: structlog.typing.ExceptionRenderer = structlog.dev.plain_traceback
        if importlib.util.find_spec("rich") is not None:
            formatter = structlog.dev.RichTracebackFormatter(show_locals=False)
        renderer = structlog.dev.ConsoleRenderer(
            colors=stream.isatty(), exception_formatter=formatter
        )
    else:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)

    structlog.configure(
        # filter_by_level first: a disabled level costs no processing (the access log runs on
        # every request). Only for structlog's own loggers: stdlib records arrive filtered.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=cache,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[level])
    alembic = logging.getLogger("alembic.runtime.migration")
    alembic.filters[:] = [_AlembicChatter()]
    # Our access log replaces uvicorn's; its error log keeps flowing through our handler.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
