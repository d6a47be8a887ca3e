"""One error path: every exception becomes the catalogue's error, rendered by one function."""

from __future__ import annotations

import ast
from pathlib import Path

import asyncpg
import orjson
import pytest
from starlette.exceptions import HTTPException

import inbox_allocation
from inbox_allocation.api.errors import as_api_error
from inbox_allocation.api.responses import render_api_error
from inbox_allocation.domain import errors

SRC = Path(inbox_allocation.__file__).resolve().parent


@pytest.mark.parametrize(
    ("exc", "expected", "status", "code"),
    [
        (errors.CapacityReached(), errors.CapacityReached, 409, "CAPACITY_REACHED"),
        (HTTPException(404), errors.NotFound, 404, "NOT_FOUND"),
        (HTTPException(405, headers={"Allow": "POST"}), errors.MethodNotAllowed, 405,
         "METHOD_NOT_ALLOWED"),
        (HTTPException(413), errors.PayloadTooLarge, 413, "PAYLOAD_TOO_LARGE"),
        (HTTPException(400, "bad multipart"), errors.BadRequest, 400, "BAD_REQUEST"),
        (ConnectionRefusedError(), errors.DatabaseUnavailable, 503, "DB_UNAVAILABLE"),
        (asyncpg.LockNotAvailableError("timeout"), errors.DatabaseUnavailable, 503,
         "DB_UNAVAILABLE"),
        (asyncpg.DataError("value out of range"), errors.UnstorableValue, 400, "BAD_REQUEST"),
        (asyncpg.UniqueViolationError("duplicate key"), errors.ConcurrentChange, 409, "CONFLICT"),
        (RuntimeError("a bug"), errors.ApiError, 500, "INTERNAL_ERROR"),
    ],
)  # fmt: skip
def test_every_exception_becomes_a_catalogue_error(
    exc: Exception, expected: type[errors.ApiError], status: int, code: str
) -> None:
    error = as_api_error(exc)
    assert type(error) is expected
    assert (error.status, error.code) == (status, code)


def test_headers_belong_to_the_error() -> None:
    response = render_api_error(errors.DatabaseUnavailable())
    assert (response.status_code, response.headers["retry-after"]) == (503, "1")
    assert orjson.loads(response.body)["error"]["code"] == "DB_UNAVAILABLE"
    allowed = as_api_error(HTTPException(405, headers={"Allow": "POST"}))
    assert render_api_error(allowed).headers["allow"] == "POST"
    # The class's headers are never changed by an instance's.
    assert dict(errors.MethodNotAllowed.headers) == {}


def test_the_challenge_is_added_to_a_401_only() -> None:
    unauthorized = render_api_error(errors.Unauthorized(), challenge=True)
    assert unauthorized.headers["www-authenticate"] == "Bearer"
    forbidden = render_api_error(errors.Forbidden(), challenge=True)
    assert "www-authenticate" not in forbidden.headers


def test_no_module_renders_an_error_by_hand() -> None:
    """Error envelopes are built only by api.responses (error_body), and no code outside
    domain.errors sets an error's status or code on an instance."""
    offenders = []
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    names = target.elts if isinstance(target, ast.Tuple) else [target]
                    for name in names:
                        if (isinstance(name, ast.Attribute) and name.attr in ("status", "code")
                                and path.name != "errors.py"):  # fmt: skip
                            offenders.append(f"{path.name}:{node.lineno} sets .{name.attr}")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "error_body"
                    and path.name not in {"responses.py", "idempotency.py"}):  # fmt: skip
                # idempotency.py stores (not renders) the body of a lost response.
                offenders.append(f"{path.name}:{node.lineno} builds an error envelope")
    assert not offenders
