"""Exact cosine search for SQLite: one float32 matrix per embedding model, held in memory.

SQLite in most Pythons cannot load extensions (so no sqlite-vec); a matrix-vector product
over 100k x 256 unit vectors takes a few milliseconds, which is faster than any index
would need to be. The matrix is filled once and then kept in step cheaply: new rows are
appended by rowid, and triggers bump `store_state.memories_rev` on every update or delete,
which forces a full reload (rare: deletes, re-embedding, imports over existing rows).
Filters are evaluated on small integer code arrays, so they cost little more than the scan.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from carrier_cli.memory.rows import IndexFilters
from carrier_cli.memory.sqlite.engine import InlineConnection

_KINDS = ("message", "fact", "document", "fragment", "lore")
_KIND_CODE = {k: i for i, k in enumerate(_KINDS)}
_NONE = -1
# Where the index stands against the table: the delete/update revision and the last rowid.
INDEX_STATE_SQL = (
    "SELECT (SELECT value FROM store_state WHERE key = 'memories_rev'), "
    "(SELECT max(rowid) FROM memories)"
)


def _epoch_us(moment: datetime) -> int:
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return int((moment - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1_000_000)


class _Codes:
    """Interns uuid hex strings to small ints so filters are integer comparisons."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}

    def code(self, value: str | None) -> int:
        if value is None:
            return _NONE
        found = self.codes.get(value)
        if found is None:
            found = self.codes[value] = len(self.codes)
        return found

    def lookup(self, value: uuid.UUID) -> int | None:
        return self.codes.get(value.hex)


