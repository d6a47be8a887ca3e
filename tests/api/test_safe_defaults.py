"""Safe defaults: loopback unless SERVER_HOST says otherwise, one warning when identities are
trusted from headers on a reachable address, /metrics behind METRICS_BEARER_TOKEN, and the
authentication settings checked at start-up."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from inbox_allocation.config import ConfigError, Settings, load_settings
from inbox_allocation.server import is_loopback, warn_if_exposed
from tests.support.auth import http_client, running_app
from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT


@pytest.mark.no_db
def test_loopback_and_header_mode_by_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    for name in ("SERVER_HOST", "AUTH_MODE", "CORS_ALLOWED_ORIGINS", "METRICS_BEARER_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.server_host == "127.0.0.1"
    assert settings.auth_mode == "headers"
    assert settings.cors_origins == ()
    assert settings.metrics_bearer_token is None


@pytest.mark.no_db
def test_the_image_and_the_kubernetes_sample_listen_on_every_address() -> None:
    assert "SERVER_HOST=0.0.0.0" in (ROOT / "Dockerfile").read_text()
    sample = (ROOT / "deploy" / "kubernetes.yaml").read_text()
    assert 'name: SERVER_HOST\n              value: "0.0.0.0"' in sample
    assert "name: AUTH_MODE" in sample


@pytest.mark.no_db
@pytest.mark.parametrize(
    ("host", "mode", "warned"),
    [("0.0.0.0", "headers", True), ("192.0.2.7", "headers", True), ("::", "headers", True),
     ("example.internal", "headers", True), ("127.0.0.1", "headers", False),
     ("::1", "headers", False), ("localhost", "headers", False), ("0.0.0.0", "token", False)],
)  # fmt: skip
def test_one_warning_for_header_trust_on_a_reachable_address(
    host: str, mode: str, warned: bool
) -> None:
    settings = load_settings(server_host=host, auth_mode=mode)
    with capture_logs() as events:
        warn_if_exposed(settings)
    warnings = [event for event in events if event["log_level"] == "warning"]
    assert len(warnings) == (1 if warned else 0)
    if warned:
        assert "AUTH_MODE=headers" in warnings[0]["event"]
    assert is_loopback(host) == (host in ("127.0.0.1", "::1", "localhost"))


@pytest.mark.no_db
@pytest.mark.parametrize(
    ("changes", "message"),
    [({"auth_mode": "jwt", "jwt_jwks_url": "https://idp.example/jwks", "jwt_audience": "a"},
      "JWT_ISSUER and JWT_AUDIENCE"),
     ({"auth_mode": "jwt", "jwt_jwks_url": "https://idp.example/jwks", "jwt_issuer": "i"},
      "JWT_ISSUER and JWT_AUDIENCE"),
     ({"auth_mode": "jwt", "jwt_issuer": "i", "jwt_audience": "a"}, "JWT_JWKS_FILE or"),
     ({"auth_mode": "jwt", "jwt_issuer": "i", "jwt_audience": "a", "jwt_jwks_file": "k.json",
       "jwt_jwks_url": "https://idp.example/jwks"}, "JWT_JWKS_FILE or"),
     ({"auth_mode": "jwt", "jwt_issuer": "i", "jwt_audience": "a",
       "jwt_jwks_file": "/nonexistent/jwks.json"}, "JWT_JWKS_FILE /nonexistent"),
     ({"auth_mode": "password"}, "AUTH_MODE"),
     ({"jwt_jwks_url": "file:///etc/passwd"}, "JWT_JWKS_URL")],
    ids=["no issuer", "no audience", "no keys", "two key sources", "missing key file",
         "unknown mode", "file url"],
)  # fmt: skip
def test_authentication_settings_are_checked_at_start_up(
    changes: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(**changes)


@pytest.mark.no_db
def test_jwt_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_MODE", "jwt")
    monkeypatch.setenv("JWT_JWKS_URL", "https://idp.example/.well-known/jwks.json")
    monkeypatch.setenv("JWT_ISSUER", "https://idp.example/")
    monkeypatch.setenv("JWT_AUDIENCE", "inbox-allocation")
    monkeypatch.setenv("JWT_TENANT_CLAIM", "org")
    settings = load_settings()
    assert settings.auth_mode == "jwt"
    assert settings.jwt_tenant_claim == "org"
    assert settings.jwt_operator_claim == "sub"


async def test_metrics_need_the_bearer_token_when_one_is_set(settings: Settings) -> None:
    secret = "scrape-secret-1"
    async with (
        running_app(settings, metrics_bearer_token=SecretStr(secret)) as app,
        http_client(app) as c,
    ):
        missing = await c.get("/metrics")
        wrong = await c.get("/metrics", headers={"Authorization": "Bearer scrape-secret-2"})
        basic = await c.get("/metrics", headers={"Authorization": f"Basic {secret}"})
        right = await c.get("/metrics", headers={"Authorization": f"Bearer {secret}"})
    for refused in (missing, wrong, basic):
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "UNAUTHORIZED"
        assert refused.headers["www-authenticate"] == "Bearer"
        assert "inbox_allocation" not in refused.text
    assert right.status_code == 200
    assert "inbox_allocation_http_requests_total" in right.text


async def test_metrics_stay_open_without_a_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/metrics")).status_code == 200


@pytest.mark.no_db
def test_the_metrics_token_is_not_shown_with_the_settings() -> None:
    settings = load_settings(metrics_bearer_token="very-secret-value")
    assert "very-secret-value" not in repr(settings)
    assert "very-secret-value" not in str(settings.model_dump())
