"""The interactive API page at /docs: Swagger UI served from the package, not a CDN.

FastAPI's default /docs page loads Swagger UI from cdn.jsdelivr.net: on a server without
internet access (or behind a proxy that blocks it) the page stayed blank. The files are
vendored in carrier_cli/data/swagger/ (1.9 MB, see its README.txt) and served here from a
fixed map, like the console's; the page's configuration is an external script, so the
Content-Security-Policy allows scripts from this origin only. Swagger UI sets inline
styles, hence 'unsafe-inline' for styles alone. No key is needed for these files: they
hold no data, and the requests the page sends need the key typed under "Authorize".
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

from carrier_cli.clients.api.errors import error_response, not_found
from carrier_cli.clients.api.routes.console import TYPES

ROOT = Path(__file__).resolve().parents[3] / "data" / "swagger"
ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "docs-init.js", "favicon-32x32.png")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self' data:; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def docs_page() -> Response:
    return FileResponse(ROOT / "docs.html", media_type=TYPES[".html"], headers=HEADERS)


@router.get("/docs/assets/{name}")
async def docs_asset(name: str) -> Response:
    if name not in ASSETS:  # a fixed list: nothing from the URL reaches the filesystem
        return error_response(not_found(f"Docs file {name!r}", hint="Open /docs for the API page."))
    path = ROOT / name
    return FileResponse(path, media_type=TYPES[path.suffix], headers=HEADERS)
