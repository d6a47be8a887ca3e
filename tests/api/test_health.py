"""Non-API endpoints and the global HTTP behaviour every response shares."""

from __future__ import annotations

import platform

import httpx
import pytest

from inbox_allocation.api.routers import health as health_router
from inbox_allocation.api.schemas.envelope import Envelope, ErrorEnvelope
from inbox_allocation.api.schemas.health import Health, Readiness, VersionInfo
from inbox_allocation.db.seed_ids import ACME, ACME_OP4, ACME_OP5, TECHSTART
from tests.support.http import headers


async def test_health_is_liveness_with_informational_db_check(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = Envelope[Health].model_validate(response.json())
    assert body.success is True
    assert body.data.status == "healthy"
    assert body.data.checks.database.status == "healthy"


async def test_ready_pings_the_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200
    assert Envelope[Readiness].model_validate(response.json()).data.ready is True


async def test_version_reports_build_information(client: httpx.AsyncClient) -> None:
    response = await client.get("/version")
    assert response.status_code == 200
    info = Envelope[VersionInfo].model_validate(response.json()).data
    assert info.version
    assert info.os == "linux"
    # The Python version under its own name; the Go-era field kept for old clients.
    assert info.python_version == platform.python_version()
    assert response.json()["data"]["go_version"] == f"python{info.python_version}"


async def test_identity_headers_are_ignored_outside_api(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"X-Tenant-ID": "not-a-uuid"})
    assert response.status_code == 200  # identity headers are ignored outside /api/v1


async def test_unknown_route_is_a_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/no/such/route")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    body = ErrorEnvelope.model_validate(response.json())
    assert body.error.code == "NOT_FOUND"


async def test_wrong_method_is_a_json_405_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.delete("/health")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert ErrorEnvelope.model_validate(response.json()).error.code == "METHOD_NOT_ALLOWED"


async def test_405_names_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    """Each method of a path is a route of its own: Allow must still list them all."""
    response = await client.request("OPTIONS", "/api/v1/inboxes")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"


async def test_request_id_is_echoed_in_both_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"X-Request-ID": "req-1"})
    assert response.headers["x-request-id"] == "req-1"
    assert response.headers["x-correlation-id"] == "req-1"
    both = await client.get(
        "/nowhere", headers={"X-Request-ID": "req-2", "X-Correlation-ID": "corr-2"}
    )
    assert both.headers["x-request-id"] == "corr-2"  # correlation id wins
    generated = await client.get("/health")
    assert len(generated.headers["x-request-id"]) == 36


async def test_oversized_body_is_a_json_413(client: httpx.AsyncClient) -> None:
    response = await client.post("/health", content=b"x" * (1024 * 1024 + 1))
    assert response.status_code == 413
    assert ErrorEnvelope.model_validate(response.json()).error.code == "PAYLOAD_TOO_LARGE"


async def test_root_redirects_to_the_documentation(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 307
    assert response.headers["location"] == "/docs"


async def test_health_never_shows_database_error_text(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing_ping(_: object, __: float) -> str:
        return "ConnectionRefusedError: connect to 10.1.2.3:5432 refused"

    monkeypatch.setattr(health_router, "ping", failing_ping)
    response = await client.get("/health")
    assert response.status_code == 200
    database = response.json()["data"]["checks"]["database"]
    assert database == {"status": "unhealthy", "message": "down"}
    assert "10.1.2.3" not in response.text


async def test_repeated_identity_headers_are_refused(client: httpx.AsyncClient) -> None:
    for name, first, second in (
        ("X-Tenant-ID", ACME, TECHSTART),
        ("X-Operator-ID", ACME_OP4, ACME_OP5),
        ("X-Operator-ID", ACME_OP4, ACME_OP4),
    ):
        raw = [(k, v) for k, v in headers(ACME_OP4).items() if k != name]
        raw += [(name, first), (name, second)]
        for method, path in (("GET", "/api/v1/operator/status"), ("POST", "/api/v1/allocate")):
            response = await client.request(
                method, path, headers=[*raw, ("Idempotency-Key", f"dup-{name}")]
            )
            assert (response.status_code, response.json()["error"]["code"]) == (
                400, "BAD_REQUEST"), (name, path)  # fmt: skip
