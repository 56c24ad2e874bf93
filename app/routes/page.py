"""The web page at ``/`` and the interactive API page at ``/docs``, both served from files in the package
(app/static: no build step, no CDN; docs/page.md)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parents[1] / "static"
SWAGGER = "/static/vendor/swagger-ui-5.35.0"

router = APIRouter(include_in_schema=False)
static_files = StaticFiles(directory=STATIC)

# Everything the pages load comes from this server: no other origin may run script in them, frame them, or
# receive their forms. Styles may be inline (uPlot sizes its elements that way); the page's scripts are files,
# and /docs needs the one inline script FastAPI writes to start Swagger UI.
_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; script-src 'self'{docs}; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)
PAGE_HEADERS = {"Content-Security-Policy": _CSP.format(docs=""), "X-Frame-Options": "DENY"}
DOCS_HEADERS = {"Content-Security-Policy": _CSP.format(docs=" 'unsafe-inline'"), "X-Frame-Options": "DENY"}


@router.get("/")
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache", **PAGE_HEADERS})


@router.get("/docs")
async def api_docs() -> HTMLResponse:
    html = get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="logpx API",
        swagger_js_url=f"{SWAGGER}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER}/swagger-ui.css",
        swagger_favicon_url="/static/favicon.svg",
    )
    html.headers.update(DOCS_HEADERS)
    return html
