"""AUTH_MODE=jwt: tokens from an identity provider, verified against its JWKS.

RS256 and ES256 keys are made here. Refused with 401 UNAUTHORIZED and `WWW-Authenticate:
Bearer` on every route: no token, a malformed one, expired (beyond the 60 s of allowed
skew), wrong audience or issuer, an unknown `kid`, `alg: none`, HS256 signed with the RSA
public key as the secret, and an algorithm other than its key's. The operator must exist in
the tenant; role rules are unchanged (the role matrix runs again with JWTs). Keys are
re-read on an unknown kid at most once a minute, from a file or a URL.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI

from inbox_allocation.config import Settings
from inbox_allocation.db.seed_ids import ACME, ACME_ADMIN, ACME_OP4, ACME_OP5, TECH_OP14, TECHSTART
from inbox_allocation.domain.errors import Unauthorized
from inbox_allocation.processes import free_port
from inbox_allocation.services.jwt_auth import JwtVerifier

# Collected again here: role rules with JWTs instead of identity headers.
from tests.api.test_role_matrix import test_role_matrix
from tests.support.auth import b64url, bearer, http_client, jwt_segments, running_app
from tests.support.route_catalog import (
    ROUTE_IDS,
    ROUTES,
    Route,
    diff,
    error_code,
    outcome,
    send,
    snapshot_all,
)

__all__ = ["test_role_matrix"]

ISSUER = "https://idp.test/"
AUDIENCE = "inbox-allocation"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
HMAC_SECRET = b"a shared secret that must never be accepted"


def public_jwk(key: Any, kid: str, alg: str) -> dict[str, Any]:
    algorithm = jwt.algorithms.RSAAlgorithm if alg == "RS256" else jwt.algorithms.ECAlgorithm
    document: dict[str, Any] = json.loads(algorithm.to_jwk(key.public_key()))
    return {**document, "kid": kid, "alg": alg, "use": "sig"}


def jwks(*extra: dict[str, Any]) -> dict[str, Any]:
    return {"keys": [
        public_jwk(RSA_KEY, "rsa-1", "RS256"),
        public_jwk(EC_KEY, "ec-1", "ES256"),
        # A symmetric key in the set must be ignored, never used to verify.
        {"kty": "oct", "kid": "hmac-1", "alg": "HS256", "k": b64url(HMAC_SECRET)},
        *extra,
    ]}  # fmt: skip


def claims(operator: str = ACME_ADMIN, tenant: str = ACME, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "sub": operator, "tenant_id": tenant,
            "iat": now, "exp": now + 300, **changes}  # fmt: skip


def sign(
    payload: dict[str, Any], key: Any = RSA_KEY, alg: str = "RS256", kid: str = "rsa-1"
) -> str:
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


def hs256_with_public_key(payload: dict[str, Any]) -> str:
    """The classic confusion attack: HMAC keyed with the verifier's RSA public key."""
    public_pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = jwt_segments({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, payload)
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def unsigned(payload: dict[str, Any]) -> str:
    return jwt_segments({"alg": "none", "typ": "JWT", "kid": "rsa-1"}, payload) + "."


def refused_tokens() -> dict[str, str]:
    now = int(time.time())
    return {
        "malformed": "not.a.jwt",
        "garbage": "eyJhbGciOiJSUzI1NiJ9.%%%.xyz",
        "expired": sign(claims(exp=now - 120)),
        "wrong audience": sign(claims(aud="another-service")),
        "wrong issuer": sign(claims(iss="https://evil.test/")),
        "no exp": sign({k: v for k, v in claims().items() if k != "exp"}),
        "unknown kid": sign(claims(), key=OTHER_RSA_KEY, kid="rsa-unknown"),
        "another key under a known kid": sign(claims(), key=OTHER_RSA_KEY),
        "alg none": unsigned(claims()),
        "HS256 with the public key": hs256_with_public_key(claims()),
        "HS256 with a JWKS oct key": jwt.encode(claims(), HMAC_SECRET, algorithm="HS256",
                                                headers={"kid": "hmac-1"}),
        "RS256 header on the EC key": sign(claims(), kid="ec-1"),
        "tenant claim missing": sign({k: v for k, v in claims().items() if k != "tenant_id"}),
        "operator not a UUID": sign(claims(operator="alice")),
        "operator of another tenant": sign(claims(operator=TECH_OP14)),
        "unknown tenant": sign(claims(tenant=str(uuid.uuid4()))),
    }  # fmt: skip


@pytest.fixture(scope="module")
def jwks_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    path.write_text(json.dumps(jwks()))
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def jwt_app(settings: Settings, jwks_file: Path) -> AsyncIterator[FastAPI]:
    async with running_app(
        settings, auth_mode="jwt", jwt_jwks_file=jwks_file, jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
    ) as application:  # fmt: skip
        yield application


async def _identity_to_jwt(request: httpx.Request) -> None:
    """X-Tenant-ID + X-Operator-ID → a JWT for them (the headers are dropped)."""
    tenant, operator = request.headers.get("x-tenant-id"), request.headers.get("x-operator-id")
    if tenant and operator:
        request.headers["Authorization"] = f"Bearer {sign(claims(operator, tenant))}"
        del request.headers["x-tenant-id"]
        del request.headers["x-operator-id"]


@pytest_asyncio.fixture(loop_scope="session")
async def client(jwt_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """For the imported role matrix: identities sent as JWTs."""
    async with http_client(jwt_app, _identity_to_jwt) as http:
        yield http


@pytest_asyncio.fixture(loop_scope="session")
async def jc(jwt_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(jwt_app) as http:
        yield http


STATUS = "/api/v1/operator/status"


@pytest.mark.parametrize(
    ("token", "operator"),
    [(lambda: sign(claims(ACME_OP4)), ACME_OP4),
     (lambda: sign(claims(ACME_OP5), key=EC_KEY, alg="ES256", kid="ec-1"), ACME_OP5),
     # 30 s past exp is within the 60 s of allowed clock skew.
     (lambda: sign(claims(ACME_OP4, exp=int(time.time()) - 30)), ACME_OP4)],
    ids=["RS256", "ES256", "skew"],
)  # fmt: skip
async def test_valid_tokens(jc: httpx.AsyncClient, token: Any, operator: str) -> None:
    response = await jc.get(STATUS, headers=bearer(token()))
    assert response.status_code == 200, outcome(response)
    assert response.json()["data"]["operator_id"] == operator
    # Identity headers naming the same operator are fine; others are 401.
    same = await jc.get(STATUS, headers={**bearer(token()), "X-Operator-ID": operator,
                                         "X-Tenant-ID": ACME})  # fmt: skip
    assert same.status_code == 200
    other = await jc.get(STATUS, headers={**bearer(token()), "X-Tenant-ID": TECHSTART})
    assert (other.status_code, error_code(other)) == (401, "UNAUTHORIZED")


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
async def test_bad_tokens_are_401_on_every_route(
    jc: httpx.AsyncClient, db: asyncpg.Pool, route: Route
) -> None:
    before = await snapshot_all(db)
    problems = []
    cases = {"missing": {}, **{name: bearer(token) for name, token in refused_tokens().items()}}
    for name, sent in cases.items():
        response = await send(jc, route.call, operator=None, tenant=None, extra_headers=sent,
                              idempotency_key=f"jwt-{uuid.uuid4()}")  # fmt: skip
        if (response.status_code, error_code(response)) != (401, "UNAUTHORIZED") or (
            response.headers.get("www-authenticate") != "Bearer"
        ):
            problems.append(f"{name}: {outcome(response)}")
    assert not problems, f"{route.call.describe()}\n" + "\n".join(problems)
    assert not diff(before, await snapshot_all(db)), "a refused request changed rows"


async def test_a_deleted_operator_is_refused(jc: httpx.AsyncClient) -> None:
    token = sign(claims(ACME_OP5))
    assert (await jc.get(STATUS, headers=bearer(token))).status_code == 200
    admin = bearer(sign(claims(ACME_ADMIN)))
    deleted = await jc.delete(f"/api/v1/operators/{ACME_OP5}", headers=admin)
    assert deleted.status_code == 204
    after = await jc.get(STATUS, headers=bearer(token))
    assert (after.status_code, error_code(after)) == (401, "UNAUTHORIZED")
    assert after.headers["www-authenticate"] == "Bearer"


async def test_claim_names_are_settings(settings: Settings, jwks_file: Path) -> None:
    async with (
        running_app(settings, auth_mode="jwt", jwt_jwks_file=jwks_file, jwt_issuer=ISSUER,
                    jwt_audience=AUDIENCE, jwt_tenant_claim="org",
                    jwt_operator_claim="operator") as app,
        http_client(app) as http,
    ):  # fmt: skip
        token = sign({**claims(), "sub": "user@idp", "org": ACME, "operator": ACME_OP4})
        response = await http.get(STATUS, headers=bearer(token))
        assert response.status_code == 200, outcome(response)
        assert response.json()["data"]["operator_id"] == ACME_OP4
        default_names = await http.get(STATUS, headers=bearer(sign(claims(ACME_OP4))))
        assert default_names.status_code == 401


# --- key set caching ------------------------------------------------------------------------


class CountingVerifier(JwtVerifier):
    reads = 0

    def _read_jwks(self) -> Any:
        self.reads += 1
        return super()._read_jwks()


async def test_unknown_kids_reload_the_keys_at_most_once_a_minute(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks()))
    verifier = CountingVerifier(issuer=ISSUER, audience=AUDIENCE, jwks_file=path)
    assert (await verifier.verify(sign(claims()))).operator_id == uuid.UUID(ACME_ADMIN)
    assert verifier.reads == 1

    # The provider rotates: a new key appears. Within the minute, unknown kids are refused
    # without re-reading (a flood of made-up kids costs nothing).
    rotated = public_jwk(OTHER_RSA_KEY, "rsa-2", "RS256")
    path.write_text(json.dumps(jwks(rotated)))
    new_token = sign(claims(), key=OTHER_RSA_KEY, kid="rsa-2")
    for _ in range(20):
        with pytest.raises(Unauthorized):
            await verifier.verify(new_token)
    assert verifier.reads == 1

    verifier._loaded_at = (verifier._loaded_at or 0) - 61  # a minute later
    assert (await verifier.verify(new_token)).operator_id == uuid.UUID(ACME_ADMIN)
    assert verifier.reads == 2
    # Known kids never cause a read.
    await verifier.verify(sign(claims()))
    assert verifier.reads == 2


@pytest.fixture
def jwks_url() -> Iterator[tuple[str, list[str]]]:
    body = json.dumps(jwks()).encode()
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", requests
    finally:
        server.shutdown()
        server.server_close()


async def test_keys_from_a_url(jwks_url: tuple[str, list[str]]) -> None:
    url, requests = jwks_url
    verifier = JwtVerifier(issuer=ISSUER, audience=AUDIENCE, jwks_url=url)
    identity = await verifier.verify(sign(claims(ACME_OP4), key=EC_KEY, alg="ES256", kid="ec-1"))
    assert identity.operator_id == uuid.UUID(ACME_OP4)
    for _ in range(5):
        with pytest.raises(Unauthorized):
            await verifier.verify(sign(claims(), key=OTHER_RSA_KEY, kid="nope"))
    assert requests == ["/jwks.json"]


async def test_the_role_matrix_authenticates_by_jwt(client: httpx.AsyncClient) -> None:
    response = await client.get(STATUS, headers={"X-Tenant-ID": ACME, "X-Operator-ID": ACME_OP4})
    assert response.status_code == 200
    assert "x-operator-id" not in response.request.headers
    assert response.request.headers["authorization"].startswith("Bearer ey")
