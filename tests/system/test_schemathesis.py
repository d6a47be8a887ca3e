"""Schemathesis over our openapi.yaml: generated, example and stateful requests against a
real server (own embedded PostgreSQL, seeded). Every operation must answer without a 5xx and
every response must match the documented schema; and a bounded `schemathesis run --checks
all` (positive and negative data) finds no request the document allows but the service
refuses, none it forbids but the service accepts (see tests/schemathesis.toml).

Bounded and reproducible: a fixed number of examples per operation, derandomized (a fixed
seed). The server runs in AUTH_MODE=token: the caller is the Acme ADMIN with an API token
issued by `inbox-allocation token create` (plus the matching identity headers, so generated
ones never contradict it), so requests get past authentication and role checks and reach
the handlers; the API's own checks decide the rest.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)

from inbox_allocation.db.seed_ids import ACME, ACME_ADMIN
from inbox_allocation.processes import (
    free_port,
    parent_death_signal,
    wait_ready,
    world_traversable_tempdir,
)
from tests.support.paths import REPO_ROOT

pytestmark = pytest.mark.no_db

ROOT = REPO_ROOT
schema = schemathesis.openapi.from_path(ROOT / "openapi.yaml")
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
IDENTITY = {"X-Tenant-ID": ACME, "X-Operator-ID": ACME_ADMIN}
CALLER: dict[str, str] = {}  # IDENTITY and the API token, once the server runs


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    workdir = world_traversable_tempdir("inbox-allocation-schemathesis-")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_URL"))}
    env.update(
        EMBEDDED_DB_DIR=str(workdir / "pg"), DB_PORT=str(free_port()), SERVER_PORT=str(port),
        SERVER_HOST="127.0.0.1", LOG_LEVEL="error", AUTH_MODE="token",
    )  # fmt: skip
    service = subprocess.Popen(
        [sys.executable, "-m", "inbox_allocation", "serve"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=parent_death_signal(),  # noqa: PLW1509 - only prctl
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(service, url)
        # The CLI attaches to the embedded PostgreSQL the service started.
        issued = subprocess.run(
            [sys.executable, "-m", "inbox_allocation", "token", "create", "--tenant-id", ACME,
             "--operator-id", ACME_ADMIN, "--name", "schemathesis"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        token = json.loads(issued.stdout)["token"]
        CALLER.update(IDENTITY, Authorization=f"Bearer {token}")
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
    case.call_and_validate(base_url=base_url, headers=CALLER, checks=CHECKS)


def test_stateful_sequences(base_url: str) -> None:
    """Chains of calls that feed one response's ids into the next request (links inferred
    from the schema: e.g. create an inbox, then read, update, subscribe to and delete it)."""

    # Valid data only: the chains need each step to succeed, and hypothesis reports mixed
    # positive/negative draws in a state machine as a flaky strategy. Invalid data is the
    # command-line run's job (test_every_check_with_positive_and_negative_data).
    chained = schemathesis.openapi.from_path(ROOT / "openapi.yaml")
    chained.config.generation.update(modes=[GenerationMode.POSITIVE])

    class Machine(chained.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": base_url, "headers": CALLER}

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


def test_the_server_runs_in_token_mode(base_url: str) -> None:
    """Without the token the same caller is refused: the runs above authenticated by it."""
    status = httpx.get(f"{base_url}/api/v1/operator/status", headers=IDENTITY, timeout=10)
    assert status.status_code == 401
    assert status.headers["www-authenticate"] == "Bearer"
    authorized = httpx.get(f"{base_url}/api/v1/operator/status", headers=CALLER, timeout=10)
    assert authorized.status_code == 200


@pytest.mark.timeout(330)
def test_every_check_with_positive_and_negative_data(base_url: str) -> None:
    """The command-line run with every check on: examples, coverage (boundary and
    schema-violating values) and fuzzing phases, a fixed seed, at most 8 examples per
    operation and 120 s in all."""
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "--config-file", str(ROOT / "tests" / "schemathesis.toml"),
        "run", str(ROOT / "openapi.yaml"), "--url", base_url,
        "--checks", "all", "--mode", "all", "--phases", "examples,coverage,fuzzing",
        "--seed", "6238", "--max-examples", "8", "--max-time", "120",
        "--no-shrink", "--workers", "1",
        *(arg for name, value in CALLER.items() for arg in ("-H", f"{name}: {value}")),
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:]
