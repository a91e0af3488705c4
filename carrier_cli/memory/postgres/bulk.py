"""PostgreSQL bulk loads: which plan a load takes, and the HNSW index DDL around it.

Inserting one row into an HNSW index costs about HNSW_INSERT_VS_BUILD times what building
the index costs per row (1.5-2 ms vs ~0.25 ms at 100k rows, 256-d, 2 cores), and loads
below BULK_MIN_ROWS are not worth the DDL. See PostgresBackend.bulk_load for the plans.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from sqlalchemy import text

from carrier_cli.memory.async_engine import AsyncConnection
from carrier_cli.memory.schema import (
    BULK_SEGMENT,
    BULK_VECTOR_INDEX,
    MAIN_VECTOR_INDEX,
    hnsw_index_ddl,
)

PG_MAX_INDEXED_DIM = 2000
HNSW_INSERT_VS_BUILD = 6
BULK_MIN_ROWS = 1_000
BULK_LOCK = 7261057  # advisory lock key held for the whole of a bulk load
VECTOR_LOCK = 7261056  # advisory lock key around changes to the vector column's type

BulkPlan = Literal["rowwise", "segment", "rebuild"]

log = logging.getLogger(__name__)

SEGMENT_COUNTS_SQL = (
    "SELECT count(*) FILTER (WHERE vector_segment IS NULL), "
    f"count(*) FILTER (WHERE vector_segment = {BULK_SEGMENT}) "
    "FROM memories WHERE embedding IS NOT NULL"
)


async def bulk_plan(conn: AsyncConnection, rows: int | None) -> BulkPlan:
    """The cheapest plan for a load of `rows` memories (None: unknown or most of the
    table), from how many vectors the main index and the bulk segment hold now."""
    counts = (await conn.execute(text(SEGMENT_COUNTS_SQL))).one()
    main, segment = int(counts[0]), int(counts[1])
    if rows is None:
        return "rebuild"
    # Costs in units of "build one row". The segment may not outgrow the main index,
    # or the next loads would rebuild ever larger segments: past that, merge.
    rowwise = rows * HNSW_INSERT_VS_BUILD
    if segment + rows <= main:
        return "segment" if segment + rows < rowwise else "rowwise"
    return "rebuild" if main + segment + rows < rowwise else "rowwise"


async def drop_vector_indexes(conn: AsyncConnection) -> None:
    await conn.execute(text(f"DROP INDEX IF EXISTS {MAIN_VECTOR_INDEX}"))
    await conn.execute(text(f"DROP INDEX IF EXISTS {BULK_VECTOR_INDEX}"))


async def create_vector_indexes(conn: AsyncConnection) -> None:
    """Both HNSW indexes, where missing (an empty segment's index costs nothing)."""
    await conn.execute(text(hnsw_index_ddl(bulk=False)))
    await conn.execute(text(hnsw_index_ddl(bulk=True)))


@asynccontextmanager
async def unless(failed: bool) -> AsyncIterator[None]:
    """A cleanup step: its errors propagate normally, but are only logged when the work
    it cleans up after has failed already (that failure is the one to report)."""
    try:
        yield
    except Exception as exc:
        if not failed:
            raise
        log.debug("cleanup after a failure failed too: %s: %s", type(exc).__name__, exc)


@asynccontextmanager
async def closing_quietly(connecting: Any) -> AsyncIterator[AsyncConnection]:
    """`async with engine.connect()` whose close cannot replace an error in flight."""
    conn = await connecting.start()
    try:
        yield conn
    except BaseException:
        with contextlib.suppress(Exception):
            await conn.close()
        raise
    await conn.close()
