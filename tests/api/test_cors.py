"""CORS (CORS_ALLOWED_ORIGINS): closed by default, only the listed origins, `*` written out.

An origin the list does not name gets no Access-Control-Allow-* header on any answer, so a
browser keeps that page from reading responses or sending credentialed requests; the
default (empty list) sends no CORS headers at all.
"""

from __future__ import annotations

import httpx
import pytest

from inbox_allocation.config import ConfigError, Settings, load_settings
from inbox_allocation.db.seed_ids import ACME_OP4
from tests.support.auth import http_client, running_app
from tests.support.http import headers

CONSOLE = "https://console.example"
EVIL = "http://evil.example"
PREFLIGHT = {"Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "x-tenant-id, x-operator-id"}  # fmt: skip


def _cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


async def test_default_sends_no_cors_headers_at_all(client: httpx.AsyncClient) -> None:
    plain = await client.get("/health")
    from_page = await client.get("/health", headers={"Origin": EVIL})
    api = await client.get("/api/v1/operator/status", headers=headers(ACME_OP4, Origin=EVIL))
    preflight = await client.options("/api/v1/allocate", headers={"Origin": EVIL, **PREFLIGHT})
    assert api.status_code == 200
    for response in (plain, from_page, api, preflight):
        assert _cors_headers(response) == {}, response.headers
    assert preflight.status_code == 405  # no preflight answer: the browser refuses the call


async def test_listed_origins_only(settings: Settings) -> None:
    origins = f"{CONSOLE}, http://localhost:3000"
    async with running_app(settings, cors_allowed_origins=origins) as app, http_client(app) as c:
        preflight = await c.options("/api/v1/allocate", headers={"Origin": CONSOLE, **PREFLIGHT})
        assert preflight.status_code == 204
        assert preflight.content == b""
        assert preflight.headers["access-control-allow-origin"] == CONSOLE
        allowed = preflight.headers["access-control-allow-headers"]
        for header in ("Authorization", "Idempotency-Key", "X-Correlation-ID", "X-Tenant-ID"):
            assert header in allowed
        assert preflight.headers["access-control-max-age"] == "86400"
        assert preflight.headers["x-request-id"]

        local = await c.get("/health", headers={"Origin": "http://localhost:3000"})
        assert local.headers["access-control-allow-origin"] == "http://localhost:3000"
        assert "Origin" in local.headers["vary"]

        # Another origin, a look-alike, and no origin at all: no Access-Control-Allow-*.
        for origin in (EVIL, CONSOLE + ".evil.example", None):
            sent = {"Origin": origin} if origin else {}
            normal = await c.get("/health", headers=sent)
            refused = await c.options("/api/v1/allocate", headers={**sent, **PREFLIGHT})
            assert _cors_headers(normal) == {}, (origin, normal.headers)
            assert _cors_headers(refused) == {}, (origin, refused.headers)
            assert refused.status_code == 405
            assert "Origin" in normal.headers["vary"]


async def test_star_must_be_written_out_and_allows_every_origin(settings: Settings) -> None:
    async with running_app(settings, cors_allowed_origins="*") as app, http_client(app) as c:
        preflight = await c.options("/api/v1/allocate", headers={"Origin": EVIL, **PREFLIGHT})
        normal = await c.get("/health", headers={"Origin": EVIL})
        bare = await c.get("/health")
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert normal.headers["access-control-allow-origin"] == "*"
    assert _cors_headers(bare) == {}


@pytest.mark.no_db
@pytest.mark.parametrize(
    "value", ["console.example", "https://console.example/", "https://x.example/path", "ftp://x"]
)
def test_an_entry_that_is_not_an_origin_stops_start_up(value: str) -> None:
    with pytest.raises(ConfigError, match="CORS_ALLOWED_ORIGINS"):
        load_settings(cors_allowed_origins=value)


@pytest.mark.no_db
def test_origins_are_comma_separated() -> None:
    parsed = load_settings(cors_allowed_origins=" https://a.example ,http://[::1]:8080,, ")
    assert parsed.cors_origins == ("https://a.example", "http://[::1]:8080")
    assert load_settings().cors_origins == ()


async def test_a_preflight_needs_no_credentials_in_token_mode(settings: Settings) -> None:
    async with (
        running_app(settings, cors_allowed_origins=CONSOLE, auth_mode="token") as app,
        http_client(app) as c,
    ):
        preflight = await c.options("/api/v1/allocate", headers={"Origin": CONSOLE, **PREFLIGHT})
        refused = await c.post("/api/v1/allocate", headers={"Origin": CONSOLE})
    assert preflight.status_code == 204
    # The browser can read the 401 (and so tell its user to sign in).
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == CONSOLE
