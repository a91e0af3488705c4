"""Carrier's own asyncio engine: SQLAlchemy's async Core API over a sync `Engine`, without
`sqlalchemy.ext.asyncio`.

`sqlalchemy.ext.asyncio` imports its AsyncSession on import, and with it the whole ORM
(`sqlalchemy.orm`: mapper, session, loading strategies), whatever the caller uses: a
`carrier chat` start paid for an ORM nothing on that path uses (without it, with the
memory tables as Core tables in memory/schema.py: -60 ms CPU to the first piped reply and
-74 ms CPU in all, medians of 11 alternating starts on the shared 2-core machine, load 4).
Carrier's database code is Core only (statements on connections, `run_sync` for whole
transactions), so this module gives it the part of ext.asyncio it uses, built the way
ext.asyncio builds it: every call of the sync `Connection` runs in a greenlet
(`sqlalchemy.util.greenlet_spawn`) in which the async driver adapters (aiosqlite,
asyncpg) wait with `await_`, so statements, results, events, pooling and the backends'
`handle_error` hook (memory.engine.explain_errors) are SQLAlchemy's own and raise exactly as
before.

What needs ORM sessions (the Instagram journal and schedule) asks `orm_engine()` for
SQLAlchemy's AsyncEngine on the same sync engine, pool and event hooks; that import
happens there, when an Instagram command first needs it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import exc
from sqlalchemy.util import greenlet_spawn

if TYPE_CHECKING:
    from sqlalchemy import URL, Connection, CursorResult, Dialect, Engine, Row, Transaction
    from sqlalchemy.engine import ScalarResult
    from sqlalchemy.engine.interfaces import (
        CoreExecuteOptionsParameter,
        _CoreAnyExecuteParams,
        _DBAPIAnyExecuteParams,
    )
    from sqlalchemy.ext.asyncio import AsyncEngine as OrmAsyncEngine
    from sqlalchemy.pool import PoolProxiedConnection
    from sqlalchemy.sql.base import Executable
    from sqlalchemy.util.typing import TupleAny

    # Rows of any shape (SQLAlchemy 2.1's results are generic over the row's types).
    Result = CursorResult[*TupleAny]
    AnyRow = Row[*TupleAny]

T = TypeVar("T")
P = ParamSpec("P")

__all__ = [
    "AsyncConnection",
    "AsyncEngine",
    "AsyncResult",
    "AsyncTransaction",
    "create_async_engine",
    "orm_engine",
]


async def _run_to_completion(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to its end even when the caller is cancelled meanwhile (then re-raise the
    cancellation): a connection's close must not be cut in half, or its driver connection
    is neither returned to the pool nor closed. ext.asyncio closes connections this way."""
    task = asyncio.create_task(coro)
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError as err:
            if task.done():
                raise
            cancelled = err
        else:
            break
    if cancelled is not None:
        raise cancelled
    return result


async def _buffered(result: Result, method: str) -> Result:
    """ext.asyncio's `_ensure_sync_result`: a plain `execute` must not hand back a
    server-side cursor (it would need the greenlet to fetch), and the driver cursor is
    soft-closed now that its rows are buffered."""
    if result.context._is_server_side:
        await greenlet_spawn(result.close)
        raise exc.InvalidRequestError(
            f"Can't use the AsyncConnection.{method}() method with a server-side cursor. "
            "Use the AsyncConnection.stream() method for an async streaming result set."
        )
    cursor = result.cursor
    if cursor is not None:
        await cursor._async_soft_close()
    return result


