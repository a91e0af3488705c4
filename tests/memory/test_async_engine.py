"""memory/async_engine.py: Carrier's AsyncEngine behaves as SQLAlchemy's (ext.asyncio) on
the same sync engine, on SQLite and PostgreSQL: transactions commit and roll back,
`run_sync` sees one connection, streams fetch as iterated, errors come out as the same
exceptions (the backends' `handle_error` hook included), and a cancelled caller still
gives its connection back to the pool."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import Connection, column, event, insert, select, table, text
from sqlalchemy.exc import DBAPIError, IntegrityError, InvalidRequestError

from carrier_cli.memory.async_engine import AsyncConnection, AsyncEngine
from carrier_cli.memory.backends import make_engine
from carrier_cli.memory.urls import normalise_url

T = table("t", column("id"), column("v"))


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    made = make_engine(normalise_url(db_url))
    assert isinstance(made, AsyncEngine)
    async with made.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
    try:
        yield made
    finally:
        await made.dispose()


async def _values(engine: AsyncEngine) -> list[tuple[int, str]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(T.c.id, T.c.v).order_by(T.c.id))).all()
    return [(int(r[0]), str(r[1])) for r in rows]


async def test_begin_commits_and_an_error_rolls_back(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(T), [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}])
        assert conn.in_transaction()
    with pytest.raises(RuntimeError, match="boom"):
        async with engine.begin() as conn:
            await conn.execute(insert(T).values(id=3, v="c"))
            raise RuntimeError("boom")
    assert await _values(engine) == [(1, "a"), (2, "b")]


async def test_explicit_transactions_savepoints_commit_and_rollback(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        trans = await conn.begin()
        await conn.execute(insert(T).values(id=1, v="kept"))
        nested = await conn.begin_nested()
        await conn.execute(insert(T).values(id=2, v="undone"))
        await nested.rollback()
        await trans.commit()
        assert not conn.in_transaction()
        await conn.execute(insert(T).values(id=3, v="rolled back"))  # autobegins
        await conn.rollback()
        await conn.execute(insert(T).values(id=4, v="committed"))
        await conn.commit()
    assert await _values(engine) == [(1, "kept"), (4, "committed")]


async def test_run_sync_runs_on_the_connection_in_its_transaction(engine: AsyncEngine) -> None:
    def work(conn: Connection, value: str, *, row_id: int) -> int:
        conn.execute(insert(T).values(id=row_id, v=value))
        return int(conn.execute(select(T.c.id).where(T.c.v == value)).scalar_one())

    async with engine.connect() as conn:
        async with conn.begin():
            assert await conn.run_sync(work, "x", row_id=7) == 7
            assert await conn.scalar(select(T.c.v)) == "x"
        assert list(await conn.scalars(select(T.c.id))) == [7]


async def test_stream_fetches_rows_as_iterated(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(T), [{"id": i, "v": str(i)} for i in range(25)])
    query = select(T.c.id).order_by(T.c.id)
    async with engine.connect() as conn:
        async with conn.stream(query) as result:
            assert [row[0] async for row in result] == list(range(25))
        result = await conn.stream(query)
        sizes = [len(part) async for part in result.partitions(10)]
        await result.close()
        assert sizes == [10, 10, 5]
        # A plain execute may not return a server-side cursor (it needs the greenlet to
        # fetch), as in ext.asyncio.
        with pytest.raises(InvalidRequestError, match="stream"):
            await conn.execute(query, execution_options={"stream_results": True})
        assert [r[0] for r in (await conn.execute(query)).all()] == list(range(25))


async def _raised(engine: Any, statement: str) -> BaseException:
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    except Exception as exc:
        return exc
    raise AssertionError(f"{statement!r} did not fail")


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM no_such_table",
        "INSERT INTO t (id, v) VALUES (1, 'a'), (1, 'b')",  # duplicate key
        "SELEKT 1",
    ],
)
async def test_errors_are_the_ones_ext_asyncio_raises(engine: AsyncEngine, statement: str) -> None:
    ours = await _raised(engine, statement)
    theirs = await _raised(engine.orm_engine(), statement)
    assert type(ours) is type(theirs)
    assert str(ours) == str(theirs)
    assert isinstance(ours, DBAPIError)
    if "VALUES" in statement:
        assert isinstance(ours, IntegrityError)


async def test_the_engines_error_hook_decides_what_is_raised(engine: AsyncEngine) -> None:
    """The backends turn driver errors into StorageFailure in `handle_error`
    (memory.engine.explain_errors); that hook runs inside the greenlet, as before."""

    class Explained(Exception):
        pass

    def explain(context: Any) -> BaseException | None:
        return Explained(type(context.original_exception).__name__)

    event.listen(engine.sync_engine, "handle_error", explain)
    try:
        with pytest.raises(Explained):
            await _raised_through(engine)
        with pytest.raises(Explained):
            await _raised_through(engine.orm_engine())
    finally:
        event.remove(engine.sync_engine, "handle_error", explain)


async def _raised_through(engine: Any) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT * FROM no_such_table"))


async def test_a_cancelled_caller_still_returns_its_connection(engine: AsyncEngine) -> None:
    pool = engine.sync_engine.pool
    started = asyncio.Event()

    async def hold() -> None:
        async with engine.connect() as conn:
            await conn.execute(select(T.c.id))
            started.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(hold())
    await started.wait()
    assert pool.checkedout() == 1  # type: ignore[attr-defined]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_options_and_misuse(engine: AsyncEngine) -> None:
    immediate = engine.execution_options(carrier_test_option=True)
    assert immediate.sync_engine.pool is engine.sync_engine.pool
    assert immediate.get_execution_options()["carrier_test_option"] is True
    conn = engine.connect()
    with pytest.raises(InvalidRequestError, match="not been started"):
        await conn.execute(select(T.c.id))
    started: AsyncConnection = await conn
    try:
        await started.execution_options(carrier_other=1)
        assert started.get_execution_options()["carrier_other"] == 1
        with pytest.raises(InvalidRequestError, match="already started"):
            await started.start()
    finally:
        await started.close()
    assert started.closed


async def test_orm_engine_is_sqlalchemys_on_the_same_engine(engine: AsyncEngine) -> None:
    from sqlalchemy.ext.asyncio import AsyncEngine as SqlAlchemyAsyncEngine

    orm = engine.orm_engine()
    assert isinstance(orm, SqlAlchemyAsyncEngine)
    assert orm.sync_engine is engine.sync_engine
    assert engine.orm_engine() is orm
