"""The PostgreSQL engine: asyncpg with pgvector's codec, search settings per connection,
and driver errors in the operator's words."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ExceptionContext, event

from carrier_cli.memory.async_engine import AsyncEngine, create_async_engine
from carrier_cli.memory.engine import MIGRATION_LOCK, ErrorHook, explain_errors
from carrier_cli.memory.schema import register_reflection

register_reflection()

# HNSW: ef_search 300 (pgvector default 40) with schema.HNSW_OPTIONS measured recall@10
# >= 0.95 on the benchmark's clustered 256-d vectors; search stays within a few
# milliseconds at 100k rows.
HNSW_EF_SEARCH = 300
# Serialises concurrent first runs: two processes auto-initialising one database.
MIGRATION_LOCK_SQL = "SELECT pg_advisory_xact_lock(7261055)"


def _explain(url: str) -> ErrorHook:
    from carrier_cli.memory.postgres.failures import server_gone, storage_failure

    def on_error(context: ExceptionContext) -> BaseException | None:
        failure = storage_failure(context.original_exception, url)
        if failure is None and _asyncpg_closed(context):
            # asyncpg reports a connection lost in the middle of a pipelined executemany
            # as "InternalClientError: cannot switch to state ...; another operation is in
            # progress": the symptom, on a connection that is closed. Name the cause, and
            # have SQLAlchemy discard the connection rather than pool it again.
            context.is_disconnect = True
            failure = server_gone(url, context.original_exception, "connection lost")
        return failure

    return on_error


def make_engine(url: str, *, pool_size: int = 5, max_overflow: int = 10) -> AsyncEngine:
    pg = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_recycle=1800,
        execution_options={MIGRATION_LOCK: MIGRATION_LOCK_SQL},
    )
    explain_errors(pg.sync_engine, _explain(url))

    @event.listens_for(pg.sync_engine, "connect")
    def _on_pg_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.driver_connection.add_termination_listener(_allow_writing)
        dbapi_connection.run_async(_register_vector)

    return pg


def _allow_writing(conn: Any) -> None:
    """Wake an executemany waiting to write on a connection that is gone.

    asyncpg's executemany (every batch INSERT: ON CONFLICT DO NOTHING has no RETURNING, so
    SQLAlchemy hands the rows to it) pipelines its rows in 128 KB slices and, when the
    socket backs up (a server busy with the batch stops reading it), waits for asyncio's
    resume_writing() between slices, with no timeout. When the connection is lost during
    that wait, asyncio never calls resume_writing: the INSERT waited forever, with nothing
    left on the server to answer (pg_stat_activity empty). That was the hang of an import
    whose backends were killed (about 1 run in 5 on a loaded machine, where the server
    reads slowly). asyncpg calls this on the connection's loss (and close); allowing
    writes again lets executemany see the loss and raise it, so the import reports it.
    """
    protocol = getattr(conn, "_protocol", None)
    if protocol is not None:
        protocol.resume_writing()


def _asyncpg_closed(context: ExceptionContext) -> bool:
    """Whether the asyncpg connection the error happened on has been closed."""
    try:
        fairy = context.connection.connection if context.connection is not None else None
        raw = getattr(fairy, "dbapi_connection", None)
        closed = getattr(getattr(raw, "_connection", None), "is_closed", None)
        return bool(closed()) if callable(closed) else False
    except Exception:  # an invalidated connection has no driver connection left: unknown
        return False


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
    # see HNSW_EF_SEARCH. Strict iterative scans keep filtered searches (one room, one
    # kind) from returning fewer than k rows.
    await conn.execute(
        f"SET hnsw.ef_search = {HNSW_EF_SEARCH}; SET hnsw.iterative_scan = strict_order"
    )
