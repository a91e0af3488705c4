"""GET /v1/agents/{agent}/files/{file_id}: the bytes of a file a reply sent.

A turn's answer (POST .../messages, its SSE `reply` event, the WebSocket's
`reply.completed`) lists each file with a `url` to this endpoint; the bytes are in the
process's file store (clients/api/file_store.py) for `api_file_retention_hours` after the
turn. Served as an attachment with `X-Content-Type-Options: nosniff`, so a browser never
renders a plugin's HTML or SVG in the API's origin.
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response

from carrier_cli.auth.keys import KeyInfo
from carrier_cli.clients.api.auth import require, state_of
from carrier_cli.clients.api.errors import ApiError
from carrier_cli.clients.api.file_store import FileGone, FileStore

router = APIRouter(prefix="/v1", tags=["files"])

_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]")


def file_url(agent_id: Any, file_id: str) -> str:
    """The path a client downloads a reply's file from (relative to the API's base URL)."""
    return f"/v1/agents/{agent_id}/files/{file_id}"


def disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback name (no quotes, slashes or control characters
    can reach the header) and the exact name in RFC 5987 `filename*`."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1].strip() or "file"
    ascii_name = _UNSAFE.sub("_", base)[:150].strip(" .") or "file"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(base[:150], safe='')}"


def _expired(file_id: str, store: FileStore) -> ApiError:
    return ApiError(
        410,
        "file_expired",
        f"File {file_id} was sent by a reply, but its bytes were kept only "
        f"{store.retention / 3600:g} h (or the store's size cap removed them earlier).",
        hint="Send the message again for a new copy, or raise api_file_retention_hours "
        "(and api_file_max_total_mb) on the server.",
    )


def store_of(request: Request) -> FileStore:
    store = state_of(request).extras.get("files")
    if store is None:
        raise ApiError(503, "not_configured", "This server keeps no reply files.")
    return store  # type: ignore[no-any-return]


@router.get(
    "/agents/{agent}/files/{file_id}",
    summary="Download a file a reply sent",
    description="Scope: read. The `url` of a file in a message's answer (`files[].url`). "
    "The bytes are kept `api_file_retention_hours` (default 24) after the turn that sent "
    "them: later the answer is 410 `file_expired`. Always an attachment, with the file's "
    "Content-Type and `X-Content-Type-Options: nosniff`.",
    response_class=Response,
    responses={
        200: {
            "description": "The file's bytes, with its Content-Type",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        },
        404: {"description": "No such agent, or no reply sent this file (`not_found`)"},
        410: {"description": "The file's retention is over (`file_expired`)"},
    },
)
async def get_file(
    agent: str,
    request: Request,
    _key: Annotated[KeyInfo | None, Depends(require("read"))],
    file_id: Annotated[
        str, Path(description="The file's id (64 hex digits), from `files[].id`.", max_length=200)
    ],
) -> Any:
    state_of(request).agents.get(agent)  # 404 for an agent this server does not serve
    store = store_of(request)
    try:
        found = store.find(file_id)
    except FileGone:
        raise _expired(file_id, store) from None
    if found is None:
        raise ApiError(
            404,
            "not_found",
            f"File {file_id!r} was not found.",
            hint="Use a `files[].url` from a message's answer; ids are 64 hex digits.",
        )
    try:  # read whole (at most outgoing.MAX_FILE_BYTES, 10 MiB): a sweep may unlink it next
        data = await asyncio.to_thread(found.path.read_bytes)
    except FileNotFoundError:
        raise _expired(file_id, store) from None
    return Response(
        data,
        media_type=found.content_type or "application/octet-stream",
        headers={
            "Content-Disposition": disposition(found.filename),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, max-age=3600",
        },
    )
