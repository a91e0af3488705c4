"""The web console (issue 16): static files under /console/, and / redirecting there.

The console is a client of the public REST and WebSocket API like any other: these routes
only hand out its files (carrier_cli/data/console/, installed as package data), never data,
so they need no key. The key is asked for by the page and kept in the tab's
sessionStorage; it is sent as `Authorization: Bearer` and as a WebSocket subprotocol,
never in a URL or a cookie.

Only the files that exist in that directory when the app is built are served (a fixed
map: no path from the URL ever reaches the filesystem). Every answer carries a strict
Content-Security-Policy: scripts and styles from this origin only, no inline script, no
plugin, no framing, connections to this origin only. Sanitising Markdown (DOMPurify) is
the first line against a reply that carries HTML; the policy is the second: even markup
that got through could not run a script or load one from elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse, Response

from carrier_cli.clients.api.errors import error_response, not_found

ROOT = Path(__file__).resolve().parents[3] / "data" / "console"
PREFIX = "/console/"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Revalidate every time (an ETag makes that a 304): an upgraded Carrier's console is
    # never mixed with a cached older module.
    "Cache-Control": "no-cache",
}
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}

router = APIRouter(include_in_schema=False)


def console_files(root: Path = ROOT) -> dict[str, Path]:
    """URL path under /console/ -> file, for the files of a known type."""
    if not root.is_dir():
        return {}
    return {
        path.relative_to(root).as_posix(): path
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.suffix in TYPES
    }


FILES = console_files()


@router.get("/")
async def root() -> Response:
    return RedirectResponse(PREFIX, status_code=307)


@router.get("/console")
async def console_bare() -> Response:
    return RedirectResponse(PREFIX, status_code=307)


@router.get("/console/{path:path}")
async def console_file(path: str) -> Response:
    file = FILES.get(path or "index.html")
    if file is None:
        return error_response(
            not_found(f"Console file {path!r}", hint="Open /console/ for the console.")
        )
    return FileResponse(file, media_type=TYPES[file.suffix], headers=HEADERS)
