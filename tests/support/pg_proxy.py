"""A Unix-socket relay in front of the test PostgreSQL that can stall and then cut a
connection, the way a busy server that is then killed behaves on the wire.

A server busy with a large statement stops reading its socket; the client's send buffer
fills and asyncio pauses the client's writes (asyncpg then waits for "writing allowed"
between the pipelined rows of an executemany). If the server then dies, the connection is
lost while the client's writes are paused. `StallingRelay` makes that moment exact: once
one connection has sent `stall_after` bytes since `arm()`, the relay stops reading it,
waits for the client's writes to back up, and closes both of its sides; every other
connection (and every later one) is relayed normally.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

PG_PORT = 5432  # the embedded server's port: it names the socket file, .s.PGSQL.<port>


def socket_dir(url: str) -> tuple[Path, int]:
    """The socket directory and port of a `postgresql://...?host=/dir` URL."""
    parts = urlsplit(url)
    host = parse_qs(parts.query).get("host", [""])[0]
    if not host.startswith("/"):
        raise ValueError(f"{url}: the relay needs a Unix-socket URL (?host=/dir)")
    return Path(host), parts.port or PG_PORT


class StallingRelay:
    def __init__(self, url: str, *, stall_after: int, backlog_wait: float = 0.5) -> None:
        self.upstream_dir, self.port = socket_dir(url)
        self.stall_after = stall_after
        self.backlog_wait = backlog_wait  # the client's writes back up within this (~1 MB)
        self.directory = Path(tempfile.mkdtemp(prefix="pg-relay-"))
        parts = urlsplit(url)
        self.url = urlunsplit(
            (parts.scheme, parts.netloc, parts.path, f"host={self.directory}", "")
        )
        self.cut = asyncio.Event()  # set once a stalled connection has been closed
        self._armed = False
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def arm(self) -> None:
        self._armed = True

    async def __aenter__(self) -> StallingRelay:
        path = self.directory / f".s.PGSQL.{self.port}"
        self._server = await asyncio.start_unix_server(self._client, path=str(path))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(OSError):
            os.unlink(self.directory / f".s.PGSQL.{self.port}")
            os.rmdir(self.directory)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream = self.upstream_dir / f".s.PGSQL.{self.port}"
        up_reader, up_writer = await asyncio.open_unix_connection(str(upstream))
        back = asyncio.create_task(self._pipe(up_reader, writer))
        stalled = False
        try:
            sent = 0
            while chunk := await reader.read(65536):
                up_writer.write(chunk)
                await up_writer.drain()
                if self._armed:
                    sent += len(chunk)
                    if sent >= self.stall_after:
                        self._armed, stalled = False, True  # one connection only
                        await asyncio.sleep(self.backlog_wait)  # not reading: it backs up
                        break
        finally:
            back.cancel()
            for side in (writer, up_writer):
                side.transport.abort()
            if stalled:
                self.cut.set()
            self._tasks.discard(task)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        writer.transport.abort()  # the server closed its side (after a Terminate): so do we
