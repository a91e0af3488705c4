"""SQLite engines, set up the way concurrent Carrier processes need them.

WAL so readers never block the writer, a long busy_timeout, and write transactions that
start with BEGIN IMMEDIATE: a deferred transaction that later tries to write can fail at
once with "database is locked" when another process committed in between, busy_timeout
or not.

Statements go to aiosqlite's worker thread in one hop each (`_OneHopCursor`):
SQLAlchemy's stock adapter makes four (create the cursor, execute, fetch, close) plus one
each for COMMIT and ROLLBACK even when no transaction is open, and at ~0.06 ms per hop
those were most of a chat turn's store time.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar, cast

from sqlalchemy import Connection, Engine, ExceptionContext, create_engine, event
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

from carrier_cli.memory.async_engine import AsyncEngine, create_async_engine
from carrier_cli.memory.engine import AUTOCOMMIT_READ, IMMEDIATE, ErrorHook, explain_errors
from carrier_cli.memory.urls import sqlite_file

T = TypeVar("T")


def _explain(url: str) -> ErrorHook:
    from carrier_cli.memory.sqlite.failures import storage_failure

    def on_error(context: ExceptionContext) -> BaseException | None:
        return storage_failure(context.original_exception, url)

    return on_error


def make_engine(url: str) -> AsyncEngine:
    path = sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 60}, module=_dbapi())
    explain_errors(engine.sync_engine, _explain(url))

    event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
    event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
    return engine


def make_sqlite_writer(url: str) -> Engine | None:
    """A synchronous engine on the same SQLite file, for write transactions run whole in
    one worker thread (SqliteBackend.run_write): one thread hop per transaction instead
    of one per statement, and in-process writers queue in that thread instead of
    busy-waiting on each other. None for in-memory SQLite."""
    path = sqlite_file(url)
    if path is None:
        return None
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 60})
    explain_errors(engine, _explain(url))
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sync_begin(url))
    return engine


GROUP_LIMIT = 64  # writes at most in one group-commit transaction (SqliteWriter)
_SKIPPED = object()  # a write cancelled before it started


class _Write:
    """One queued write: its work, the caller's future and loop, and whether the caller
    gave up before the writer thread took it (`cancelled`, under the writer's lock)."""

    __slots__ = ("cancelled", "future", "loop", "work")

    def __init__(
        self, work: Callable[[Connection], Any], future: asyncio.Future[Any], loop: Any
    ) -> None:
        self.work = work
        self.future = future
        self.loop = loop
        self.cancelled = False


class _GroupBroken(Exception):
    """A write failed and SQLite ended the whole transaction (it does after some errors:
    SQLITE_FULL, IOERR, NOMEM, BUSY): the writes before it in the group are gone too."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class SqliteWriter:
    """A synchronous engine on an SQLite file and the one thread that runs its write
    transactions, each whole (BEGIN IMMEDIATE ... COMMIT) in one hop from the event loop.
    This process's writers queue in the thread instead of busy-waiting on each other in
    SQLite's busy handler (which sleeps in steps of up to 100 ms while holding a pooled
    connection); other processes are still kept apart by BEGIN IMMEDIATE + busy_timeout.

    Group commit: the writes queued while a transaction runs share the next one (up to
    GROUP_LIMIT), each in its own SAVEPOINT, so a write that fails rolls back only itself
    and its caller alone gets the error. No caller is answered before the COMMIT has
    succeeded; a failed COMMIT fails every write of the group (none of them is stored).
    A write whose caller was cancelled before the thread took it is skipped, as
    `run_in_executor` skipped a job not yet started. In the Discord burst (100 channels x
    10 messages) a turn's three writes (its message, its reply, the answered mark) met
    the other rooms' writes in the queue: each transaction's BEGIN, COMMIT (the WAL
    append) and thread hop are shared, and results go back to the loop in one wake-up a
    group instead of one a write."""

    def __init__(self, engine: Engine, url: str = "") -> None:
        import threading
        from concurrent.futures import ThreadPoolExecutor

        self.engine = engine
        self.url = url
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="carrier-sqlite")
        self._conn: Connection | None = None  # used in the executor's thread only
        self._lock = threading.Lock()  # guards _queue, _draining and each _Write's flags
        self._queue: collections.deque[_Write] = collections.deque()
        self._draining = False  # a drain job is submitted or running
        self.transactions = 0  # COMMITs attempted (tests, benches: writes per transaction)
        # The connection's wal_autocheckpoint to restore after a bulk load (`bulk`), and
        # the load's own while one runs (set again on a connection taken after a failure).
        self._restore: int | None = None
        self._bulk_pages: int | None = None

    @classmethod
    def create(cls, url: str) -> SqliteWriter | None:
        engine = make_sqlite_writer(url)
        return cls(engine, url) if engine is not None else None

    def _connection(self) -> Connection:
        # One connection kept for the thread's life rather than one checked out of the
        # pool per transaction: the checkout, Connection object and reset-on-return cost
        # ~0.1 ms of CPU per transaction, and a Discord turn writes three times. After any
        # failure it is dropped and the next transaction takes a fresh one.
        conn = self._conn
        if conn is None:
            conn = self._conn = self.engine.connect()
            conn.execution_options(**{IMMEDIATE: True})
            if self._bulk_pages is not None:
                self._pragma(conn, f"wal_autocheckpoint={self._bulk_pages}")
        return conn

    def _drop(self, conn: Connection) -> None:
        self._conn = None
        with contextlib.suppress(Exception):
            conn.close()

    def _pragma(self, conn: Connection, pragma: str) -> list[Any]:
        # On the sqlite3 connection itself: outside any transaction (pysqlite begins one
        # only before DML), which a checkpoint needs, and without SQLAlchemy's autobegin.
        driver = conn.connection.driver_connection
        return driver_call(driver, f"PRAGMA {pragma}", None, self.url)

    def _bulk(self, pages: int | None) -> None:
        conn = self._connection()
        try:
            if pages is not None:
                if self._restore is None:
                    self._restore = int(self._pragma(conn, "wal_autocheckpoint")[0][0])
                self._bulk_pages = pages
                self._pragma(conn, f"wal_autocheckpoint={pages}")
            else:
                self._bulk_pages = None
                restore, self._restore = self._restore, None
                if restore is not None:
                    self._pragma(conn, f"wal_autocheckpoint={restore}")
                # What the load deferred, now: PASSIVE never waits for readers (pages
                # that one still reads are left to the next checkpoint).
                self._pragma(conn, "wal_checkpoint(PASSIVE)")
        except BaseException:
            self._drop(conn)  # a fresh connection has SQLite's defaults
            raise

    async def bulk(self, pages: int | None) -> None:
        """A bulk load starts (`pages`: its wal_autocheckpoint) or ends (None: the
        setting restored and the WAL checkpointed). See SqliteBackend.bulk_load. It runs
        in the writer's thread between group transactions, never inside one."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, self._bulk, pages)

    def _take(self, write: _Write) -> bool:
        """Whether `write` runs: not if its caller was cancelled before now (from now on
        a cancelled caller only stops waiting: its write runs and commits)."""
        with self._lock:
            return not write.cancelled

    def _group(self) -> list[_Write]:
        """The next writes to run, in the order they were queued (none: the drain ends)."""
        with self._lock:
            group: list[_Write] = []
            while self._queue and len(group) < GROUP_LIMIT:
                write = self._queue.popleft()
                if not write.cancelled:
                    group.append(write)
            if not group:  # the queue is empty: the next write submits a new drain
                self._draining = False
            return group

    def _drain(self) -> None:
        """The writer thread's job while writes are queued: one transaction per group."""
        while group := self._group():
            try:
                results = self._run_group(group)
            except BaseException as exc:  # not expected (it answers its own failures)
                results = [(w, None, exc) for w in group]
            self._answer(results)

    def _run_group(self, group: list[_Write]) -> list[tuple[_Write, Any, BaseException | None]]:
        """Run the group in one transaction; returns what to answer each caller, in queue
        order: its result, or its error (its own, else the group's)."""
        conn: Connection | None = None
        done: list[tuple[_Write, Any, BaseException | None]] = []
        try:
            conn = self._connection()
            self.transactions += 1
            with conn.begin():  # BEGIN IMMEDIATE ... COMMIT
                driver: Any = conn.connection.driver_connection
                single = len(group) == 1
                for index, write in enumerate(group):
                    if not self._take(write):
                        done.append((write, _SKIPPED, None))
                    elif single:  # nothing to isolate it from: its failure is the group's
                        done.append((write, write.work(conn), None))
                    else:
                        done.append(self._isolated(driver, conn, group, index))
        except _GroupBroken as broken:
            # The writes before the broken one were rolled back with it (the ones after
            # it were queued again): each fails, with its own error if it had one.
            if conn is not None:
                self._drop(conn)
            lost: list[tuple[_Write, Any, BaseException | None]] = [
                (w, None, e or broken.error) for w, v, e in done if v is not _SKIPPED
            ]
            return [*lost, (group[len(done)], None, broken.error)]
        except BaseException as exc:  # BEGIN or COMMIT failed, or the single write did
            if conn is not None:
                self._drop(conn)
            answered = {id(w) for w, value, _ in done if value is _SKIPPED}
            errors = {id(w): error for w, _, error in done if error is not None}
            return [(w, None, errors.get(id(w), exc)) for w in group if id(w) not in answered]
        return done

    def _isolated(
        self, driver: Any, conn: Connection, group: list[_Write], index: int
    ) -> tuple[_Write, Any, BaseException | None]:
        """Write `index` of the group in its own savepoint: a failure rolls back only
        this write, unless SQLite ended the whole transaction (then _GroupBroken, with
        the writes after it queued again, to run in the next transaction)."""
        write = group[index]
        try:
            driver.execute("SAVEPOINT carrier_write")
            value = write.work(conn)
            driver.execute("RELEASE carrier_write")
        except Exception as exc:
            if not driver.in_transaction:  # SQLite rolled the transaction back itself
                with self._lock:
                    self._queue.extendleft(reversed(group[index + 1 :]))
                raise _GroupBroken(exc) from exc
            driver.execute("ROLLBACK TO carrier_write")
            driver.execute("RELEASE carrier_write")
            return (write, None, exc)
        return (write, value, None)

    @staticmethod
    def _answer(results: list[tuple[_Write, Any, BaseException | None]]) -> None:
        """Hand the results to their callers, in queue order, one wake-up per loop."""
        by_loop: dict[Any, list[tuple[_Write, Any, BaseException | None]]] = {}
        for item in results:
            if item[1] is not _SKIPPED:
                by_loop.setdefault(item[0].loop, []).append(item)
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, items)

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        try:
            if conn is not None:
                conn.close()
        finally:
            self.engine.dispose()

    async def run(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in a write transaction (shared with the writes queued with it) and
        return its result once that transaction has committed."""
        loop = asyncio.get_running_loop()
        write = _Write(work, loop.create_future(), loop)
        with self._lock:
            self._queue.append(write)
            start = not self._draining
            self._draining = True
        if start:
            try:
                self.executor.submit(self._drain)
            except BaseException:
                with self._lock:
                    self._draining = False
                    with contextlib.suppress(ValueError):
                        self._queue.remove(write)
                raise
        try:
            return cast("T", await write.future)
        except asyncio.CancelledError:
            with self._lock:
                write.cancelled = True  # skipped unless the thread has taken it already
            raise

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self.executor, self._close)
        finally:
            self.executor.shutdown(wait=False)


def _settle(items: list[tuple[_Write, Any, BaseException | None]]) -> None:
    """On the callers' loop: each write's result or error, unless its caller gave up."""
    for write, value, error in items:
        if write.future.cancelled():
            continue
        if error is not None:
            write.future.set_exception(error)
        else:
            write.future.set_result(value)


class InlineConnection:
    """A synchronous SQLite connection behind AsyncConnection's `execute`, for small
    indexed reads run right on the event loop thread (SqliteBackend.quick_read): in WAL
    mode a reader never waits for a writer, and a lookup of a few rows takes ~0.1 ms,
    less than the hop to aiosqlite's thread and back.

    Reads are autocommit (no BEGIN: each statement sees the latest commit), so the
    SQLAlchemy connection for `execute` and the pooled driver connection for
    `exec_driver_sql` need not be the same one, and each is taken from the reader's pool
    only when first used. Plain SQL goes to the driver's cursor directly: SQLAlchemy's
    connection object, begin event and execution context per statement were ~0.1 ms of
    each of a turn's four inline reads (index state twice, recent messages, hit rows),
    more than SQLite's own work. Driver errors are raised as SQLAlchemy raised them: the
    backend's StorageFailure when it explains them, else SQLAlchemy's DBAPIError."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url
        self._sync: Connection | None = None
        self._raw: Any = None

    @property
    def sync(self) -> Connection:
        if self._sync is None:
            conn = self.engine.connect()
            # No BEGIN is sent for its (auto)begun transaction (_sqlite_on_begin).
            conn.execution_options(**{AUTOCOMMIT_READ: True})
            self._sync = conn
        return self._sync

    def close(self) -> None:
        sync, raw, self._sync, self._raw = self._sync, self._raw, None, None
        try:
            if sync is not None:
                sync.close()
        finally:
            if raw is not None:
                raw.close()

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return self.sync.execute(statement, parameters)

    async def exec_driver_sql(self, statement: str, parameters: Any = None) -> DriverRows:
        return self.driver_rows(statement, parameters)

    def driver_rows(self, statement: str, parameters: Any = None) -> DriverRows:
        if self._raw is None:
            try:
                self._raw = self.engine.raw_connection()
            except Exception as exc:
                raise_driver_error(exc, statement, parameters, self.url)
        return DriverRows(driver_call(self._raw.driver_connection, statement, parameters, self.url))


def driver_call(
    driver: Any, statement: str, parameters: Any, url: str, *, many: bool = False
) -> list[Any]:
    """Run a statement on a sqlite3 connection and return its rows, failing as SQLAlchemy's
    `exec_driver_sql` would (raise_driver_error)."""
    try:
        cursor = driver.cursor()
        try:
            send(cursor, statement, parameters, many)
            return cursor.fetchall()
        finally:
            cursor.close()
    except Exception as exc:
        raise_driver_error(exc, statement, parameters, url)


def send(cursor: Any, statement: str, parameters: Any, many: bool) -> None:
    """A statement on a sqlite3 cursor: executemany for many rows, and no parameters
    argument at all when there are none (sqlite3 refuses None)."""
    if many:
        cursor.executemany(statement, parameters)
    elif parameters is None:
        cursor.execute(statement)
    else:
        cursor.execute(statement, parameters)


def raise_driver_error(exc: Exception, statement: str, parameters: Any, url: str) -> NoReturn:
    """A driver error as SQLAlchemy's engines here raise it: the backend's StorageFailure
    when it explains it (explain_errors), else SQLAlchemy's DBAPIError subclass."""
    import sqlite3

    from sqlalchemy.exc import DBAPIError

    from carrier_cli.memory.sqlite.failures import storage_failure

    failure = storage_failure(exc, url)
    if failure is not None:
        raise failure from exc
    if isinstance(exc, sqlite3.Error):
        raise DBAPIError.instance(statement, parameters, exc, sqlite3.Error) from exc
    raise exc


class DriverRows:
    """The rows of a statement sent to the driver: the part of SQLAlchemy's Result the
    callers use (rows are the driver's tuples)."""

    __slots__ = ("rows",)

    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows

    def all(self) -> list[Any]:
        return self.rows

    def first(self) -> Any:
        return self.rows[0] if self.rows else None

    def one(self) -> Any:
        if len(self.rows) != 1:
            from sqlalchemy.exc import MultipleResultsFound, NoResultFound

            if not self.rows:
                raise NoResultFound("No row was found when one was required")
            raise MultipleResultsFound("Multiple rows were found when exactly one was required")
        return self.rows[0]

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


def make_sqlite_reader(url: str) -> Engine | None:
    """Synchronous engine for InlineConnection reads; None unless `url` is an SQLite file.
    The pool never blocks (an inline reader may be held across an await)."""
    path = sqlite_file(url)
    if path is None:
        return None
    engine = create_engine(
        f"sqlite:///{path}", connect_args={"timeout": 60}, pool_size=2, max_overflow=-1
    )
    explain_errors(engine, _explain(url))
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sync_begin(url))
    return engine


