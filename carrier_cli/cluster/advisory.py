"""PostgreSQL advisory-lock keys and session-lock connections, shared by the room locks
(memory.postgres.room_locks) and leadership (cluster.leader).

A *session* advisory lock belongs to the connection that took it: it is released by
`pg_advisory_unlock` on that connection, or by the server when the connection ends (the
process died, the network went). That is what makes it a lease: nothing has to expire by
the clock, and a dead holder cannot keep it. Keys are 64-bit and shared by every lock in
the database, so each use hashes its own namespace into the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from typing import Any

from sqlalchemy import text

TRY_LOCK = text("SELECT pg_try_advisory_lock(CAST(:key AS BIGINT))")
LOCK = text("SELECT pg_advisory_lock(CAST(:key AS BIGINT))")
UNLOCK = text("SELECT pg_advisory_unlock(CAST(:key AS BIGINT))")


def advisory_key(namespace: str, *parts: object) -> int:
    """A stable signed 64-bit key for `parts` in `namespace` (the same in every process
    and version: blake2b, not Python's salted `hash`)."""
    raw = "\x1f".join([namespace, *(str(p) for p in parts)]).encode("utf-8")
    digest = hashlib.blake2b(raw, digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def lock_connection(engine: Any) -> Any:
    """A connection in autocommit (a session lock outlives transactions; no BEGIN)."""
    conn = await engine.connect()
    try:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
    except BaseException:
        await discard(conn)
        raise
    return conn


async def try_lock(conn: Any, key: int) -> bool:
    return bool((await conn.execute(TRY_LOCK, {"key": key})).scalar())


async def discard(conn: Any) -> None:
    """Close the connection without returning it to the pool: the server ends the session
    and with it every lock (or pending lock wait) it had. Best effort: a connection to a
    server that went away cannot be closed politely."""
    with contextlib.suppress(Exception):
        await conn.invalidate()
    with contextlib.suppress(Exception):
        await conn.close()


async def release(conn: Any, key: int) -> None:
    """Unlock and give the connection back to the pool; discard it if that fails (its
    session ending releases the lock anyway). Shielded: a cancelled turn still unlocks."""

    async def run() -> None:
        try:
            await conn.execute(UNLOCK, {"key": key})
            await conn.close()
        except BaseException:
            await discard(conn)
            raise

    with contextlib.suppress(Exception):
        await asyncio.shield(run())
