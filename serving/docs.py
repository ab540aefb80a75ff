"""/docs: Swagger UI served from the API's own files, not from a CDN.

FastAPI's default page loads Swagger UI from a CDN at whatever version the CDN serves ("@5"),
so the page runs third-party code that nobody pinned, and does not load at all offline. The
files here come from the pinned `fastapi-offline` package (Swagger UI 5.3.2, which renders
OpenAPI 3.1), mounted under /docs-assets.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs-assets"


def install_docs(app: FastAPI) -> None:
    openapi_url = app.openapi_url
    if openapi_url is None:  # an app without a schema has nothing to show
        return
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - documentation",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
        )