BUSY_TIMEOUT = 60.0  # seconds; the same wait as the busy_timeout pragma below


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below)
    cursor = dbapi_connection.cursor()
    try:
        _enter_wal(cursor)
        for pragma in ("busy_timeout=60000", "synchronous=NORMAL", "foreign_keys=ON"):
            cursor.execute(f"PRAGMA {pragma}")
    finally:
        cursor.close()


def _enter_wal(cursor: Any) -> None:
    """`PRAGMA journal_mode=WAL`, waiting while another connection holds the write lock.

    Switching a file to WAL reads its header and then takes the write lock: a lock
    upgrade, for which SQLite returns SQLITE_BUSY at once instead of calling the busy
    handler. Two processes opening a brand-new database together (two `carrier instagram
    post` runs on a fresh home) meet exactly there, while the first writes the WAL header;
    without the retry the second failed with "database is locked" in well under a
    millisecond, whatever the busy_timeout. The first switch takes milliseconds, so the
    short sleeps (on the event loop thread for the async engine) happen only in that race.
    """
    import sqlite3
    import time

    deadline = time.monotonic() + BUSY_TIMEOUT
    pause = 0.002
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            code = getattr(exc, "sqlite_errorcode", None)  # extended: the low byte is BUSY
            busy = code is not None and code & 0xFF == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def _sqlite_on_begin(conn: Any) -> None:
    options = conn.get_execution_options()
    if options.get(IMMEDIATE):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif not options.get(AUTOCOMMIT_READ):
        conn.exec_driver_sql("BEGIN")
    # AUTOCOMMIT_READ: each SELECT reads the latest committed state (WAL), with no
    # BEGIN/ROLLBACK round trips: searches are mostly thread hops to aiosqlite.


