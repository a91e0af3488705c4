"""Exact cosine search for SQLite: one float32 matrix per embedding model, scanned by BLAS.

SQLite in most Pythons cannot load extensions (so no sqlite-vec); a matrix-vector product
over 100k x 256 unit vectors takes 2-4 ms, which is faster than any index would need to
be. It is BLAS (`vector_scan.scores`), not `np.einsum` as before: einsum took 8.7-9.1 ms
idle and loaded, matmul 2.3-3.4 ms idle (issue 15, 2-core machine). The matrix is in two
parts:

* the *base*, mapped read-only from the vector file beside the database
  (`vector_file`): a new process maps it instead of reading every vector out of SQLite
  (0.74 s at 100k memories, ~6 s at 1M), and at 1M memories the OS holds those pages
  once for every process that maps them, instead of each process holding its own copy;
* the *tail*, in memory: rows added since the file was written, by this process (taken
  without reading them back) or by others (read by rowid). Past `FLUSH_ROWS` the tail
  is appended to the file and mapped.

The index is kept in step with the table as before: new rows are found by rowid, and
triggers bump `store_state.memories_rev` on every update or delete, which forces a
reopen (rare: deletes, re-embedding, imports over existing rows); the file records the
revision it was written at, so it is rebuilt then too. Filters are evaluated on small
integer code arrays held in memory (22 bytes a row), so they cost little more than the
scan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
from sqlalchemy import text

from carrier_cli.memory.async_engine import AsyncConnection
from carrier_cli.memory.rows import IndexFilters
from carrier_cli.memory.sqlite import vector_file, vector_scan, vector_top
from carrier_cli.memory.sqlite.engine import InlineConnection
from carrier_cli.memory.sqlite.vector_file import ROW, Appender, Header, Mapped
from carrier_cli.memory.sqlite.vector_prune import Pruner
from carrier_cli.memory.types import Memory

log = logging.getLogger(__name__)

_KINDS = ("message", "fact", "document", "fragment", "lore")
_KIND_CODE = {k: i for i, k in enumerate(_KINDS)}
_NONE = -1
# Where the index stands against the table: the delete/update revision and the last rowid.
INDEX_STATE_COLUMNS = (
    "(SELECT value FROM store_state WHERE key = 'memories_rev'), (SELECT max(rowid) FROM memories)"
)
INDEX_STATE_SQL = f"SELECT {INDEX_STATE_COLUMNS}"
_ROWS_SQL = (
    'SELECT rowid, id, agent_id, room_id, entity_id, kind, created_at, "unique", embedding '
    "FROM memories WHERE rowid > :after AND rowid <= :upto "
    "AND embedding_model = :model AND embedding IS NOT NULL ORDER BY rowid"
)
# Rows are read in rowid ranges of this size, so a full load never holds more than one
# range's blobs at once (~50 MB at 256-d; reading all 1M at once took ~3.9 GB).
CHUNK_ROWIDS = 50_000
# A tail this long is appended to the file: 2 MB at 256-d, a few ms with the fsyncs.
FLUSH_ROWS = 2048
# A process that keeps searching (an agent, not a one-shot command) copies a mapped base
# of up to this size into its own memory after COPY_AFTER searches: numpy's large
# allocations get transparent huge pages, the page cache's 4 KB pages do not, and the
# scan measured 30% slower on the mapping (100k x 256: p50 69 vs 53 ms alternating in one
# process, 2-core machine at load 10). Larger bases stay mapped, shared between processes
# and paged by the OS (1M x 256 is 1 GB; mapped it measured 1.10x the numpy floor).
COPY_MAX_BYTES = 256 * 1024 * 1024
COPY_AFTER = 8
# A recurring filter's rows are copied together (`_Subset`) when they are at most this
# share of all rows; past it, scanning everything and keeping the selection costs about
# the same and needs no copy.
SUBSET_MAX_SHARE = 0.6

Conn = AsyncConnection | InlineConnection


def _epoch_us(moment: datetime) -> int:
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return int((moment - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1_000_000)


class _Codes:
    """Interns uuid hex strings to small ints so filters are integer comparisons; `order`
    holds the uuids in code order (what the vector file stores)."""

    def __init__(self, known: Sequence[bytes] = ()) -> None:
        self.order: list[bytes] = list(known)
        self.codes: dict[str, int] = {value.hex(): i for i, value in enumerate(self.order)}

    def code(self, value: str | None) -> int:
        if value is None:
            return _NONE
        found = self.codes.get(value)
        if found is None:
            found = self.codes[value] = len(self.order)
            self.order.append(bytes.fromhex(value))
        return found

    def lookup(self, value: uuid.UUID) -> int | None:
        return self.codes.get(value.hex)


class SqliteVectorIndex:
    def __init__(self, database: Path | None = None) -> None:
        self.database = database  # None: an in-memory database, no vector file
        self.model: str | None = None
        self.rev: int | None = None
        self.dim = 0
        self._lock = asyncio.Lock()
        self._distrust_file = False
        self._scratch = np.zeros(0, dtype=np.float32)
        self._clear()

    # ------------------------------------------------------------------ state
    def _clear(self) -> None:
        self.size = 0  # rows in the index: base + tail
        self.max_rowid = 0
        self.last_rowid, self.last_id = 0, ""
        self.header: Header | None = None  # the file's header the base was mapped from
        self._flush_at = FLUSH_ROWS
        self._searches = 0  # since the base was mapped
        self._subsets: dict[tuple[int, frozenset[int], bool], _Subset] = {}
        self._unsubsettable: set[tuple[int, frozenset[int], bool]] = set()
        self._by_room: _RoomRows | None = None  # from the first room-filtered search
        self.base = np.zeros((0, self.dim), dtype=np.float32)
        self.base_ids = np.zeros(0, dtype="V16")
        self.tail = np.zeros((0, self.dim), dtype=np.float32)
        self.tail_ids = np.zeros(0, dtype="V16")
        self.agents = np.zeros(0, dtype=np.int32)
        self.rooms = np.zeros(0, dtype=np.int32)
        self.entities = np.zeros(0, dtype=np.int32)
        self.kinds = np.zeros(0, dtype=np.int8)
        self.created = np.zeros(0, dtype=np.int64)
        self.unique = np.zeros(0, dtype=bool)
        self.rowids = np.zeros(0, dtype=np.int64)  # each row's memories.rowid
        self.codes = _Codes()
        self.agents_present: set[int] = set()

    @property
    def base_count(self) -> int:
        return len(self.base)

    @property
    def tail_count(self) -> int:
        return self.size - len(self.base)

    def invalidate(self, *, distrust_file: bool = False) -> None:
        """Reopen before the next search; `distrust_file`: and rebuild the file (its rows
        disagreed with the table although its header matched)."""
        self.rev = None
        self._distrust_file = self._distrust_file or distrust_file

    def warm(self, model: str) -> tuple[int, int] | None:
        """Where the index stands (rev, max rowid) when a search may scan it first and
        check the table after (SqliteBackend.search): open for `model`, no refresh under
        way (its arrays may be half filled), no flush due (a refresh does that). None:
        refresh first."""
        if self.rev is None or model != self.model or self._lock.locked():
            return None
        if self.header is not None and self.tail_count >= self._flush_at:
            return None
        return self.rev, self.max_rowid

    async def refresh(self, conn: Conn, model: str) -> None:
        # One refresh at a time: the runtime searches and dedupes concurrently, and two
        # overlapping loads of the same new rows would append them twice.
        async with self._lock:
            await self._refresh(conn, model)

    async def _refresh(self, conn: Conn, model: str) -> None:
        # Plain driver SQL: 0.05 ms against 0.44 ms through text() (measured at load 12 on
        # the 2-core machine), and this runs before every search.
        row: Any = (await conn.exec_driver_sql(INDEX_STATE_SQL)).one()
        rev, max_rowid = int(row[0] or 0), int(row[1] or 0)
        if rev != self.rev or model != self.model or max_rowid < self.max_rowid:
            await self._open(conn, model, rev, max_rowid)
        elif max_rowid > self.max_rowid:
            await self._load(conn, self.max_rowid, max_rowid)
        due = self.header is not None and self.tail_count >= self._flush_at
        if due and not self._flush():  # busy or failing: try again when the tail has grown
            self._flush_at = self.tail_count + FLUSH_ROWS

    # ------------------------------------------------------------------ opening
    def _folder(self) -> Path | None:
        return vector_file.folder_beside(self.database) if self.database is not None else None

    async def _open(self, conn: Conn, model: str, rev: int, max_rowid: int) -> None:
        """Map the vector file when it agrees with the table (then read only the rows
        added since), else rebuild it; in memory only when there can be no file."""
        self.model, self.rev = model, rev
        self.dim = 0
        self._clear()
        folder = self._folder()
        if folder is None:
            await self._load(conn, 0, max_rowid)
            return
        if not self._distrust_file and await self._adopt_if_current(conn, folder, max_rowid):
            return
        async with contextlib.AsyncExitStack() as stack:
            try:
                taken = await stack.enter_async_context(vector_file.wait_lock(folder))
            except OSError:
                taken = False  # a read-only folder: no lock file, no writing either
            # Another process may have rebuilt it while this one waited for the lock.
            if not self._distrust_file and await self._adopt_if_current(conn, folder, max_rowid):
                return
            self._distrust_file = False
            if taken:
                try:
                    await self._rebuild(conn, folder, max_rowid)
                    return
                except OSError as exc:  # disk full, read-only: search still works
                    log.warning("cannot write the vector file in %s (%s)", folder, exc)
                    self.dim = 0
                    self._clear()
            await self._load(conn, 0, max_rowid)

    async def _adopt_if_current(self, conn: Conn, folder: Path, max_rowid: int) -> bool:
        header = vector_file.read_header(folder)
        if header is None or not await self._agrees(conn, header, max_rowid):
            return False
        mapped = vector_file.try_map(folder, header)
        if mapped is None:
            return False
        self._adopt(mapped)
        if max_rowid > self.max_rowid:
            await self._load(conn, self.max_rowid, max_rowid)
        return True

    async def _agrees(self, conn: Conn, header: Header, max_rowid: int) -> bool:
        """Whether the file is a prefix of the table as it is now: same model, same
        update/delete revision, no row beyond the table's end, and its last vector's
        rowid still holds the same memory (a database replaced by another file)."""
        if header.model != self.model or header.rev != self.rev or header.max_rowid > max_rowid:
            return False
        if header.last_rowid == 0:
            return header.count == 0
        found = (
            await conn.execute(
                text("SELECT id FROM memories WHERE rowid = :rowid"), {"rowid": header.last_rowid}
            )
        ).first()
        return found is not None and str(found[0]) == header.last_id

    def _adopt(self, mapped: Mapped) -> None:
        header = mapped.header
        self.header = header
        self.dim = header.dim
        self.base = mapped.vectors
        self.base_ids = mapped.rows["id"]
        self.tail = np.zeros((0, self.dim), dtype=np.float32)
        self.codes = _Codes(mapped.codes)
        self.size = 0
        self._append_columns(mapped.rows)
        self.max_rowid = header.max_rowid
        self.last_rowid, self.last_id = header.last_rowid, header.last_id

    async def _rebuild(self, conn: Conn, folder: Path, max_rowid: int) -> None:
        """Write a new generation from the table, range by range, then map it."""
        assert self.model is not None and self.rev is not None
        gen = uuid.uuid4().hex[:16]
        start = Header(gen, self.model, 0, self.rev, 0, 0, "", 0, 0)
        appender = Appender(folder, start, new=True)
        try:
            for after in range(0, max_rowid, CHUNK_ROWIDS):
                rows = await self._rows(conn, after, min(after + CHUNK_ROWIDS, max_rowid))
                if not rows:
                    continue
                dim = len(rows[0][8]) // 4
                if self.dim == 0:
                    self.dim = dim
                known = len(self.codes.order)
                records = self._records(rows)
                vectors = b"".join(r[8] for r in rows)
                if len(vectors) != len(rows) * self.dim * 4:
                    raise ValueError("vectors of more than one dimension under one model")
                appender.write_raw(vectors, records, self.codes.order[known:])
                self._append_columns(records)
                self.last_rowid, self.last_id = int(rows[-1][0]), str(rows[-1][1])
            header = Header(
                gen,
                self.model,
                self.dim,
                self.rev,
                max_rowid,
                self.last_rowid,
                self.last_id,
                self.size,
                len(self.codes.order),
            )
            appender.commit(header)
        finally:
            appender.close()
        vector_file.remove_other_generations(folder, keep=gen)
        mapped = Mapped(folder, header)
        self.base, self.base_ids, self.header = mapped.vectors, mapped.rows["id"], header
        self.tail = np.zeros((0, self.dim), dtype=np.float32)
        self.max_rowid = max_rowid

    def _flush(self) -> bool:
        """Append the tail to the file and map it, when no other process is writing and
        the file is still the one this index mapped (else reopen: it has moved on).
        Returns whether the tail is in the file now, or a reopen is due."""
        folder = self._folder()
        header = self.header
        if folder is None or header is None or self.model is None:
            return False
        try:
            with vector_file.try_lock(folder) as taken:
                if not taken:
                    return False
                if vector_file.read_header(folder) != header:
                    self.invalidate()
                    return True
                if header.dim not in (0, self.dim):
                    self.invalidate(distrust_file=True)
                    return True
                tail = slice(self.base_count, self.size)
                records = np.zeros(self.tail_count, dtype=ROW)
                records["id"] = self.tail_ids[: self.tail_count]
                records["agent"] = self.agents[tail]
                records["room"] = self.rooms[tail]
                records["entity"] = self.entities[tail]
                records["kind"] = self.kinds[tail]
                records["unique"] = self.unique[tail]
                records["created"] = self.created[tail]
                records["rowid"] = self.rowids[tail]
                appender = Appender(folder, header, new=False)
                try:
                    appender.append(
                        self.tail[: self.tail_count], records, self.codes.order[header.codes :]
                    )
                    new = Header(
                        header.gen,
                        self.model,
                        self.dim,
                        header.rev,
                        self.max_rowid,
                        self.last_rowid,
                        self.last_id,
                        self.size,
                        len(self.codes.order),
                    )
                    appender.commit(new)
                finally:
                    appender.close()
                mapped = Mapped(folder, new)
        except (OSError, ValueError) as exc:
            log.warning("cannot append to the vector file in %s (%s)", folder, exc)
            return False
        self.base, self.base_ids, self.header = mapped.vectors, mapped.rows["id"], new
        self.tail = np.zeros((0, self.dim), dtype=np.float32)
        self.tail_ids = np.zeros(0, dtype="V16")
        self._flush_at = FLUSH_ROWS
        self._searches = 0
        return True

    # ------------------------------------------------------------------ rows in
    async def _rows(self, conn: Conn, after: int, upto: int) -> list[Any]:
        # Driver SQL like _refresh's: a concurrent writer's rows (the Discord burst: about
        # one load per turn) no longer pay text()'s compile-cache lookup.
        result = await conn.exec_driver_sql(
            _ROWS_SQL, {"after": after, "upto": upto, "model": self.model}
        )
        return list(result.all())

    def _records(self, rows: Sequence[Any]) -> np.ndarray:
        records = np.zeros(len(rows), dtype=ROW)
        records["id"] = np.frombuffer(bytes.fromhex("".join(r[1] for r in rows)), dtype="V16")
        code = self.codes.code
        records["agent"] = [code(r[2]) for r in rows]
        records["room"] = [code(r[3]) for r in rows]
        records["entity"] = [code(r[4]) for r in rows]
        records["kind"] = [_KIND_CODE.get(r[5], 127) for r in rows]
        records["created"] = np.array([r[6] for r in rows], dtype="datetime64[us]").astype(np.int64)
        records["unique"] = [bool(r[7]) for r in rows]
        records["rowid"] = [r[0] for r in rows]
        return records

    async def _load(self, conn: Conn, after: int, upto: int) -> None:
        """Rows after..upto into the tail, range by range."""
        for start in range(after, upto, CHUNK_ROWIDS):
            rows = await self._rows(conn, start, min(start + CHUNK_ROWIDS, upto))
            if not rows:
                continue
            dim = len(rows[0][8]) // 4
            if self.dim == 0:
                self.dim = dim
                self.base = np.zeros((0, dim), dtype=np.float32)
                self.tail = np.zeros((0, dim), dtype=np.float32)
            blobs = b"".join(r[8] for r in rows)
            if len(blobs) != len(rows) * self.dim * 4:
                raise ValueError("vectors of more than one dimension under one model")
            new = np.frombuffer(blobs, dtype=np.float32).reshape(len(rows), self.dim)
            self._append_tail(new, self._records(rows))
            self.last_rowid, self.last_id = int(rows[-1][0]), str(rows[-1][1])
        self.max_rowid = max(self.max_rowid, upto)

    def append_written(
        self,
        rev: int,
        before: int,
        after: int,
        added: Sequence[tuple[int, str]],
        memories: Sequence[Memory],
        vectors: Sequence[np.ndarray | None],
        hexes: Sequence[str],
    ) -> None:
        """Take the rows this process has just inserted (rowids before+1..after, `added`
        their (rowid, id hex) in rowid order; `memories` the memories given to the
        insert, `vectors` the vector stored with each and `hexes` their ids as hex)
        without reading them back. Only when the index stood exactly at `before` and no
        refresh is under way; otherwise the next refresh loads them from the table."""
        if (
            self._lock.locked()
            or self.rev is None
            or self.rev != rev
            or self.max_rowid != before
            or self.model is None
        ):
            return
        if len(added) == len(hexes) and all(a[1] == h for a, h in zip(added, hexes, strict=True)):
            taken: Sequence[tuple[Memory, np.ndarray | None]] = list(
                zip(memories, vectors, strict=True)
            )  # every memory was new, in order (the usual batch)
        else:
            by_hex = dict(zip(hexes, zip(memories, vectors, strict=True), strict=True))
            if any(i not in by_hex for _, i in added):
                return
            taken = [by_hex[i] for _, i in added]
        model = self.model
        chosen: list[tuple[int, Memory, np.ndarray]] = []
        for (rowid, _), (memory, vector) in zip(added, taken, strict=True):
            if vector is not None and memory.embedding_model == model:
                chosen.append((rowid, memory, vector))
        if chosen:
            dim = len(chosen[0][2])
            if self.dim == 0:
                self.dim = dim
                self.base = np.zeros((0, dim), dtype=np.float32)
                self.tail = np.zeros((0, dim), dtype=np.float32)
            if dim != self.dim or any(len(v) != dim for _, _, v in chosen):
                self.invalidate()
                return
            records = np.zeros(len(chosen), dtype=ROW)
            records["id"] = np.frombuffer(b"".join(m.id.bytes for _, m, _ in chosen), "V16")
            code = self.codes.code
            records["agent"] = [code(_hex(m.agent_id)) for _, m, _ in chosen]
            records["room"] = [code(_hex(m.room_id)) for _, m, _ in chosen]
            records["entity"] = [code(_hex(m.entity_id)) for _, m, _ in chosen]
            records["kind"] = [_KIND_CODE.get(str(m.kind), 127) for _, m, _ in chosen]
            # The store sets every created_at before inserting.
            records["created"] = [_epoch_us(cast(datetime, m.created_at)) for _, m, _ in chosen]
            records["unique"] = [bool(m.unique) for _, m, _ in chosen]
            records["rowid"] = [rowid for rowid, _, _ in chosen]
            stacked = np.stack([np.asarray(v, dtype=np.float32) for _, _, v in chosen])
            self._append_tail(stacked, records)
            self.last_rowid, self.last_id = chosen[-1][0], chosen[-1][1].id.hex
        self.max_rowid = after

    def _append_tail(self, vectors: np.ndarray, records: np.ndarray) -> None:
        count = len(vectors)
        start = self.tail_count
        needed = start + count
        if needed > len(self.tail):
            capacity = max(needed, 2 * len(self.tail), 1024)
            self.tail = _grow(self.tail, capacity)
            self.tail_ids = _grow(self.tail_ids, capacity)
        self.tail[start:needed] = vectors
        self.tail_ids[start:needed] = records["id"]
        self._append_columns(records)

    def _append_columns(self, records: np.ndarray) -> None:
        count = len(records)
        end = self.size + count
        if end > len(self.agents):
            capacity = max(end, 2 * len(self.agents), 1024)
            self.agents = _grow(self.agents, capacity)
            self.rooms = _grow(self.rooms, capacity)
            self.entities = _grow(self.entities, capacity)
            self.kinds = _grow(self.kinds, capacity)
            self.created = _grow(self.created, capacity)
            self.unique = _grow(self.unique, capacity)
            self.rowids = _grow(self.rowids, capacity)
        self.agents[self.size : end] = records["agent"]
        self.rooms[self.size : end] = records["room"]
        self.entities[self.size : end] = records["entity"]
        self.kinds[self.size : end] = records["kind"]
        self.created[self.size : end] = records["created"]
        self.unique[self.size : end] = records["unique"]
        self.rowids[self.size : end] = records["rowid"]
        agents = records["agent"]
        self.agents_present.update(np.flatnonzero(np.bincount(agents[agents >= 0])).tolist())
        self.size = end

    # ------------------------------------------------------------------ search
    def _mask(
        self, filters: IndexFilters, start: int = 0, rows: np.ndarray | None = None
    ) -> np.ndarray | None:
        """Boolean mask over the rows from `start` on (or over `rows`, whose room is
        already the filter's: the room is not compared again), None for "all rows"; an
        all-False mask when a filter names something the index has never seen."""
        n = self.size
        mask: np.ndarray | None = None
        at: slice | np.ndarray = slice(start, n) if rows is None else rows
        count = n - start if rows is None else len(rows)

        def both(extra: np.ndarray) -> None:
            nonlocal mask
            mask = extra if mask is None else (mask & extra)

        for value, column in (
            (filters.agent_id, self.agents),
            (filters.room_id if rows is None else None, self.rooms),
            (filters.entity_id, self.entities),
        ):
            if value is not None:
                code = self.codes.lookup(value)
                if code is None:
                    return np.zeros(count, dtype=bool)
                if column is self.agents and self.agents_present == {code}:
                    continue  # the only agent: every row (one comparison saved per search)
                both(column[at] == code)
        if filters.kinds:
            wanted = [_KIND_CODE.get(str(k), 126) for k in filters.kinds]
            both(np.isin(self.kinds[at], wanted))
        if filters.since is not None:
            both(self.created[at] >= _epoch_us(filters.since))
        if filters.until is not None:
            both(self.created[at] <= _epoch_us(filters.until))
        if filters.unique_only:
            both(self.unique[at])
        return mask

    def _scored(
        self, query: np.ndarray, filters: IndexFilters, k: int, threshold: float
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None] | None:
        """Scores of the rows the filters select, or of those of them that can be among
        the top `k` scoring at least `threshold` (a subset's pruned scan), those rows
        (None: all rows, in order), and the scores' group maxima for vector_top.top when
        the scan took them (else None); None when no row is selected."""
        subset = self._subset(filters)
        if subset is not None:
            rows, matrix, pruner = subset
            if not len(rows):
                return None
            chosen = pruner.candidates(matrix, query, k, threshold) if pruner else None
            if chosen is None:
                return vector_scan.scores(matrix, query), rows, None
            # The bound left the rest out (vector_prune). The runtime's knowledge search
            # at 100k memories (30k rows, bench data), 200 queries alternating in one
            # process: 1.46-1.63 -> 0.66 ms CPU, 0.90-1.06 -> 0.52 ms wall per search.
            if not len(chosen):
                return None
            return vector_scan.scores(matrix[chosen], query), rows[chosen], None
        in_room = self._in_room(filters)
        if in_room is not None:
            # The store's same-room dedupe (has_near, every stored message): the room's
            # rows from _RoomRows instead of a mask over all rows; same rows, same scan.
            # 100k memories, a room of ~1.4k rows, 200 searches alternating in one
            # process: 0.30 -> 0.23 ms CPU a search.
            mask = self._mask(filters, rows=in_room)
            rows = in_room if mask is None else in_room[mask]
            return (self._score_rows(rows, query), rows, None) if len(rows) else None
        mask = self._mask(filters)
        if mask is None:
            scores, maxima = self._score_all_top(query, k)
            return scores, None, maxima
        selected = int(np.count_nonzero(mask))
        if selected == 0:
            return None
        rows = np.flatnonzero(mask)
        if selected < self.size // 4:  # few rows: score only those
            return self._score_rows(rows, query), rows, None
        # Score all, keep the selected. (Not -inf for the others: argpartition over
        # thousands of equal values measured 10x slower than over the selection.)
        return self._score_all(query)[rows], rows, None

    def _in_room(self, filters: IndexFilters) -> np.ndarray | None:
        """The rows (ascending) in the filter's room, when it names one with fewer than a
        quarter of all rows (larger rooms are masked and scanned as before); empty for a
        room the index has never seen."""
        if filters.room_id is None:
            return None
        code = self.codes.lookup(filters.room_id)
        if code is None:
            return np.zeros(0, dtype=np.int64)
        if self._by_room is None:
            self._by_room = _RoomRows()
        self._by_room.catch_up(self.rooms, self.size)
        rows = self._by_room.rows(code)
        return rows if len(rows) < self.size // 4 else None

    def _subset(self, filters: IndexFilters) -> tuple[np.ndarray, np.ndarray, Pruner | None] | None:
        """The rows a recurring, unselective filter picks (the runtime's knowledge search:
        kinds fact/document/fragment/lore, every turn) with their vectors copied together,
        kept up to date as rows arrive: the search then scans those rows only instead of
        all of them (see _Subset). None for other filters, and when the copy would be
        large (past COPY_MAX_BYTES) or hardly smaller than the whole."""
        if filters.room_id or filters.entity_id or filters.since or filters.until:
            return None  # selective (scored alone) or changing from call to call
        if not filters.kinds and not filters.unique_only:
            return None
        agent = self.codes.lookup(filters.agent_id) if filters.agent_id else _NONE
        if agent is None:
            return None
        kinds = frozenset(_KIND_CODE.get(str(k), 126) for k in filters.kinds or ())
        key = (agent, kinds, filters.unique_only)
        if key in self._unsubsettable:
            return None
        found = self._subsets.get(key)
        if found is None:
            found = self._subsets[key] = _Subset(self.dim)
        if found.upto < self.size:
            mask = self._mask(filters, found.upto)
            new = np.arange(found.upto, self.size)
            if mask is not None:
                new = new[mask]
            total = found.count + len(new)
            if total * self.dim * 4 > COPY_MAX_BYTES or total > SUBSET_MAX_SHARE * self.size:
                del self._subsets[key]
                self._unsubsettable.add(key)
                return None
            found.append(new, self._gather(new))
            found.upto = self.size
        return found.rows[: found.count], found.matrix[: found.count], found.pruner

    def _gather(self, rows: np.ndarray) -> np.ndarray:
        nb = self.base_count
        split = int(np.searchsorted(rows, nb))
        if split == len(rows):
            return self.base[rows]
        if split == 0:
            return self.tail[rows - nb]
        return np.concatenate([self.base[rows[:split]], self.tail[rows[split:] - nb]])

    def _score_all(self, query: np.ndarray) -> np.ndarray:
        """Scores of every row, into a buffer reused across searches (valid until the
        next search: callers take what they need before returning)."""
        return self._score_all_top(query, 0)[0]

    def _score_all_top(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray | None]:
        """`_score_all`, and the group maxima vector_top.top needs for the top `k` of all
        rows (None when it takes the plain path), taken during the scan of the base
        (vector_scan.scores_and_maxima); grid rows reaching into the tail are maxed
        after it (a tail is at most FLUSH_ROWS rows in a process that searches)."""
        n, nb = self.size, self.base_count
        if len(self._scratch) < n:
            self._scratch = np.empty(n + n // 8 + 1024, dtype=np.float32)
        out = self._scratch[:n]
        grid = vector_top.layout(n, k)
        maxima: np.ndarray | None = None
        fused = 0  # grid rows whose maxima the scan took
        if grid is not None and nb >= grid[1]:
            fused = min(grid[0], nb // grid[1])
            maxima = vector_scan.scores_and_maxima(self.base, query, out[:nb], fused, grid[1])
        elif nb:
            vector_scan.scores(self.base, query, out[:nb])
        if n > nb:
            vector_scan.scores(self.tail[: n - nb], query, out[nb:])
        if maxima is not None and grid is not None and fused < grid[0]:
            rest = out[fused * grid[1] : grid[0] * grid[1]].reshape(-1, grid[1])
            np.maximum(maxima, rest.max(axis=0), out=maxima)
        return out, maxima

    def _score_rows(self, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
        return vector_scan.scores(self._gather(rows), query)

    def _id(self, row: int) -> uuid.UUID:
        nb = self.base_count
        raw = self.base_ids[row] if row < nb else self.tail_ids[row - nb]
        return uuid.UUID(bytes=raw.tobytes())

    def named(self, rows: Sequence[int]) -> tuple[list[str], list[int]]:
        """The memory ids (32 hex digits, as the table stores them) and table rowids of
        rows of the index. A few numpy calls for all of them, not two per row: right
        after a scan each call costs ~10 us (cold caches), and per row this took ~90 us
        for ten hits at load 5."""
        if not rows:
            return [], []
        nb = self.base_count
        at = np.asarray(rows, dtype=np.intp)
        if at.max() < nb:
            raw = self.base_ids[at].tobytes()
        else:
            raw = b"".join(self._id(row).bytes for row in rows)
        hexed = raw.hex()
        return [hexed[i : i + 32] for i in range(0, len(hexed), 32)], self.rowids[at].tolist()

    def search(
        self, query: np.ndarray, k: int, threshold: float, filters: IndexFilters
    ) -> list[tuple[uuid.UUID, float]]:
        return [
            (self._id(row), score) for row, score in self.search_rows(query, k, threshold, filters)
        ]

    def search_rows(
        self, query: np.ndarray, k: int, threshold: float, filters: IndexFilters
    ) -> list[tuple[int, float]]:
        """`search`'s hits as (row of the index, score): `_id(row)` names the memory and
        `rowids[row]` is its rowid in the table."""
        n = self.size
        if n == 0 or k <= 0:
            return []
        self._searches += 1
        if self._searches == COPY_AFTER and 0 < self.base.nbytes <= COPY_MAX_BYTES:
            self.base = np.array(self.base)  # see COPY_MAX_BYTES
        query = np.ascontiguousarray(query, dtype=np.float32)
        scored = self._scored(query, filters, k, threshold)
        if scored is None:
            return []
        scores, rows, maxima = scored
        # Exact top k without partitioning every score (vector_top): 0.2-0.8 ms -> ~0.04
        # ms at 100k rows.
        top = vector_top.top(scores, k, maxima)
        hits = []
        for position, score in zip(top.tolist(), scores[top].tolist(), strict=True):
            if score < threshold or score == -np.inf:
                break
            hits.append((int(rows[position]) if rows is not None else position, score))
        return hits


class _Subset:
    """One filter's rows (indices into the index, ascending) and a copy of their vectors,
    contiguous, grown as rows arrive. The runtime searches knowledge (facts, documents,
    fragments, lore) on every turn, a minority of the rows beside the conversation:
    scanning only those reads a fraction of the matrix, and the mask (np.isin over every
    row's kind) is computed for new rows only."""

    def __init__(self, dim: int) -> None:
        self.rows = np.zeros(0, dtype=np.int64)
        self.matrix = np.zeros((0, dim), dtype=np.float32)
        self.count = 0
        self.upto = 0  # rows of the index looked at so far
        self.pruner: Pruner | None = None  # past PRUNE_MIN_ROWS rows (vector_prune)
        self._fitted_at = 0

    def append(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        end = self.count + len(rows)
        if end > len(self.rows):
            capacity = max(end, 2 * len(self.rows), 1024)
            self.rows = _grow(self.rows, capacity)
            self.matrix = _grow(self.matrix, capacity)
        self.rows[self.count : end] = rows
        self.matrix[self.count : end] = vectors
        self.count = end
        if self.pruner is not None and end < 2 * self._fitted_at:
            self.pruner.append(vectors)
        elif Pruner.usable(self.matrix.shape[1], end):  # (re)fit the axes on all rows
            self.pruner, self._fitted_at = Pruner.fitted(self.matrix[:end]), end


class _RoomRows:
    """Each room's rows (indices into the index, ascending), kept up to date as rows
    arrive, so a room-filtered search (the store's same-room dedupe on every stored
    message) reads that room's rows instead of comparing every row's room: O(room) per
    search, not O(all rows). One int64 per row in all, like the index's own columns."""

    def __init__(self) -> None:
        self.upto = 0  # rows of the index taken so far
        self._rows: dict[int, np.ndarray] = {}
        self._counts: dict[int, int] = {}

    def catch_up(self, rooms: np.ndarray, size: int) -> None:
        if self.upto >= size:
            return
        new = rooms[self.upto : size]
        if len(new) <= 16:  # a turn's one or two rows: no sorting
            for offset, code in enumerate(new.tolist()):
                self._add(code, np.array([self.upto + offset], dtype=np.int64))
        else:
            order = np.argsort(new, kind="stable")
            codes, starts = np.unique(new[order], return_index=True)
            for code, group in zip(codes.tolist(), np.split(order, starts[1:]), strict=True):
                self._add(code, group.astype(np.int64) + self.upto)
        self.upto = size

    def _add(self, code: int, rows: np.ndarray) -> None:
        held = self._rows.get(code)
        count = self._counts.get(code, 0)
        end = count + len(rows)
        if held is None or end > len(held):
            empty = np.zeros(0, dtype=np.int64)
            held = self._rows[code] = _grow(
                empty if held is None else held, max(end, 2 * count, 16)
            )
        held[count:end] = rows
        self._counts[code] = end

    def rows(self, code: int) -> np.ndarray:
        held = self._rows.get(code)
        return held[: self._counts[code]] if held is not None else np.zeros(0, dtype=np.int64)


def _hex(value: uuid.UUID | None) -> str | None:
    return value.hex if value is not None else None


def _grow(array: np.ndarray, capacity: int) -> np.ndarray:
    shape = (capacity, *array.shape[1:])
    bigger = np.zeros(shape, dtype=array.dtype)
    bigger[: len(array)] = array
    return bigger
