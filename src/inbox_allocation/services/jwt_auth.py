"""AUTH_MODE=jwt: verify a JWT from an identity provider against its published keys (JWKS).

- Signature: RS256 or ES256 only, with a key from JWT_JWKS_FILE or JWT_JWKS_URL chosen by the
  token's `kid`, and only if the key's own algorithm is the one the token names. `none`
  and every HMAC algorithm are refused before any key is looked at: with HS256 an attacker
  could sign with the public key as the shared secret.
- Claims: `exp` (required), `iss` = JWT_ISSUER, `aud` contains JWT_AUDIENCE, with 60 s of
  clock skew allowed; the tenant from JWT_TENANT_CLAIM and the operator from
  JWT_OPERATOR_CLAIM, both UUIDs. That the operator exists in the tenant is checked where
  every mode checks it (the routes' caller check), so a deleted operator is refused.
- Keys are cached; a `kid` the cache does not know makes it reload the JWKS, at most once a
  minute (key rotation works; a flood of made-up kids cannot hammer the provider).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import jwt

from inbox_allocation.domain.errors import Unauthorized
from inbox_allocation.domain.ids import parse_uuid
from inbox_allocation.logging import get_logger

log = get_logger(__name__)

ALLOWED_ALGORITHMS = frozenset({"RS256", "ES256"})
LEEWAY_SECONDS = 60
REFETCH_INTERVAL_SECONDS = 60.0
FETCH_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class JwtIdentity:
    tenant_id: UUID
    operator_id: UUID


def parse_jwks(document: Any) -> dict[str, jwt.PyJWK]:
    """The usable signing keys of a JWKS by kid: RS256/ES256 keys only (others, e.g. HMAC
    `oct` keys or encryption keys, are ignored)."""
    keys: dict[str, jwt.PyJWK] = {}
    entries = document.get("keys", []) if isinstance(document, dict) else []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(entry)
        except jwt.PyJWTError:
            continue
        if key.algorithm_name in ALLOWED_ALGORITHMS:
            keys[entry["kid"]] = key
    return keys


class JwtVerifier:
    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        tenant_claim: str = "tenant_id",
        operator_claim: str = "sub",
        jwks_file: Path | None = None,
        jwks_url: str | None = None,
    ) -> None:
        assert (jwks_file is None) != (jwks_url is None)  # settings validation ensures it
        self.issuer = issuer
        self.audience = audience
        self.tenant_claim = tenant_claim
        self.operator_claim = operator_claim
        self.jwks_file = jwks_file
        self.jwks_url = jwks_url
        self._keys: dict[str, jwt.PyJWK] = {}
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()

    async def verify(self, token: str) -> JwtIdentity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("malformed JWT") from None
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in ALLOWED_ALGORITHMS:
            raise Unauthorized("JWT algorithm not allowed (RS256 or ES256 only)")
        if not isinstance(kid, str):
            raise Unauthorized("JWT has no kid")
        key = await self._key(kid)
        if key is None:
            raise Unauthorized("JWT signed with an unknown key")
        if key.algorithm_name != algorithm:
            raise Unauthorized("JWT algorithm does not match its key")
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("expired JWT") from None
        except jwt.PyJWTError:
            raise Unauthorized("invalid JWT") from None
        tenant_id = parse_uuid(str(claims.get(self.tenant_claim, "")))
        operator_id = parse_uuid(str(claims.get(self.operator_claim, "")))
        if tenant_id is None or operator_id is None:
            raise Unauthorized(
                f"JWT claims {self.tenant_claim} and {self.operator_claim} must be UUIDs"
            )
        return JwtIdentity(tenant_id, operator_id)

    async def _key(self, kid: str) -> jwt.PyJWK | None:
        key = self._keys.get(kid)
        if key is not None or not self._may_reload():
            return key
        async with self._lock:
            if kid not in self._keys and self._may_reload():
                self._loaded_at = time.monotonic()
                try:
                    self._keys = parse_jwks(await asyncio.to_thread(self._read_jwks))
                except (OSError, ValueError) as exc:
                    # Keep the keys we had; the next reload comes a minute later at most.
                    log.warning("could not load the JWKS", error=f"{type(exc).__name__}: {exc}")
        return self._keys.get(kid)

    def _may_reload(self) -> bool:
        return (
            self._loaded_at is None
            or time.monotonic() - self._loaded_at >= REFETCH_INTERVAL_SECONDS
        )

    def _read_jwks(self) -> Any:
        if self.jwks_file is not None:
            return json.loads(self.jwks_file.read_text())
        assert self.jwks_url is not None
        # The URL comes from the settings, which accept http(s) URLs only.
        request = urllib.request.Request(self.jwks_url, headers={"Accept": "application/json"})  # noqa: S310
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_SECONDS) as response:  # noqa: S310
            return json.loads(response.read())
