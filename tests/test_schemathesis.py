"""Schemathesis over our openapi.yaml: generated, example and stateful requests against a
real server (own embedded PostgreSQL, seeded). Every operation must answer without a 5xx and
every response must match the documented schema.

Bounded and reproducible: a fixed number of examples per operation, derandomized (a fixed
seed). The caller is the Acme ADMIN, so requests get past identity and role checks and reach
the handlers; the API's own checks decide the rest.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)

from tests.helpers import die_with_pytest, free_port, wait_ready, world_traversable_tempdir
from tests.seed_ids import ACME, ACME_ADMIN

pytestmark = pytest.mark.no_db

ROOT = Path(__file__).resolve().parents[1]
schema = schemathesis.openapi.from_path(ROOT / "openapi.yaml")
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
IDENTITY = {"X-Tenant-ID": ACME, "X-Operator-ID": ACME_ADMIN}


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    workdir = world_traversable_tempdir("inbox-allocation-schemathesis-")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_URL"))}
    env.update(
        EMBEDDED_DB_DIR=str(workdir / "pg"), DB_PORT=str(free_port()), SERVER_PORT=str(port),
        SERVER_HOST="127.0.0.1", LOG_LEVEL="error",
    )  # fmt: skip
    service = subprocess.Popen(
        [sys.executable, "-m", "inbox_allocation", "serve"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=die_with_pytest,  # noqa: PLW1509 - only prctl
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(service, url)
        yield url
    finally:
        os.killpg(service.pid, signal.SIGTERM)
        service.wait(30)
        shutil.rmtree(workdir, ignore_errors=True)


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_operation(case: Any, base_url: str) -> None:
    case.call_and_validate(base_url=base_url, headers=IDENTITY, checks=CHECKS)


def test_stateful_sequences(base_url: str) -> None:
    """Chains of calls that feed one response's ids into the next request (links inferred
    from the schema: e.g. create an inbox, then read, update, subscribe to and delete it)."""

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": base_url, "headers": IDENTITY}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS)

    Machine.run(
        settings=settings(
            max_examples=15,
            stateful_step_count=6,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
