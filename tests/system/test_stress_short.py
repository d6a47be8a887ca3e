"""The stress harness's short profile (`make test`): the service with 2 worker processes on
its own PostgreSQL, 64 concurrent operators for ~15 s, then the invariant checker.

Runs `python -m stress.run --profile short` as a subprocess (it starts its own database, a
Citus cluster under `make test-citus`, and service, ~35 s in all) and asserts on the JSON
report it writes. The printed report is shown with `pytest -s` and is kept, with the event
log, in the test's temporary directory.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT

pytestmark = [pytest.mark.no_db, pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = REPO_ROOT
CORE_ACTIONS = ("ingest_new", "allocate", "claim", "resolve", "status_offline", "status_available")
# The churn loop's write paths (every path of the lock order meets the operators' load).
CHURN_ACTIONS = (
    "churn_inbox_delete", "churn_operator_delete", "churn_unsubscribe", "churn_weights",
)  # fmt: skip


def test_short_stress_profile_holds_every_invariant(tmp_path: Path, db_engine: str) -> None:
    report_path = tmp_path / "report.json"
    # On the suite's engine: `make test-citus` runs it on a Citus cluster of its own. There
    # every request holds its connection longer (each statement goes through the coordinator
    # to a worker), so the 64 operators need more than the default 25 connections per worker
    # process not to wait past the pool's 2 s limit on this 2-core machine.
    pool = ["--db-max-conns", "40"] if db_engine == "citus" else []
    result = subprocess.run(
        [sys.executable, "-m", "stress.run", "--profile", "short", "--engine", db_engine,
         *pool, "--run-dir", str(tmp_path / "run"), "--report-json", str(report_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=115, check=False,
    )  # fmt: skip
    print(result.stdout)
    assert report_path.exists(), f"no report (exit {result.returncode}):\n{result.stderr[-4000:]}"
    report = json.loads(report_path.read_text())

    failed = {r["key"]: r["examples"] for r in report["invariants"] if r["violations"]}
    assert report["violations"] == 0, failed
    assert report["server_errors"] == 0
    assert report["totals"]["unanswered"] == 0
    assert report["shutdown_ok"], report["meta"]["shutdown"]
    assert result.returncode == 0, result.stderr[-4000:]

    # The run did real work on every path the invariants are about.
    by_action = report["totals"]["by_action"]
    for action in CORE_ACTIONS + CHURN_ACTIONS:
        assert any(status.startswith("2") for status in by_action.get(action, {})), action
    assert report["totals"]["requests"] >= 500
    assert report["totals"]["replays"] > 0
    assert len(report["meta"]["worker_pids"].split(",")) >= 2
