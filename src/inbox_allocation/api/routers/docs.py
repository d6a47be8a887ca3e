"""API documentation: the OpenAPI document as YAML and Swagger UI, both served by us.

- `GET /api/openapi.yaml`: the document generated from the app (`api.openapi`, the same
  text `make openapi` writes), rendered once per app and kept on `app.state`.
- `GET /`: 307 to `/docs`.
- `GET /docs`: Swagger UI pointed at it. Its JavaScript and CSS come from the
  `fastapi-swagger` wheel and are served by `GET /docs/assets/{name}`, so the page works
  with no internet (the original loaded them from a CDN).

None of these routes is part of the documented API (`include_in_schema=False`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import RedirectResponse, Response

from inbox_allocation.api.openapi import openapi_document, render_yaml
from inbox_allocation.domain.errors import NotFound

router = APIRouter(include_in_schema=False)

OPENAPI_YAML_PATH = "/api/openapi.yaml"
DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
YAML_MEDIA_TYPE = "application/yaml; charset=utf-8"

# The package that bundles Swagger UI 5's distribution files; we only read its files.
_ASSET_PACKAGE = "fastapi_swagger.resources"
# The only files served: name → media type. Anything else is a 404, so no path can escape.
# The charset matters: the bundle holds UTF-8 text and the page declares none, so without it
# a browser decodes the script as windows-1252 and Swagger UI dies of a syntax error.
_ASSET_TYPES: dict[str, str] = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
# Asset URLs carry a content hash (`?v=`), so browsers may keep them for a year.
_ASSET_CACHE_CONTROL = "public, max-age=31536000, immutable"

_SWAGGER_UI_PARAMETERS: dict[str, Any] = {
    "displayRequestDuration": True,
    "filter": True,
    "tryItOutEnabled": False,
    # No badge that would call the public validator: the page must not need the internet.
    "validatorUrl": None,
}


@dataclass(frozen=True, slots=True)
class _Asset:
    content: bytes
    media_type: str
    digest: str  # of the content: the asset URL's `v` and the ETag

    @property
    def etag(self) -> str:
        return f'"{self.digest}"'


@cache
def _asset(name: str) -> _Asset:
    """Read a bundled file once (importlib.resources: wherever the package is installed)."""
    content = resources.files(_ASSET_PACKAGE).joinpath(name).read_bytes()
    digest = hashlib.sha256(content).hexdigest()[:16]
    return _Asset(content=content, media_type=_ASSET_TYPES[name], digest=digest)


def _asset_url(root_path: str, name: str) -> str:
    return f"{root_path}{ASSETS_PATH}/{name}?v={_asset(name).digest}"


def openapi_yaml(request: Request) -> str:
    """The app's OpenAPI document as YAML, rendered on first use and cached on the app."""
    state = request.app.state
    text: str | None = getattr(state, "openapi_yaml", None)
    if text is None:
        text = render_yaml(openapi_document(request.app))
        state.openapi_yaml = text
    return text


@router.get(OPENAPI_YAML_PATH)
async def get_openapi_yaml(request: Request) -> Response:
    return Response(openapi_yaml(request), media_type=YAML_MEDIA_TYPE)


@router.get("/")
async def root(request: Request) -> Response:
    """The service's front page is its documentation."""
    return RedirectResponse(str(request.scope.get("root_path", "")) + DOCS_PATH, 307)


@router.get(DOCS_PATH)
async def swagger_ui(request: Request) -> Response:
    root_path = str(request.scope.get("root_path", "")).rstrip("/")
    title: str = request.app.title
    return get_swagger_ui_html(
        openapi_url=root_path + OPENAPI_YAML_PATH,
        title=f"{title} - API documentation",
        swagger_js_url=_asset_url(root_path, "swagger-ui-bundle.js"),
        swagger_css_url=_asset_url(root_path, "swagger-ui.css"),
        swagger_favicon_url=_asset_url(root_path, "favicon-32x32.png"),
        swagger_ui_parameters=_SWAGGER_UI_PARAMETERS,
    )


@router.get(ASSETS_PATH + "/{name}")
async def swagger_asset(name: str, request: Request) -> Response:
    if name not in _ASSET_TYPES:
        raise NotFound("no such documentation asset")
    asset = _asset(name)
    headers = {"Cache-Control": _ASSET_CACHE_CONTROL, "ETag": asset.etag}
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(asset.content, media_type=asset.media_type, headers=headers)
