"""Who is calling /api/v1: AUTH_MODE=headers | token | jwt (docs/authentication.md).

- `headers` (default): X-Tenant-ID and X-Operator-ID are trusted as sent, for deployments
  behind a gateway that authenticates and sets them. This middleware is not installed.
- `token`: `Authorization: Bearer iat_…`, an API token (services.tokens).
- `jwt`: `Authorization: Bearer <JWT>` from an identity provider (services.jwt_auth).

In token and jwt modes a missing, malformed, unknown, revoked or expired credential is 401
UNAUTHORIZED with `WWW-Authenticate: Bearer`. The credential fixes tenant and operator;
identity headers may still be sent but must then name the same ones (else 401). The
middleware then rewrites the identity headers to the credential's, so everything inside
(idempotency scopes, the routes' identity and role checks, logs) works the same in every
mode. It runs before idempotency, which keys stored responses by that identity.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from starlette.types import ASGIApp, Receive, Scope, Send

from inbox_allocation.api.responses import render_api_error
from inbox_allocation.db.pool import Database
from inbox_allocation.domain.errors import Unauthorized
from inbox_allocation.domain.ids import parse_uuid
from inbox_allocation.services.jwt_auth import JwtVerifier
from inbox_allocation.services.tokens import TokenAuthenticator

AuthMode = Literal["token", "jwt"]
_IDENTITY_HEADERS = (b"x-tenant-id", b"x-operator-id")


def _bearer(scope: Scope) -> str:
    """The bearer credential of the only Authorization header; 401 otherwise."""
    values = [value for key, value in scope["headers"] if key == b"authorization"]
    if not values:
        raise Unauthorized("missing credentials: send Authorization: Bearer <token>")
    if len(values) > 1:
        raise Unauthorized("more than one Authorization header")
    text: str = values[0].decode("latin-1")
    scheme, _, credential = text.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise Unauthorized("malformed Authorization header: expected Bearer <token>")
    return credential


def _check_identity_headers(scope: Scope, tenant_id: UUID, operator_id: UUID) -> None:
    expected = {b"x-tenant-id": tenant_id, b"x-operator-id": operator_id}
    for key, value in scope["headers"]:
        if key in expected and parse_uuid(value.decode("latin-1")) != expected[key]:
            raise Unauthorized("identity headers do not match the credential")


class AuthenticationMiddleware:
    def __init__(
        self, app: ASGIApp, mode: AuthMode, jwt_verifier: JwtVerifier | None = None
    ) -> None:
        self.app = app
        self.mode = mode
        self.tokens = TokenAuthenticator()
        self.jwt = jwt_verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/v1/"):
            await self.app(scope, receive, send)
            return
        try:
            tenant_id, operator_id = await self._identify(scope)
        except Unauthorized as error:
            await render_api_error(error, challenge=True)(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k not in _IDENTITY_HEADERS]
        headers += [
            (b"x-tenant-id", str(tenant_id).encode()),
            (b"x-operator-id", str(operator_id).encode()),
        ]
        # In place, as JsonBodyMiddleware does: the scope is shared with the outer layers.
        scope["headers"] = headers
        await self.app(scope, receive, send)

    async def _identify(self, scope: Scope) -> tuple[UUID, UUID]:
        """The credential's tenant and operator, once it and the identity headers agree."""
        credential = _bearer(scope)
        if self.mode == "token":
            db: Database = scope["app"].state.db
            owner = await self.tokens.authenticate(db, credential)
            _check_identity_headers(scope, owner.tenant_id, owner.operator_id)
            await self.tokens.touch(db, owner)
            return owner.tenant_id, owner.operator_id
        assert self.jwt is not None  # create_app builds one in jwt mode
        claims = await self.jwt.verify(credential)
        _check_identity_headers(scope, claims.tenant_id, claims.operator_id)
        return claims.tenant_id, claims.operator_id
