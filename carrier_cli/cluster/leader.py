"""Leadership for singletons (the webhook sender, an Instagram account's autoposter): a
PostgreSQL session advisory lock held as a lease by the one process doing the work.

`await acquire(engine, key, stop, what=...)` returns a `Lease` once this process holds
the lock (the others wait, retrying every `retry` seconds, and log once that they stand
by), or None when `stop` is set first. The lock belongs to the lease's connection: it ends
with `Lease.release()`, or when the holder dies and the server sees its connection close
(at once for a killed process on a live host: the kernel closes its sockets). A standby
then takes over within `retry` seconds. For a holder whose host vanishes without closing
anything, the lease connection asks the server for TCP keepalives (`KEEPALIVE_*`: dead
after about 20 s); over a Unix socket those settings do not apply and are not needed.

The lease is watched: `Lease.lost` turns true when its connection stops answering (the
database restarted, the network went), since by then another process may have become
leader. Work between two checks of `lost` must tolerate a second worker for that moment,
as the Instagram journal (idempotency keys, row leases) and the webhook outbox (fenced
claims) do; leadership keeps the normal case to one process, they keep it exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sqlalchemy import text

from carrier_cli.cluster.advisory import discard, lock_connection, try_lock

log = logging.getLogger(__name__)  # carrier_cli.*: shown at INFO by `carrier run` and `serve`

RETRY = 2.0  # seconds between a standby's attempts
WATCH = 5.0  # seconds between checks that the lease's connection is alive
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 10, 5, 2
_KEEPALIVES = (
    f"SET tcp_keepalives_idle = {KEEPALIVE_IDLE}",
    f"SET tcp_keepalives_interval = {KEEPALIVE_INTERVAL}",
    f"SET tcp_keepalives_count = {KEEPALIVE_COUNT}",
)


class Lease:
    """A held leadership lock (its connection) and the task that watches it."""

    def __init__(self, conn: Any, key: int, what: str, watch: float = WATCH) -> None:
        self.conn = conn
        self.key = key
        self.what = what
        self.lost = False
        self._watcher = asyncio.create_task(self._watch(watch))

    async def _watch(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await asyncio.wait_for(self.conn.execute(text("SELECT 1")), timeout=every)
            except (asyncio.CancelledError, GeneratorExit):
                raise
            except BaseException as exc:
                self.lost = True
                log.warning(
                    "%s: lost the database connection that holds its leadership (%s); "
                    "another process may take over",
                    self.what,
                    type(exc).__name__,
                )
                return

    async def release(self) -> None:
        """Give leadership up: closing the session releases its lock."""
        self._watcher.cancel()
        with contextlib.suppress(BaseException):
            await self._watcher
        await discard(self.conn)


async def acquire(
    engine: Any,
    key: int,
    stop: asyncio.Event,
    *,
    what: str,
    retry: float = RETRY,
    watch: float = WATCH,
) -> Lease | None:
    """Wait until this process leads `what` (a lease), or None once `stop` is set."""
    logged = False
    while not stop.is_set():
        conn = await lock_connection(engine)
        try:
            got = await try_lock(conn, key)
            if got:
                for setting in _KEEPALIVES:
                    await conn.execute(text(setting))
        except BaseException:
            await discard(conn)
            raise
        if got:
            if logged:
                log.info("%s: this process took over", what)
            return Lease(conn, key, what, watch)
        await conn.close()  # back to the pool: it holds nothing
        if not logged:
            log.info("%s runs in another process; standing by (retry every %.0f s)", what, retry)
            logged = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=retry)
    return None