def _sync_begin(url: str) -> Callable[[Any], None]:
    """_sqlite_on_begin for the synchronous engines (the writer thread's, the inline
    reader's): BEGIN IMMEDIATE straight to the sqlite3 connection, failing as through
    SQLAlchemy (driver_call). Through exec_driver_sql it was ~0.1 ms of CPU per write
    transaction."""

    def begin(conn: Any) -> None:
        options = conn.get_execution_options()
        if options.get(IMMEDIATE):
            driver_call(conn.connection.driver_connection, "BEGIN IMMEDIATE", None, url)
        elif not options.get(AUTOCOMMIT_READ):
            driver_call(conn.connection.driver_connection, "BEGIN", None, url)

    return begin


# ---------------------------------------------------------------------- SQLite: one hop


class _OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """Runs execute + fetchall + close as one function in aiosqlite's thread. Results are
    buffered, as the stock (non server-side) adapter cursor buffers them too."""

    __slots__ = ("_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: Any) -> None:  # no cursor round trip here
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: Any = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> Any:
        return self._lastrowid

    @property
    def arraysize(self) -> int:
        return 1

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        pass

    def _run(self, operation: Any, parameters: Any, many: bool) -> Any:
        aio = self._connection

        def work() -> tuple[Any, Any, int, Any]:
            cursor = aio._conn.cursor()
            try:
                send(cursor, operation, parameters, many)
                rows = cursor.fetchall() if cursor.description else None
                return cursor.description, rows, cursor.rowcount, cursor.lastrowid
            finally:
                cursor.close()

        try:
            description, rows, rowcount, lastrowid = await_(aio._execute(work))
        except Exception as error:
            self._adapt_connection._handle_exception(error)
        self._description = description
        self._rowcount = rowcount
        self._lastrowid = lastrowid
        self._rows = collections.deque(rows) if rows else collections.deque()
        return None

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        return self._run(operation, parameters, False)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        return self._run(operation, seq_of_parameters, True)

    async def _async_soft_close(self) -> None:
        pass  # the sqlite3 cursor is closed already, its rows buffered

    def close(self) -> None:
        self._rows.clear()


class _OneHopConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = _OneHopCursor

    def _idle(self) -> bool:
        """No transaction open: COMMIT and ROLLBACK would do nothing but cost a hop.
        (`in_transaction` is a flag read, safe from this thread; the connection is not
        in use by anything else while SQLAlchemy ends a transaction on it.)"""
        raw = self._connection._connection
        return raw is not None and not raw.in_transaction

    def commit(self) -> None:
        if not self._idle():
            super().commit()

    def rollback(self) -> None:
        if not self._idle():
            super().rollback()


class _OneHopDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        stock = super().connect(*arg, **kw)
        return _OneHopConnection(self, stock._connection)


_DBAPI: _OneHopDBAPI | None = None


def _dbapi() -> _OneHopDBAPI:
    global _DBAPI
    if _DBAPI is None:
        import sqlite3

        import aiosqlite

        _DBAPI = _OneHopDBAPI(aiosqlite, sqlite3)
    return _DBAPI