class AsyncEngine:
    """An asyncio front of a sync `Engine` whose dialect is async (aiosqlite, asyncpg)."""

    __slots__ = ("_orm", "sync_engine")

    def __init__(self, sync_engine: Engine) -> None:
        if not sync_engine.dialect.is_async:
            raise exc.InvalidRequestError(
                "Carrier's async engine needs an async driver; the loaded "
                f"{sync_engine.dialect.driver!r} is not async."
            )
        self.sync_engine = sync_engine
        self._orm: OrmAsyncEngine | None = None

    def connect(self) -> AsyncConnection:
        """`async with engine.connect() as conn` (or `conn = await engine.connect()`)."""
        return AsyncConnection(self)

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction, committed at the end (rolled back on an error)."""
        async with self.connect() as conn, conn.begin():
            yield conn

    async def raw_connection(self) -> PoolProxiedConnection:
        return await greenlet_spawn(self.sync_engine.raw_connection)

    def execution_options(self, **opt: Any) -> AsyncEngine:
        """An engine on the same pool whose connections start with these options."""
        return AsyncEngine(self.sync_engine.execution_options(**opt))

    def get_execution_options(self) -> Any:
        return self.sync_engine.get_execution_options()

    async def dispose(self, close: bool = True) -> None:
        await greenlet_spawn(self.sync_engine.dispose, close=close)

    @property
    def dialect(self) -> Dialect:
        return self.sync_engine.dialect

    @property
    def url(self) -> URL:
        return self.sync_engine.url

    @property
    def name(self) -> str:
        return self.sync_engine.name

    def orm_engine(self) -> OrmAsyncEngine:
        """SQLAlchemy's own AsyncEngine on this engine (same pool, same event hooks), for
        ORM sessions. Imports sqlalchemy.ext.asyncio (and the ORM) on first use only."""
        if self._orm is None:
            from sqlalchemy.ext.asyncio import AsyncEngine as OrmEngine

            self._orm = OrmEngine(self.sync_engine)
        return self._orm


def orm_engine(engine: AsyncEngine) -> OrmAsyncEngine:
    """`engine.orm_engine()`: what an ORM `async_sessionmaker` is given."""
    return engine.orm_engine()


class AsyncConnection:
    """One pooled connection, started by `await` or `async with`. Statements run on the
    sync `Connection` in a greenlet; results come back buffered (CursorResult)."""

    __slots__ = ("engine", "sync_connection", "sync_engine")

    def __init__(self, engine: AsyncEngine, sync_connection: Connection | None = None) -> None:
        self.engine = engine
        self.sync_engine = engine.sync_engine
        self.sync_connection = sync_connection

    async def start(self) -> AsyncConnection:
        if self.sync_connection is not None:
            raise exc.InvalidRequestError("connection is already started")
        self.sync_connection = await greenlet_spawn(self.sync_engine.connect)
        return self

    def __await__(self) -> Generator[Any, None, AsyncConnection]:
        return self.start().__await__()

    async def __aenter__(self) -> AsyncConnection:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await _run_to_completion(self.close())

    @property
    def _proxied(self) -> Connection:
        if self.sync_connection is None:
            raise exc.InvalidRequestError(
                "This connection has not been started: use `await` or `async with`."
            )
        return self.sync_connection

    @property
    def dialect(self) -> Dialect:
        return self._proxied.dialect

    @property
    def closed(self) -> bool:
        return self._proxied.closed

    @property
    def invalidated(self) -> bool:
        return self._proxied.invalidated

    @property
    def info(self) -> dict[Any, Any]:
        return self._proxied.info

    def in_transaction(self) -> bool:
        return self._proxied.in_transaction()

    def begin(self) -> AsyncTransaction:
        """`async with conn.begin():` commits at the end, rolls back on an error."""
        return AsyncTransaction(self)

    def begin_nested(self) -> AsyncTransaction:
        return AsyncTransaction(self, nested=True)

    async def execution_options(self, **opt: Any) -> AsyncConnection:
        """Set options on this connection (SQLAlchemy's in-place form); returns itself."""
        conn = self._proxied
        await greenlet_spawn(conn.execution_options, **opt)
        return self

    def get_execution_options(self) -> Any:
        return self._proxied.get_execution_options()

    async def execute(
        self,
        statement: Executable,
        parameters: _CoreAnyExecuteParams | None = None,
        *,
        execution_options: CoreExecuteOptionsParameter | None = None,
    ) -> Result:
        result = await greenlet_spawn(
            self._proxied.execute,
            statement,
            parameters,
            execution_options=execution_options,
            _require_await=True,
        )
        return await _buffered(result, "execute")

    async def exec_driver_sql(
        self,
        statement: str,
        parameters: _DBAPIAnyExecuteParams | None = None,
        execution_options: CoreExecuteOptionsParameter | None = None,
    ) -> Result:
        result = await greenlet_spawn(
            self._proxied.exec_driver_sql,
            statement,
            parameters,
            execution_options,
            _require_await=True,
        )
        return await _buffered(result, "exec_driver_sql")

    async def scalar(
        self,
        statement: Executable,
        parameters: _CoreAnyExecuteParams | None = None,
        *,
        execution_options: CoreExecuteOptionsParameter | None = None,
    ) -> Any:
        result = await self.execute(statement, parameters, execution_options=execution_options)
        return result.scalar()

    async def scalars(
        self,
        statement: Executable,
        parameters: _CoreAnyExecuteParams | None = None,
        *,
        execution_options: CoreExecuteOptionsParameter | None = None,
    ) -> ScalarResult[Any]:
        result = await self.execute(statement, parameters, execution_options=execution_options)
        return result.scalars()

    def stream(
        self,
        statement: Executable,
        parameters: _CoreAnyExecuteParams | None = None,
        *,
        execution_options: CoreExecuteOptionsParameter | None = None,
    ) -> _Streaming:
        """Rows from a server-side cursor, fetched as iterated: `async with conn.stream(q)
        as result: async for row in result` (closed at the end) or `await conn.stream(q)`."""
        options = dict(execution_options or {})
        options["stream_results"] = True
        return _Streaming(self, statement, parameters, options)

    async def run_sync(
        self, fn: Callable[Concatenate[Connection, P], T], *arg: P.args, **kw: P.kwargs
    ) -> T:
        """`fn(sync_connection, ...)` in the greenlet: a whole transaction's statements
        with no event-loop round trip between them."""
        return await greenlet_spawn(fn, self._proxied, *arg, _require_await=False, **kw)

    async def get_raw_connection(self) -> PoolProxiedConnection:
        return await greenlet_spawn(getattr, self._proxied, "connection")

    async def commit(self) -> None:
        await greenlet_spawn(self._proxied.commit)

    async def rollback(self) -> None:
        await greenlet_spawn(self._proxied.rollback)

    async def invalidate(self, exception: BaseException | None = None) -> None:
        await greenlet_spawn(self._proxied.invalidate, exception=exception)

    async def close(self) -> None:
        await greenlet_spawn(self._proxied.close)


class AsyncTransaction:
    """`async with conn.begin():`, or started with `await` and ended by commit/rollback."""

    __slots__ = ("connection", "nested", "sync_transaction")

    def __init__(self, connection: AsyncConnection, nested: bool = False) -> None:
        self.connection = connection
        self.nested = nested
        self.sync_transaction: Transaction | None = None

    async def start(self, is_ctxmanager: bool = False) -> AsyncTransaction:
        conn = self.connection._proxied
        begin = conn.begin_nested if self.nested else conn.begin
        self.sync_transaction = await greenlet_spawn(begin)
        if is_ctxmanager:
            # Marks the transaction as a context manager's, as `with conn.begin():` does:
            # SQLAlchemy then refuses a commit of it from inside the block.
            self.sync_transaction.__enter__()
        return self

    def __await__(self) -> Generator[Any, None, AsyncTransaction]:
        return self.start().__await__()

    async def __aenter__(self) -> AsyncTransaction:
        return await self.start(is_ctxmanager=True)

    async def __aexit__(self, type_: Any, value: Any, traceback: Any) -> None:
        await greenlet_spawn(self._proxied.__exit__, type_, value, traceback)

    @property
    def _proxied(self) -> Transaction:
        if self.sync_transaction is None:
            raise exc.InvalidRequestError("This transaction has not been started.")
        return self.sync_transaction

    @property
    def is_active(self) -> bool:
        return self._proxied.is_active

    async def commit(self) -> None:
        await greenlet_spawn(self._proxied.commit)

    async def rollback(self) -> None:
        await greenlet_spawn(self._proxied.rollback)

    async def close(self) -> None:
        await greenlet_spawn(self._proxied.close)


class _Streaming:
    """What `AsyncConnection.stream` returns: awaitable, or an async context manager that
    closes the result at the end."""

    __slots__ = ("_args", "_conn", "_result")

    def __init__(self, conn: AsyncConnection, *args: Any) -> None:
        self._conn = conn
        self._args = args
        self._result: AsyncResult | None = None

    async def start(self) -> AsyncResult:
        conn = self._conn
        if not conn.dialect.supports_server_side_cursors:
            raise exc.InvalidRequestError(
                "Can't use `stream` with the current dialect since it does not support "
                "server side cursors."
            )
        statement, parameters, options = self._args
        result = await greenlet_spawn(
            conn._proxied.execute,
            statement,
            parameters,
            execution_options=options,
            _require_await=True,
        )
        self._result = AsyncResult(result)
        return self._result

    def __await__(self) -> Generator[Any, None, AsyncResult]:
        return self.start().__await__()

    async def __aenter__(self) -> AsyncResult:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        if self._result is not None:
            await _run_to_completion(self._result.close())


class AsyncResult:
    """Rows of a server-side cursor, each fetch in the greenlet."""

    __slots__ = ("_result",)

    def __init__(self, result: Result) -> None:
        self._result = result

    def keys(self) -> Sequence[str]:
        return list(self._result.keys())

    def __aiter__(self) -> AsyncResult:
        return self

    async def __anext__(self) -> AnyRow:
        row = await greenlet_spawn(self._result.fetchone)
        if row is None:
            raise StopAsyncIteration()
        return row

    async def fetchmany(self, size: int | None = None) -> Sequence[AnyRow]:
        return await greenlet_spawn(self._result.fetchmany, size)

    async def partitions(self, size: int | None = None) -> AsyncIterator[Sequence[AnyRow]]:
        while rows := await self.fetchmany(size):
            yield rows

    async def all(self) -> Sequence[AnyRow]:
        return await greenlet_spawn(self._result.all)

    async def close(self) -> None:
        await greenlet_spawn(self._result.close)


def create_async_engine(url: str | URL, **kw: Any) -> AsyncEngine:
    """`sqlalchemy.ext.asyncio.create_async_engine`, for this module's engine: the URL's
    async dialect (`_is_async`, as ext.asyncio asks for it) on a sync Engine."""
    from sqlalchemy import create_engine

    if kw.get("server_side_cursors", False):
        raise exc.InvalidRequestError(
            "Can't set server_side_cursors for an async engine; use AsyncConnection.stream()."
        )
    return AsyncEngine(create_engine(url, _is_async=True, **kw))
