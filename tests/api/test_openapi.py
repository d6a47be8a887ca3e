"""openapi.yaml is generated from the app: the committed file must match it exactly."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from inbox_allocation.api.openapi import openapi_document, render_yaml
from inbox_allocation.cli import main
from tests.support.paths import REPO_ROOT

pytestmark = pytest.mark.no_db

OPENAPI_FILE = REPO_ROOT / "openapi.yaml"


def test_committed_openapi_matches_the_app(app: FastAPI) -> None:
    generated = render_yaml(openapi_document(app))
    assert OPENAPI_FILE.read_text() == generated, "openapi.yaml is stale: run `make openapi`"


def test_the_cli_prints_the_committed_document(capsys: pytest.CaptureFixture[str]) -> None:
    """`inbox-allocation openapi` (what `make openapi` runs) writes exactly openapi.yaml."""
    assert main(["openapi"]) == 0
    assert capsys.readouterr().out == OPENAPI_FILE.read_text()
