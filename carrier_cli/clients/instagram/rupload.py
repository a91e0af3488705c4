"""Meta's resumable upload for Reels (`instagram_reel_upload: resumable`), instead of FTP.

Where the app uses Facebook Login for Business, a Reel's container is created with
`upload_type=resumable` (no video_url); the answer carries an upload URI on
rupload.facebook.com, and the file is POSTed there with `Authorization: OAuth <token>`,
`offset` and `file_size` headers. An interrupted upload continues where Meta's copy
stops: the container's `video_status.uploading_phase.bytes_transferred` says how far it
got, and the next POST starts at that offset. The container id and URI are journaled
before the first byte is sent, so a crash mid-upload resumes the same container.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from carrier_cli.clients.instagram.graph import GraphError, error_from_body
from carrier_cli.errors import RuntimeFailure

if TYPE_CHECKING:
    from carrier_cli.clients.instagram.ftp_upload import Progress
    from carrier_cli.clients.instagram.graph import GraphClient

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # bytes read (and reported) at a time
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120)


async def transferred(graph: GraphClient, container_id: str) -> int:
    """How many bytes of the upload Meta has (0 when it does not say)."""
    body = await graph.request(
        "GET",
        container_id,
        {"fields": "video_status"},
        what=f"Reading the upload state of container {container_id}",
    )
    phase = (body.get("video_status") or {}).get("uploading_phase") or {}
    value = phase.get("bytes_transferred")
    return int(value) if isinstance(value, int) else 0


async def _chunks(
    path: Path, offset: int, size: int, progress: Progress | None
) -> AsyncIterator[bytes]:
    sent = offset
    with path.open("rb") as f:
        f.seek(offset)
        while block := await asyncio.to_thread(f.read, CHUNK):
            yield block
            sent += len(block)
            if progress is not None:
                progress(sent, size)


async def send(
    graph: GraphClient,
    uri: str,
    container_id: str,
    path: Path,
    *,
    progress: Progress | None = None,
    backoff: float = 2.0,
) -> int:
    """Upload `path` to `uri`, resuming at Meta's offset after a failure (at most
    `graph.retries` retries, the delay doubling from `backoff`). Returns the offset the
    last attempt started at (0: in one go)."""
    size = path.stat().st_size
    offset = await transferred(graph, container_id)
    attempt = 0
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        while True:
            if offset < size:
                headers = {
                    **graph.auth_header("OAuth"),
                    "offset": str(offset),
                    "file_size": str(size),
                    "Content-Type": "application/octet-stream",
                }
                try:
                    body, status = await _post(session, uri, headers, path, offset, size, progress)
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    error: Exception = exc
                else:
                    if status < 400 and isinstance(body, dict) and body.get("success"):
                        return offset
                    error = error_from_body(body, status, f"Uploading {path.name} to Meta")
                    if isinstance(error, GraphError) and error.action != "retry":
                        raise error
            else:
                return offset
            attempt += 1
            if attempt > graph.retries:
                raise RuntimeFailure(
                    f"Uploading {path.name} to Meta's upload host failed {attempt} times "
                    f"(last: {error}).",
                    hint="`carrier instagram resume ID` continues from the bytes Meta has; "
                    "instagram_reel_upload: ftp uploads through FTP_SERVER instead.",
                )
            delay = backoff * 2 ** (attempt - 1)
            log.warning("upload of %s failed (%s); retry in %.2fs", path.name, error, delay)
            await asyncio.sleep(delay)
            offset = await transferred(graph, container_id)


async def _post(
    session: aiohttp.ClientSession,
    uri: str,
    headers: dict[str, str],
    path: Path,
    offset: int,
    size: int,
    progress: Progress | None,
) -> tuple[Any, int]:
    data = _chunks(path, offset, size, progress)
    async with session.post(uri, data=data, headers=headers) as response:
        try:
            body = await response.json(content_type=None)
        except (ValueError, aiohttp.ContentTypeError):
            body = None
        return body, response.status
