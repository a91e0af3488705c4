"""Engines for both backends, set up the way concurrent Carrier processes need them.

SQLite: WAL so readers never block the writer, a long busy_timeout, and write
transactions that start with BEGIN IMMEDIATE: a deferred transaction that later tries to
write can fail at once with "database is locked" when another process committed in
between, busy_timeout or not.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from carrier_cli.memory.urls import backend_of, sqlite_file

IMMEDIATE = "carrier_immediate"
AUTOCOMMIT_READ = "carrier_autocommit_read"


def make_engine(url: str) -> AsyncEngine:
    if backend_of(url) == "postgresql":
        pg = create_async_engine(url, pool_size=5, max_overflow=10, pool_recycle=1800)

        @event.listens_for(pg.sync_engine, "connect")
        def _on_pg_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.run_async(_register_vector)

        return pg
    path = sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 60})

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "busy_timeout=60000",
            "synchronous=NORMAL",
            "foreign_keys=ON",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        options = conn.get_execution_options()
        if options.get(IMMEDIATE):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif not options.get(AUTOCOMMIT_READ):
            conn.exec_driver_sql("BEGIN")
        # AUTOCOMMIT_READ: each SELECT reads the latest committed state (WAL), with no
        # BEGIN/ROLLBACK round trips: searches are mostly thread hops to aiosqlite.

    return engine


async def _register_vector(conn: Any) -> None:
    """Binary codec for `vector` (numpy in, pgvector.Vector out). Before the extension
    exists (a database not yet initialised) there is nothing to register; the store
    reconnects after creating it."""
    from pgvector.asyncpg import register_vector

    try:
        await register_vector(conn)
    except ValueError as exc:  # unknown type: public.vector
        if "unknown type" not in str(exc):
            raise
        return
    # Search settings once per connection rather than per query (a round trip each);
    # see store.HNSW_EF_SEARCH. Strict iterative scans keep filtered searches (one room,
    # one kind) from returning fewer than k rows.
    from carrier_cli.memory.store import HNSW_EF_SEARCH

    await conn.execute(
        f"SET hnsw.ef_search = {HNSW_EF_SEARCH}; SET hnsw.iterative_scan = strict_order"
    )
