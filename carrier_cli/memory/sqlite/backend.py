"""The SQLite backend: a writer thread, inline reads, and the in-process vector index.

SQLite has one writer at a time. Writers of this process queue in one thread
(`SqliteWriter`) rather than in SQLite's busy handler, which sleeps in steps of up to
100 ms while holding a pooled connection (100 rooms at once spent seconds per BEGIN
IMMEDIATE that way); other processes are still kept apart by BEGIN IMMEDIATE +
busy_timeout. Small reads on the hot path run inline on the event loop thread, and
vector search is an exact scan of a numpy matrix (`SqliteVectorIndex`).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
from sqlalchemy import Connection, Engine

from carrier_cli.memory.async_engine import AsyncConnection, AsyncEngine
from carrier_cli.memory.engine import AUTOCOMMIT_READ, IMMEDIATE
from carrier_cli.memory.failures import StorageFailure
from carrier_cli.memory.rows import CHUNK, IndexFilters, InsertExtra, room_times, utcnow
from carrier_cli.memory.sql import SqlBackend, StoredModel
from carrier_cli.memory.sqlite import reads
from carrier_cli.memory.sqlite.engine import (
    InlineConnection,
    SqliteWriter,
    driver_call,
    make_engine,
    make_sqlite_reader,
)
from carrier_cli.memory.sqlite.insert import INSERT_SQL, memory_values
from carrier_cli.memory.sqlite.vector_index import (
    INDEX_STATE_COLUMNS,
    INDEX_STATE_SQL,
    SqliteVectorIndex,
)
from carrier_cli.memory.types import Memory, SearchHit

T = TypeVar("T")

ADDED_SQL = "SELECT rowid, id FROM memories WHERE rowid > ? ORDER BY rowid"
BULK_WAL_PAGES = 16_384  # wal_autocheckpoint during a bulk load: 64 MB of 4 KB pages
MAX_ROWID_SQL = "SELECT max(rowid) FROM memories"
MAX_ROWID = 2**63 - 1


class SqliteBackend(SqlBackend):
    name: ClassVar[str] = "sqlite"
    reports_inserted: ClassVar[bool] = True
    dims_sql: ClassVar[str] = "length(embedding)/4"
    id_text: ClassVar[str] = "id"  # ids are stored as 32 hex digits
    day_sql: ClassVar[str] = "substr(created_at, 1, 10)"  # stored as naive UTC text
    read_options: ClassVar[dict[str, Any]] = {AUTOCOMMIT_READ: True}
    # host and port advice means nothing for a file
    connect_hint: ClassVar[str] = (
        "Check the path in DATABASE_URL (or database_url in config.yaml) and that "
        "the file is Carrier's database; `carrier db check` inspects it."
    )

    def __init__(self, engine: AsyncEngine, url: str) -> None:
        super().__init__(engine, url)
        from carrier_cli.memory.urls import sqlite_file

        self.index = SqliteVectorIndex(sqlite_file(url))
        self._write_lock = asyncio.Lock()
        self._writer: SqliteWriter | None = None
        self._writer_checked = False
        self._bulk_loads = 0  # bulk_load bodies under way
        self._reader: Engine | None = None
        self._held: Any = None  # the reader's pooled connection a warm search keeps
        self._reader_checked = False
        # The last search found the table moved since the one before (_search_warm).
        self._table_moving = False

    # ------------------------------------------------------------------ the backend's own
    async def ping(self) -> None:
        """`SELECT 1` never touches the file, and an open connection keeps reading a file
        that was deleted or made unreadable: check the file itself too."""
        import os

        from carrier_cli.memory.urls import sqlite_file

        path = sqlite_file(self.url)
        if path is not None and not os.access(path, os.R_OK | os.W_OK):
            raise StorageFailure(
                "cannot_open",
                f"The SQLite database {path} is gone or not readable and writable.",
                hint=self.connect_hint,
            )
        await super().ping()

    @staticmethod
    def make_engine(url: str) -> AsyncEngine:
        return make_engine(url)

    @staticmethod
    def storage_failure(exc: BaseException, url: str) -> StorageFailure | None:
        from carrier_cli.memory.sqlite.failures import storage_failure

        return storage_failure(exc, url)

    @staticmethod
    def missing(url: str) -> bool:
        """Whether the database file does not exist yet (`db status` does not create it)."""
        from carrier_cli.memory.urls import sqlite_file

        path = sqlite_file(url)
        return path is not None and not path.exists()

    @staticmethod
    async def check_database(url: str) -> list[dict[str, Any]]:
        from carrier_cli.memory.checks import check
        from carrier_cli.memory.sqlite.check import check_sqlite_file
        from carrier_cli.memory.urls import sqlite_file

        path: Path | None = sqlite_file(url)
        if path is None:
            return [check("database", True, "in-memory SQLite database: nothing stored to check")]
        return await check_sqlite_file(path)

    def insert(self, target: Any) -> Any:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(target)

    async def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await writer.close()
        self._drop_held()
        if self._reader is not None:
            reader, self._reader = self._reader, None
            reader.dispose()
        await self.engine.dispose()

    def _held_driver(self) -> Any:
        """A sqlite3 connection of the inline reader, kept from one warm search to the
        next (None: no inline reader). Checking one out of the pool and back in for each
        search measured ~60 us of its ~1 ms outside the scan (pool and reset code, cold
        after the scan), at load 5 on the 2-core machine. Used on the event loop thread
        only, statement by statement in autocommit (no transaction stays open), and
        dropped on any error."""
        if self._held is None:
            if not self._reader_checked:
                self._reader_checked = True
                self._reader = make_sqlite_reader(self.url)
            if self._reader is None:
                return None
            self._held = self._reader.raw_connection()
        return self._held.driver_connection

    def _drop_held(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.invalidate()  # not back to the pool: it may be why a statement failed

    # ------------------------------------------------------------------ connections
    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        async with self._write_lock, self.engine.connect() as conn:
            await conn.execution_options(**{IMMEDIATE: True})
            async with conn.begin():
                yield conn

    def _file_writer(self) -> SqliteWriter | None:
        if not self._writer_checked:
            self._writer_checked = True
            self._writer = SqliteWriter.create(self.url)
        return self._writer

    async def run_write(self, work: Callable[[Connection], T]) -> T:
        """For an SQLite file the transaction runs whole in the writer thread (one hop,
        queued behind this process's other writes); in memory via run_sync."""
        writer = self._file_writer()
        if writer is not None:
            return await writer.run(work)
        return await super().run_write(work)

    @asynccontextmanager
    async def bulk_load(self, rows: int | None, stored: StoredModel) -> AsyncIterator[None]:
        """The WAL is checkpointed once, at the end of the load, instead of every 1,000
        pages (SQLite's wal_autocheckpoint): each checkpoint copied every page written
        since the last one into the database file and synced it, and a load rewrites the
        same index pages at every commit (the content_hash index's, at random), so a
        checkpoint every ~3 batches copied them again and again, and evicted the pages
        the next inserts needed. Measured on the memories insert alone (20,000 rows in
        batches of 1,000, median of 5, load 5.4): CPU 22.1 -> 18.9 us a row, insert +
        commit 54 -> 30 us. Up to BULK_WAL_PAGES (64 MB of WAL) are kept before a
        checkpoint still runs. Nested and overlapping loads share one setting."""
        writer = self._file_writer()
        if writer is None:  # in-memory: no WAL
            yield
            return
        self._bulk_loads += 1
        try:
            if self._bulk_loads == 1:
                await writer.bulk(BULK_WAL_PAGES)
            yield
        finally:
            self._bulk_loads -= 1
            if self._bulk_loads == 0:
                await writer.bulk(None)

    def quick_read(self) -> AbstractAsyncContextManager[AsyncConnection | InlineConnection]:
        """Small indexed reads (a few rows by key, a room's recent messages) run
        synchronously on the event loop thread, as the thread hop of an async read costs
        more than the read (an SQLite file in WAL mode: a reader never waits)."""
        if not self._reader_checked:
            self._reader_checked = True
            self._reader = make_sqlite_reader(self.url)
        if self._reader is None:
            return self.read()  # type: ignore[no-any-return]
        return _QuickRead(InlineConnection(self._reader, self.url))

    def _index_read(self) -> Any:
        """Reads around a vector search: inline once the index is loaded (what is left to
        read is the rows added since, and the hits), async for the first, full load."""
        if self.index.rev is not None:
            return self.quick_read()
        return self.read()

    # ------------------------------------------------------------------ vectors
    def _touch_rooms(self, conn: Connection, memories: Sequence[Memory]) -> None:
        # Driver SQL (memory/sqlite/reads.py): every insert moves its room's time.
        driver, url = conn.connection.driver_connection, self.url
        for room_id, moment in room_times(memories).items():
            stamp = reads.encode_time(moment)
            driver_call(driver, reads.TOUCH_ROOM_SQL, (stamp, room_id.hex, stamp), url)

    async def insert_memories(
        self,
        memories: Sequence[Memory],
        vectors: Sequence[np.ndarray | None],
        digests: Sequence[str],
        *,
        extra: InsertExtra | None = None,
    ) -> set[uuid.UUID] | None:
        index = self.index
        # Each id's hex once: UUID.hex is a Python property (~1 us), and it was taken four
        # times a memory here.
        hexes = [m.id.hex for m in memories]

        def write(conn: Connection) -> tuple[int, int, int, list[tuple[int, str]]]:
            # Note where the table ends before inserting. The rows past that point are
            # exactly this transaction's (it holds the write lock): they tell which ids
            # were new, and the vector index can take them without reading them back.
            # Straight to the sqlite3 connection in this transaction (driver_call: fails as
            # SQLAlchemy would): its execution context per statement cost more CPU than
            # these statements (four per stored message).
            driver: Any = conn.connection.driver_connection  # sqlite3.Connection
            url = self.url
            before = driver_call(driver, INDEX_STATE_SQL, None, url)[0]
            rev, start_rowid = int(before[0] or 0), int(before[1] or 0)
            taken = 0
            if memories:
                # Encoded here, from the memories themselves, rather than by SQLAlchemy's
                # bind processors from row dicts: half the insert's time
                # (memory/sqlite/insert.py has the figures and the test keeping them
                # equal). total_changes counts the rows ON CONFLICT kept out.
                changes = driver.total_changes
                values = memory_values(memories, vectors, digests, hexes)
                driver_call(driver, INSERT_SQL, values, url, many=True)
                taken = driver.total_changes - changes
            added: list[tuple[int, str]] | None = None
            new: list[Memory] = []
            if taken == len(memories) and start_rowid + taken < MAX_ROWID:
                # Every row was new. SQLite gives a new row the largest rowid + 1 (below
                # 2**63 - 1), so they are start+1 .. start+n in order: checked by the
                # table's end, one indexed lookup instead of reading back a row per
                # memory (~1.5 us each, at ingest).
                end = driver_call(driver, MAX_ROWID_SQL, None, url)[0][0]
                if int(end or 0) == start_rowid + taken:
                    added = [(start_rowid + 1 + k, h) for k, h in enumerate(hexes)]
                    new = list(memories)
            if added is None:
                read = driver_call(driver, ADDED_SQL, (start_rowid,), url)
                added = [(int(r[0]), str(r[1])) for r in read]
                new_ids = {i for _, i in added}
                new = [m for m, h in zip(memories, hexes, strict=True) if h in new_ids]
            self._touch_rooms(conn, new)
            if extra is not None and new:
                extra(conn, new)
            end_rowid = added[-1][0] if added else start_rowid
            return rev, start_rowid, end_rowid, added

        written = await self.run_write(write)
        index.append_written(*written, memories, vectors, hexes)
        if len(written[3]) == len(memories):
            return {m.id for m in memories}
        taken_ids = {i for _, i in written[3]}  # hex ids; the memories' own UUIDs, not parsed
        return {m.id for m, h in zip(memories, hexes, strict=True) if h in taken_ids}

    async def recent(self, room_id: uuid.UUID, n: int, kinds: list[str] | None) -> list[Memory]:
        # Driver SQL, rows decoded by hand (memory/sqlite/reads.py): 0.48 -> ~0.17 ms for
        # a turn's 32 recent messages.
        async with self._reading(n) as conn:
            return await reads.recent(conn, room_id, n, tuple(kinds or ()))

    async def stored_vectors(self, model: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        # Driver SQL (memory/sqlite/reads.py): each stored message looks its text up here
        # first (the embedding cache), inline, through a SQLAlchemy statement before.
        found: dict[str, np.ndarray] = {}
        async with self._reading(len(hashes)) as conn:
            for start in range(0, len(hashes), CHUNK):
                chunk = tuple(hashes[start : start + CHUNK])
                result = await conn.exec_driver_sql(reads.hashes_sql(len(chunk)), chunk)
                for h, row_model, blob in result.all():
                    if h not in found and row_model == model and blob is not None:
                        found[h] = reads.decode_vector(blob)
        return found

    async def cache_set(self, key: str, value: Any, ttl: float | None) -> None:
        # Driver SQL: the Discord bot writes two cache rows per turn (the answered mark
        # and the reply map), each paying SQLAlchemy's compile-cache lookup and bind
        # processors before; the encoding is SQLAlchemy's (JSON text, naive UTC time).
        expires = reads.encode_time(utcnow() + timedelta(seconds=ttl)) if ttl is not None else None
        params = (key, json.dumps(value), expires)
        await self.run_write(lambda conn: conn.exec_driver_sql(reads.CACHE_UPSERT_SQL, params))

    async def cache_set_many(self, entries: Sequence[tuple[str, Any, float | None]]) -> None:
        # One transaction for all: the Discord bot's reply links and answered mark, two
        # writer transactions a turn before (of four).
        if not entries:
            return
        now = utcnow()
        params = [
            (
                key,
                json.dumps(value),
                reads.encode_time(now + timedelta(seconds=ttl)) if ttl is not None else None,
            )
            for key, value, ttl in entries
        ]

        def write(conn: Connection) -> None:
            driver = conn.connection.driver_connection
            driver_call(driver, reads.CACHE_UPSERT_SQL, params, self.url, many=True)

        await self.run_write(write)

    async def search(
        self, vector: np.ndarray, model: str, *, k: int, threshold: float, filters: IndexFilters
    ) -> list[SearchHit]:
        index = self.index
        if not self._table_moving:
            checked = await self._search_warm(vector, model, k, threshold, filters)
            if checked is not None:
                return checked
        for attempt in range(2):
            async with self._index_read() as conn:  # one connection for the whole search
                before = (index.rev, index.max_rowid, index.model)
                await index.refresh(conn, model)
                # Refresh first while the table keeps moving (another writer between
                # every search): scanning first would scan twice each time.
                self._table_moving = (index.rev, index.max_rowid, index.model) != before
                scored = index.search(vector, k, threshold, filters)  # (search_rows)
                found = await _hits(conn, [i for i, _ in scored]) if scored else {}
            if len(found) == len(scored) or attempt == 1:
                break
            # Deleted by another process since the index was filled (then the revision
            # has moved and the file is rebuilt anyway), or a vector file whose rows
            # disagree with the table although its header matched: rebuild, ask again.
            index.invalidate(distrust_file=True)
        return [SearchHit(memory=found[i], score=s) for i, s in scored if i in found]

    async def _search_warm(
        self, vector: np.ndarray, model: str, k: int, threshold: float, filters: IndexFilters
    ) -> list[SearchHit] | None:
        """A search of a loaded index in one statement: scan the index as it stands, then
        read the hit rows and the table's state together (one snapshot), and answer when
        the table still stands where the index does: no row added, updated or deleted
        (else None: the caller refreshes and searches again). Before, the state was read
        first (a statement and the refresh lock) and the hits after (a second one).
        Not while the table keeps moving (`_table_moving`): then the state is read first,
        as before, so that each search scans once."""
        index = self.index
        state = index.warm(model)
        if state is None:
            return None
        scored = index.search_rows(vector, k, threshold, filters)
        if len(scored) > CHUNK:
            return None
        # By rowid, each row's id checked against the index's (checked_hits keeps only the
        # expected ids): the table's rowid b-tree alone, not the id index and then the
        # table. A row whose rowid holds another memory counts as missing, and the caller
        # then searches the slow way, which rebuilds a file that disagrees with the table.
        hexes, rowids = index.named([row for row, _ in scored])
        ids = {hexed: uuid.UUID(hexed) for hexed in hexes}
        sql = reads.checked_rowids_sql(len(rowids), INDEX_STATE_COLUMNS)
        driver = self._held_driver()
        if driver is None:
            async with self.quick_read() as conn:
                rows = (await conn.exec_driver_sql(sql, tuple(rowids))).all()
        else:
            try:
                rows = driver_call(driver, sql, tuple(rowids), self.url)
            except BaseException:
                self._drop_held()
                raise
        now, found = reads.checked_hits(rows, ids, only_known=True)
        if now != state or len(found) != len(hexes):
            if now == state and len(rows) - 1 > len(found):
                # A rowid held another memory while the table stood where the index does:
                # the index's rowids are wrong (a damaged file), so rebuild it.
                index.invalidate(distrust_file=True)
            return None
        return [
            SearchHit(memory=found[ids[hexed]], score=score)
            for hexed, (_, score) in zip(hexes, scored, strict=True)
        ]

    async def has_near(
        self, vector: np.ndarray, model: str, filters: IndexFilters, *, threshold: float
    ) -> bool:
        async with self._index_read() as conn:
            await self.index.refresh(conn, model)
            hits = self.index.search_rows(vector, 1, threshold, filters)
        return bool(hits)

    def vectors_changed(self) -> None:
        self.index.invalidate()


async def _hits(conn: Any, ids: list[uuid.UUID]) -> dict[uuid.UUID, Memory]:
    """The hits' rows by driver SQL, decoded by hand (memory/sqlite/reads.py): 0.25 ms
    for ten rows through a prebuilt SQLAlchemy statement before."""
    return await reads.by_ids(conn, ids, CHUNK)


class _QuickRead:
    """`async with` around an InlineConnection, closed on the way out. A class, not an
    @asynccontextmanager: each of those is an async generator that asyncio registers in a
    WeakSet on its first iteration, and a turn makes four quick reads."""

    __slots__ = ("inline",)

    def __init__(self, inline: InlineConnection) -> None:
        self.inline = inline

    async def __aenter__(self) -> InlineConnection:
        return self.inline

    async def __aexit__(self, *exc: object) -> None:
        self.inline.close()