class SqliteVectorIndex:
    def __init__(self) -> None:
        self.model: str | None = None
        self.rev: int | None = None
        self.max_rowid = 0
        self.size = 0
        self.dim = 0
        self._lock = asyncio.Lock()
        self._clear()

    def _clear(self) -> None:
        self.size = 0
        self.max_rowid = 0
        self.matrix = np.zeros((0, self.dim), dtype=np.float32)
        self.ids: list[str] = []
        self.agents = np.zeros(0, dtype=np.int32)
        self.rooms = np.zeros(0, dtype=np.int32)
        self.entities = np.zeros(0, dtype=np.int32)
        self.kinds = np.zeros(0, dtype=np.int8)
        self.created = np.zeros(0, dtype=np.int64)
        self.unique = np.zeros(0, dtype=bool)
        self.agent_codes = _Codes()
        self.room_codes = _Codes()
        self.entity_codes = _Codes()

    def invalidate(self) -> None:
        self.rev = None

    async def refresh(self, conn: AsyncConnection | InlineConnection, model: str) -> None:
        # One refresh at a time: the runtime searches and dedupes concurrently, and two
        # overlapping loads of the same new rows would append them twice.
        async with self._lock:
            await self._refresh(conn, model)

    async def _refresh(self, conn: AsyncConnection | InlineConnection, model: str) -> None:
        row = (await conn.execute(text(INDEX_STATE_SQL))).one()
        rev, max_rowid = int(row[0] or 0), int(row[1] or 0)
        if rev != self.rev or model != self.model or max_rowid < self.max_rowid:
            self.model, self.rev = model, rev
            self.dim = 0
            self._clear()
        if max_rowid > self.max_rowid:
            await self._load(conn, self.max_rowid, max_rowid)

    async def _load(self, conn: AsyncConnection | InlineConnection, after: int, upto: int) -> None:
        result = await conn.execute(
            text(
                'SELECT id, agent_id, room_id, entity_id, kind, created_at, "unique", embedding '
                "FROM memories WHERE rowid > :after AND rowid <= :upto "
                "AND embedding_model = :model AND embedding IS NOT NULL ORDER BY rowid"
            ),
            {"after": after, "upto": upto, "model": self.model},
        )
        rows = result.all()
        self.max_rowid = upto
        if not rows:
            return
        blobs = b"".join(r[7] for r in rows)
        dim = len(rows[0][7]) // 4
        if self.dim == 0:
            self.dim = dim
            self.matrix = np.zeros((0, dim), dtype=np.float32)
        new = np.frombuffer(blobs, dtype=np.float32).reshape(len(rows), dim)
        self._append(
            new,
            ids=[r[0] for r in rows],
            agents=[self.agent_codes.code(r[1]) for r in rows],
            rooms=[self.room_codes.code(r[2]) for r in rows],
            entities=[self.entity_codes.code(r[3]) for r in rows],
            kinds=[_KIND_CODE.get(r[4], 127) for r in rows],
            created=np.array([r[5] for r in rows], dtype="datetime64[us]").astype(np.int64),
            unique=[bool(r[6]) for r in rows],
        )

    def append_written(
        self,
        rev: int,
        before: int,
        after: int,
        ids: Sequence[str],
        rows: dict[str, dict[str, Any]],
    ) -> None:
        """Take the rows this process has just inserted (rowids before+1..after, `ids` in
        rowid order, `rows` the inserted values by id hex) without reading them back. Only
        when the index stood exactly at `before` and no refresh is under way; otherwise
        the next refresh loads them from the table as usual."""
        if (
            self._lock.locked()
            or self.rev is None
            or self.rev != rev
            or self.max_rowid != before
            or self.model is None
            or any(i not in rows for i in ids)
        ):
            return
        chosen = [
            rows[i]
            for i in ids
            if rows[i]["embedding"] is not None and rows[i]["embedding_model"] == self.model
        ]
        if chosen:
            dim = len(chosen[0]["embedding"])
            if self.dim == 0:
                self.dim = dim
                self.matrix = np.zeros((0, dim), dtype=np.float32)
            if dim != self.dim or any(len(r["embedding"]) != dim for r in chosen):
                self.invalidate()
                return
            self._append(
                np.stack([np.asarray(r["embedding"], dtype=np.float32) for r in chosen]),
                ids=[r["id"].hex for r in chosen],
                agents=[self.agent_codes.code(_hex(r["agent_id"])) for r in chosen],
                rooms=[self.room_codes.code(_hex(r["room_id"])) for r in chosen],
                entities=[self.entity_codes.code(_hex(r["entity_id"])) for r in chosen],
                kinds=[_KIND_CODE.get(r["kind"], 127) for r in chosen],
                created=np.array([_epoch_us(r["created_at"]) for r in chosen], dtype=np.int64),
                unique=[bool(r["unique"]) for r in chosen],
            )
        self.max_rowid = after

    def _append(self, new: np.ndarray, **columns: Any) -> None:
        count = len(new)
        needed = self.size + count
        if needed > len(self.matrix):
            capacity = max(needed, 2 * len(self.matrix), 1024)
            self.matrix = _grow(self.matrix, capacity)
            self.agents = _grow(self.agents, capacity)
            self.rooms = _grow(self.rooms, capacity)
            self.entities = _grow(self.entities, capacity)
            self.kinds = _grow(self.kinds, capacity)
            self.created = _grow(self.created, capacity)
            self.unique = _grow(self.unique, capacity)
        end = self.size + count
        self.matrix[self.size : end] = new
        self.agents[self.size : end] = columns["agents"]
        self.rooms[self.size : end] = columns["rooms"]
        self.entities[self.size : end] = columns["entities"]
        self.kinds[self.size : end] = columns["kinds"]
        self.created[self.size : end] = columns["created"]
        self.unique[self.size : end] = columns["unique"]
        self.ids.extend(columns["ids"])
        self.size = end

    def _mask(self, filters: IndexFilters) -> np.ndarray | None:
        """Boolean mask over the rows, None for "all rows"; an all-False mask when a filter
        names something the index has never seen."""
        n = self.size
        mask: np.ndarray | None = None

        def both(extra: np.ndarray) -> None:
            nonlocal mask
            mask = extra if mask is None else (mask & extra)

        for value, codes, column in (
            (filters.agent_id, self.agent_codes, self.agents),
            (filters.room_id, self.room_codes, self.rooms),
            (filters.entity_id, self.entity_codes, self.entities),
        ):
            if value is not None:
                code = codes.lookup(value)
                if code is None:
                    return np.zeros(n, dtype=bool)
                both(column[:n] == code)
        if filters.kinds:
            wanted = [_KIND_CODE.get(str(k), 126) for k in filters.kinds]
            both(np.isin(self.kinds[:n], wanted))
        if filters.since is not None:
            both(self.created[:n] >= _epoch_us(filters.since))
        if filters.until is not None:
            both(self.created[:n] <= _epoch_us(filters.until))
        if filters.unique_only:
            both(self.unique[:n])
        return mask

    def search(
        self, query: np.ndarray, k: int, threshold: float, filters: IndexFilters
    ) -> list[tuple[uuid.UUID, float]]:
        n = self.size
        if n == 0 or k <= 0:
            return []
        query = np.ascontiguousarray(query, dtype=np.float32)
        mask = self._mask(filters)
        rows: np.ndarray | None = None
        if mask is None:
            scores = _scores(self.matrix[:n], query)
        else:
            selected = int(np.count_nonzero(mask))
            if selected == 0:
                return []
            rows = np.flatnonzero(mask)
            if selected < n // 4:  # few rows: score only those
                scores = _scores(self.matrix[rows], query)
            else:
                # Score all, keep the selected. (Not -inf for the others: argpartition over
                # thousands of equal values measured 10x slower than over the selection.)
                scores = _scores(self.matrix[:n], query)[rows]
        count = len(scores)
        top = np.argpartition(scores, count - k)[count - k :] if k < count else np.arange(count)
        top = top[np.argsort(-scores[top], kind="stable")]
        hits = []
        for position in top:
            score = float(scores[position])
            if score < threshold or score == -np.inf:
                break
            row = int(rows[position]) if rows is not None else int(position)
            hits.append((uuid.UUID(hex=self.ids[row]), score))
        return hits


def _hex(value: uuid.UUID | None) -> str | None:
    return value.hex if value is not None else None


def _scores(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Dot products with unit vectors = cosine similarity. einsum rather than `@`: for
    one query it streams the matrix once without BLAS threading, which measured 2x faster
    on a busy machine and no slower on an idle one."""
    return np.einsum("ij,j->i", matrix, query)


def _grow(array: np.ndarray, capacity: int) -> np.ndarray:
    shape = (capacity, *array.shape[1:])
    bigger = np.zeros(shape, dtype=array.dtype)
    bigger[: len(array)] = array
    return bigger
