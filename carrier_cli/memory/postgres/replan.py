"""One retry when another process changed the schema under this one's prepared statements.

The first process to embed gives `memories.embedding` its dimension (`ALTER TABLE ...
TYPE vector(N)`, PostgresBackend.prepare_vectors); `reembed` and `clear_vectors` change it
again. Every other process's pooled asyncpg connections still hold prepared statements
typed against the old column, and PostgreSQL refuses the first one that returns it
("cached plan must not change result type"): asyncpg raises InvalidCachedStatementError.
SQLAlchemy's asyncpg dialect then clears its statement caches for the whole engine, but
does not run the statement again (its docs: "nor can it retry the statement as the
PostgreSQL transaction is invalidated"). The memory layer can: a read is one autocommit
statement, so it is run again on the same connection; a write transaction is a function
(`run_write`), so the whole transaction is run again. Once: a second refusal is a real error.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from carrier_cli.memory.failures import chain

log = logging.getLogger(__name__)
T = TypeVar("T")

# asyncpg's exception and SQLAlchemy's DBAPI-level copy of it share the name.
STALE_PLAN_ERROR = "InvalidCachedStatementError"


def stale_plan(exc: BaseException) -> bool:
    """Whether `exc` is (or wraps) asyncpg's refusal of a statement prepared before a
    schema change."""
    return any(type(error).__name__ == STALE_PLAN_ERROR for error in chain(exc))


async def once_more(attempt: Callable[[], Awaitable[T]]) -> T:
    """`attempt()`, run a second time if a schema change refused its prepared statement
    (the dialect has re-prepared nothing yet, but has marked every cached one stale)."""
    try:
        return await attempt()
    except Exception as exc:
        if not stale_plan(exc):
            raise
        log.info("the database schema changed (another process); running the statement again")
    return await attempt()


class ReplanningConnection:
    """An autocommit read connection whose statements are each retried once on a stale
    plan (see the module docstring); everything else is the AsyncConnection's own."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        return await once_more(lambda: self._conn.execute(*args, **kwargs))

    async def scalar(self, *args: Any, **kwargs: Any) -> Any:
        return await once_more(lambda: self._conn.scalar(*args, **kwargs))

    async def scalars(self, *args: Any, **kwargs: Any) -> Any:
        return await once_more(lambda: self._conn.scalars(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)
