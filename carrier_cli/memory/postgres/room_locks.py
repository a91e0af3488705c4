"""Per-room order across processes: a session advisory lock per room, held for a turn.

`runtime.rooms.RoomGates` orders one process's turns per room; with several processes on
one PostgreSQL database it also takes the room's lock here, after its in-process gate, so
at most one turn per room per process waits here (the others wait in-process, holding no
connection). A turn holds one connection for the lock, from a small pool of its own (not
the store's: a turn's own queries must not queue behind lock holders), bounded by a
semaphore; when every slot is taken, turns of other rooms wait for one.

The lock is a session lock (cluster.advisory): released in `finally`, or by the server
when the process dies and its connection closes, so a killed process never leaves a room
locked. Waiting is `pg_advisory_lock`, blocking on the server, which queues waiters in
order and wakes the next one the moment the holder unlocks (no polling delay between two
turns of a busy room). A cancelled wait discards its connection, which ends the wait.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from carrier_cli.cluster.advisory import (
    LOCK,
    advisory_key,
    discard,
    lock_connection,
    release,
    try_lock,
)

ROOM_LOCK_LIMIT = 16  # room-lock connections one process holds at most, per database
NAMESPACE = "carrier.room"


def room_key(room_id: uuid.UUID) -> int:
    return advisory_key(NAMESPACE, room_id)


class RoomLocks:
    """The room locks of one database in this process (made lazily: a process that never
    runs a turn opens no connection for them)."""

    def __init__(self, url: str, limit: int = ROOM_LOCK_LIMIT) -> None:
        self.url = url
        self.limit = limit
        self._slots = asyncio.Semaphore(limit)
        self._engine: Any = None

    def _pool(self) -> Any:
        if self._engine is None:
            from carrier_cli.memory.postgres.engine import make_engine

            self._engine = make_engine(self.url, pool_size=self.limit, max_overflow=0)
        return self._engine

    @asynccontextmanager
    async def hold(
        self, room_id: uuid.UUID, on_wait: Callable[[], None] | None = None
    ) -> AsyncIterator[None]:
        """Hold the room's lock for the body. `on_wait` is called once before the turn
        would wait (for a slot or for another process's turn), so the caller can give back
        what it should not hold while waiting (a client's bound on model calls)."""
        key = room_key(room_id)
        waited = False
        if self._slots.locked() and on_wait is not None:
            on_wait()
            waited = True
        async with self._slots:
            conn = await lock_connection(self._pool())
            try:
                if not await try_lock(conn, key):
                    if on_wait is not None and not waited:
                        on_wait()
                    await conn.execute(LOCK, {"key": key})
            except BaseException:
                await discard(conn)
                raise
            try:
                yield
            finally:
                await release(conn, key)

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
