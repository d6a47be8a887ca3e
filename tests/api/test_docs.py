"""GET /docs (Swagger UI with its assets from our own server) and GET /api/openapi.yaml.

The browser-level check (headless Chromium renders the operations) is `make docs-check`
(tools/docs_check.py).
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI

from inbox_allocation.api.openapi import openapi_document, render_yaml
from inbox_allocation.api.schemas.envelope import ErrorEnvelope

pytestmark = pytest.mark.no_db

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}


def _local_urls(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


async def test_docs_page_loads_swagger_ui_from_our_server(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    urls = _local_urls(html)
    assert any(url.startswith("/docs/assets/swagger-ui-bundle.js?v=") for url in urls), urls
    assert any(url.startswith("/docs/assets/swagger-ui.css?v=") for url in urls), urls
    assert all(url.startswith("/docs/assets/") for url in urls), urls
    assert "url: '/api/openapi.yaml'" in html
    for cdn in ("http://", "https://", "//cdn", "jsdelivr", "unpkg"):
        assert cdn not in html
    assert '"validatorUrl": null' in html  # no call to the public validator either


async def test_docs_asset_urls_in_the_page_are_served(client: httpx.AsyncClient) -> None:
    html = (await client.get("/docs")).text
    for url in _local_urls(html):
        response = await client.get(url)
        assert response.status_code == 200, url
        assert response.content


@pytest.mark.parametrize(("name", "media_type"), ASSETS.items())
async def test_assets_have_their_content_type_and_long_cache(
    client: httpx.AsyncClient, name: str, media_type: str
) -> None:
    response = await client.get(f"/docs/assets/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert response.headers["etag"]
    again = await client.get(
        f"/docs/assets/{name}", headers={"If-None-Match": response.headers["etag"]}
    )
    assert again.status_code == 304
    assert again.content == b""


async def test_bundle_is_swagger_ui(client: httpx.AsyncClient) -> None:
    js = await client.get("/docs/assets/swagger-ui-bundle.js")
    assert b"SwaggerUIBundle" in js.content
    css = await client.get("/docs/assets/swagger-ui.css")
    assert b".swagger-ui" in css.content


async def test_unknown_asset_is_a_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs/assets/swagger-ui.js")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert ErrorEnvelope.model_validate(response.json()).error.code == "NOT_FOUND"


@pytest.mark.parametrize(
    "path",
    [
        "/docs/assets/__init__.py",  # next to the assets in the package, but not one of them
        "/docs/assets/..%2F__init__.py",
        "/docs/assets/..%2F..%2F..%2Finbox_allocation%2Fconfig.py",
        "/docs/assets/%2e%2e%2fmain.py",
        "/docs/assets/..%5C__init__.py",
        "/docs/assets/%2Fetc%2Fpasswd",
        "/docs/assets/swagger-ui.css%00.py",
        "/docs/assets/swagger-ui.css/..",
        "/docs/assets/",
    ],
)
async def test_path_traversal_is_a_404(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert ErrorEnvelope.model_validate(response.json()).error.code == "NOT_FOUND"


async def test_openapi_yaml_is_the_apps_document(client: httpx.AsyncClient, app: FastAPI) -> None:
    response = await client.get("/api/openapi.yaml")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/yaml; charset=utf-8"
    document = openapi_document(app)
    assert yaml.safe_load(response.text) == document
    assert response.text == render_yaml(document)  # the same text `make openapi` writes
    assert (await client.get("/api/openapi.yaml")).text == response.text  # cached, stable


async def test_docs_routes_are_not_in_the_document(app: FastAPI) -> None:
    paths = openapi_document(app)["paths"]
    for path in ("/docs", "/api/openapi.yaml", "/docs/assets/{name}"):
        assert path not in paths


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


async def test_every_api_v1_operation_documents_the_identity_headers(
    client: httpx.AsyncClient,
) -> None:
    document = yaml.safe_load((await client.get("/api/openapi.yaml")).text)
    operations = [op for op in _operations(document) if op[0].startswith("/api/v1/")]
    assert operations
    missing = []
    for path, method, operation in operations:
        shared = document["paths"][path].get("parameters", [])
        headers = {
            parameter["name"]
            for parameter in [*shared, *operation.get("parameters", [])]
            if parameter.get("in") == "header"
        }
        missing += [
            f"{method.upper()} {path}: {name}"
            for name in ("X-Tenant-ID", "X-Operator-ID")
            if name not in headers
        ]
    assert not missing, missing


@pytest.mark.parametrize("path", ["/docs", "/api/openapi.yaml", "/docs/assets/swagger-ui.css"])
async def test_identity_headers_are_ignored_on_docs(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(
        path, headers={"X-Tenant-ID": "not-a-uuid", "X-Operator-ID": "garbage"}
    )
    assert response.status_code == 200


async def test_docs_only_answer_get(client: httpx.AsyncClient) -> None:
    response = await client.post("/docs")
    assert response.status_code == 405
    assert ErrorEnvelope.model_validate(response.json()).error.code == "METHOD_NOT_ALLOWED"


async def test_authorize_offers_the_identity_headers_and_a_bearer_credential(
    client: httpx.AsyncClient,
) -> None:
    document = yaml.safe_load((await client.get("/api/openapi.yaml")).text)
    schemes = document["components"]["securitySchemes"]
    assert schemes["TenantHeader"] == {**schemes["TenantHeader"], "type": "apiKey",
                                       "in": "header", "name": "X-Tenant-ID"}  # fmt: skip
    assert schemes["OperatorHeader"]["name"] == "X-Operator-ID"
    assert schemes["BearerAuth"] == {**schemes["BearerAuth"], "type": "http", "scheme": "bearer"}
    expected: list[dict[str, list[str]]] = [
        {"TenantHeader": [], "OperatorHeader": []},
        {"BearerAuth": []},
    ]
    for path, method, operation in _operations(document):
        if path.startswith("/api/v1/"):
            assert operation.get("security") == expected, f"{method} {path}"
        else:
            assert "security" not in operation, f"{method} {path}"
