"""The OpenAPI document, generated from the application itself.

`make openapi` writes it to the top-level `openapi.yaml`; a test fails when that file and
the app disagree, and `GET /api/openapi.yaml` serves the same text.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import yaml
from fastapi import FastAPI


def openapi_document(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def render_yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


@cache
def _app_for_generation() -> FastAPI:
    from inbox_allocation.app import create_app  # noqa: PLC0415 - app imports this module
    from inbox_allocation.config import Settings  # noqa: PLC0415

    # Generation needs no database or environment: default settings suffice.
    return create_app(Settings(database_url="postgresql://generation-only/none"))


def main() -> None:
    print(render_yaml(openapi_document(_app_for_generation())), end="")


if __name__ == "__main__":
    main()
