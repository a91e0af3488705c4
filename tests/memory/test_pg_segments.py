"""PostgreSQL's two HNSW indexes (main + bulk segment) and MemoryStore.bulk_load's plans,
against a real PostgreSQL + pgvector: which rows land where, which index is rebuilt, and
that searches find every row before, during and after a load."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from alembic import command
from sqlalchemy import text

from carrier_cli.memory.migrate import alembic_config, schema_state, upgrade
from carrier_cli.memory.postgres import bulk as bulk_module
from carrier_cli.memory.schema import BULK_VECTOR_INDEX, MAIN_VECTOR_INDEX
from carrier_cli.memory.store import MemoryStore
from carrier_cli.memory.types import Memory, MemoryKind

pytestmark = pytest.mark.postgres

DIM = 256  # the default (local) embedder's dimension


@pytest.fixture(autouse=True)
def small_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test-sized loads count as bulk loads (the real threshold is 1,000 rows)."""
    monkeypatch.setattr(bulk_module, "BULK_MIN_ROWS", 10)


def _vectors(n: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _memories(agent: uuid.UUID, vectors: np.ndarray, label: str, start: int = 0) -> list[Memory]:
    return [
        Memory(
            agent_id=agent,
            kind=MemoryKind.FRAGMENT,
            content={"text": f"{label} {i}"},
            embedding=vector.tolist(),
        )
        for i, vector in enumerate(vectors, start=start)
    ]


async def _load(
    store: MemoryStore, agent: uuid.UUID, vectors: np.ndarray, label: str
) -> list[Memory]:
    """What ingest and import do: one bulk load of memories with their vectors."""
    memories = _memories(agent, vectors, label)
    async with store.bulk_load(rows=len(memories)):
        await store.add_many(memories, dedupe=False)
    return memories


async def _segments(store: MemoryStore) -> dict[str | None, int]:
    async with store.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT split_part(content->>'text', ' ', 1), vector_segment, count(*) "
                    "FROM memories GROUP BY 1, 2"
                )
            )
        ).all()
    return {f"{r[0]}:{r[1]}": int(r[2]) for r in rows}


async def _index_oids(store: MemoryStore) -> tuple[int | None, int | None]:
    async with store.engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT to_regclass(:main)::oid, to_regclass(:bulk)::oid"),
                {"main": MAIN_VECTOR_INDEX, "bulk": BULK_VECTOR_INDEX},
            )
        ).one()
    return row[0], row[1]


async def _index_predicates(store: MemoryStore) -> dict[str, str]:
    async with store.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT indexname, indexdef FROM pg_indexes "
                    "WHERE tablename = 'memories' AND indexdef LIKE '%hnsw%'"
                )
            )
        ).all()
    return {str(r[0]): str(r[1]).partition(" WHERE ")[2] for r in rows}


async def _assert_finds(store: MemoryStore, vectors: np.ndarray, label: str) -> None:
    """Each probe vector's own memory comes back first, with score ~1."""
    for i in (0, len(vectors) // 2, len(vectors) - 1):
        hits = await store.search(vectors[i], k=3)
        assert hits, f"no hit for {label} {i}"
        assert hits[0].memory.text == f"{label} {i}"
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)


async def test_first_load_into_an_empty_table_builds_the_main_index_once(
    pg_store: MemoryStore,
) -> None:
    agent = await pg_store.ensure_agent("tester")
    base = _vectors(200, 1)
    async with pg_store.bulk_load(rows=len(base)):
        await pg_store.add_many(_memories(agent, base, "base"), dedupe=False)
        # Inside the load the indexes are gone and searches are exact, but complete.
        assert await _index_oids(pg_store) == (None, None)
        await _assert_finds(pg_store, base, "base")
    assert await _segments(pg_store) == {"base:None": 200}
    predicates = await _index_predicates(pg_store)
    assert predicates == {
        MAIN_VECTOR_INDEX: "(vector_segment IS NULL)",
        BULK_VECTOR_INDEX: "(vector_segment = 1)",
    }
    await _assert_finds(pg_store, base, "base")


async def test_a_load_into_a_big_table_rebuilds_only_the_bulk_segment(
    postgres_url: str, pg_store: MemoryStore
) -> None:
    agent = await pg_store.ensure_agent("tester")
    base, extra = _vectors(400, 1), _vectors(60, 2)
    await _load(pg_store, agent, base, "base")
    main_before, bulk_before = await _index_oids(pg_store)

    other = await MemoryStore.open(postgres_url)  # another process, writing meanwhile
    try:
        live = _vectors(3, 3)
        async with pg_store.bulk_load(rows=len(extra)):
            await pg_store.add_many(_memories(agent, extra[:30], "extra"), dedupe=False)
            await other.add_many(_memories(agent, live, "live"), dedupe=False)
            await pg_store.add_many(_memories(agent, extra[30:], "extra", start=30), dedupe=False)
            await _assert_finds(other, extra[:30], "extra")  # no index yet: exact
        main_after, bulk_after = await _index_oids(pg_store)
        assert main_after == main_before  # the 400-row main index was not touched
        assert bulk_after is not None and bulk_after != bulk_before
        assert await _segments(pg_store) == {"base:None": 400, "extra:1": 60, "live:None": 3}
        for probe_store in (pg_store, other):
            await _assert_finds(probe_store, base, "base")
            await _assert_finds(probe_store, extra, "extra")
            await _assert_finds(probe_store, live, "live")
        # Filters apply to both indexes alike.
        hits = await pg_store.search(extra[5], k=5, kinds=[MemoryKind.FACT])
        assert hits == []
    finally:
        await other.close()


async def test_plans_follow_the_sizes(pg_store: MemoryStore) -> None:
    agent = await pg_store.ensure_agent("tester")
    base = _vectors(400, 1)
    stored = await _load(pg_store, agent, base, "base")
    oids = await _index_oids(pg_store)

    # Below BULK_MIN_ROWS: row by row into the main index, no DDL.
    async with pg_store.bulk_load(rows=5):
        await pg_store.add_many(_memories(agent, _vectors(5, 2), "small"), dedupe=False)
    assert await _index_oids(pg_store) == oids
    # A load that adds nothing (an import run again) rebuilds nothing.
    async with pg_store.bulk_load(rows=400):
        await pg_store.add_many(stored, dedupe=False)
    assert await _index_oids(pg_store) == oids
    # A segment that would outgrow the main index: everything is merged and rebuilt.
    big = _vectors(500, 4)
    await _load(pg_store, agent, big, "big")
    assert await _segments(pg_store) == {"base:None": 400, "small:None": 5, "big:None": 500}
    main_after, _ = await _index_oids(pg_store)
    assert main_after not in (None, oids[0])
    await _assert_finds(pg_store, big, "big")


async def test_decisions_by_cost() -> None:
    class Counts:
        def __init__(self, main: int, segment: int) -> None:
            self.row = (main, segment)

        async def execute(self, *_: object) -> Counts:
            return self

        def one(self) -> tuple[int, int]:
            return self.row

    plan = bulk_module.bulk_plan
    assert await plan(Counts(0, 0), 10_000) == "rebuild"  # type: ignore[arg-type]
    assert await plan(Counts(100_000, 0), 10_000) == "segment"  # type: ignore[arg-type]
    assert await plan(Counts(100_000, 20_000), 10_000) == "segment"  # type: ignore[arg-type]
    assert await plan(Counts(5_000, 0), 5_000) == "segment"  # type: ignore[arg-type]
    # A big segment and a small load: rebuilding 40k rows costs more than 2k row by row.
    assert await plan(Counts(100_000, 38_000), 2_000) == "rowwise"  # type: ignore[arg-type]
    # The segment would outgrow the main index: merge, unless row by row is cheaper.
    assert await plan(Counts(100_000, 90_000), 40_000) == "rebuild"  # type: ignore[arg-type]
    assert await plan(Counts(100_000, 95_000), 10_000) == "rowwise"  # type: ignore[arg-type]
    assert await plan(Counts(100_000, 0), None) == "rebuild"  # type: ignore[arg-type]


async def test_an_index_a_killed_load_left_missing_is_rebuilt_by_the_next_writer(
    postgres_url: str, pg_store: MemoryStore
) -> None:
    agent = await pg_store.ensure_agent("tester")
    base, extra = _vectors(400, 1), _vectors(40, 2)
    await _load(pg_store, agent, base, "base")
    await _load(pg_store, agent, extra, "extra")
    async with pg_store.engine.begin() as conn:  # what a load killed before its end leaves
        await conn.execute(text(f"DROP INDEX {BULK_VECTOR_INDEX}"))
    await pg_store.close()

    restarted = await MemoryStore.open(postgres_url)
    try:
        await _assert_finds(restarted, extra, "extra")  # exact until rebuilt
        await restarted.add(Memory(agent_id=agent, kind=MemoryKind.FACT, content={"text": "x"}))
        assert None not in await _index_oids(restarted)
        await _assert_finds(restarted, extra, "extra")
    finally:
        await restarted.close()


async def test_reembed_merges_the_segment_into_the_main_index(pg_store: MemoryStore) -> None:
    agent = await pg_store.ensure_agent("tester")
    facts = [f"note number {i} about the harbour and its boats" for i in range(40)]
    base = [Memory(agent_id=agent, kind=MemoryKind.FACT, content={"text": t}) for t in facts]
    await pg_store.add_many(base, dedupe=False)
    async with pg_store.engine.begin() as conn:  # pretend half of them came in a segment
        await conn.execute(text("UPDATE memories SET vector_segment = 1 WHERE random() < 0.5"))
    assert await pg_store.reembed() == 40
    async with pg_store.engine.connect() as conn:
        segmented = (
            await conn.execute(text("SELECT count(*) FROM memories WHERE vector_segment = 1"))
        ).scalar()
    assert segmented == 0
    assert None not in await _index_oids(pg_store)
    hits = await pg_store.search("note number 7 about the harbour and its boats", k=1)
    assert hits[0].memory.text == facts[7]


async def test_upgrade_from_a_single_index_keeps_every_vector_searchable(
    postgres_url: str, pg_store: MemoryStore
) -> None:
    agent = await pg_store.ensure_agent("tester")
    base = _vectors(50, 1)
    await pg_store.add_many(_memories(agent, base, "base"), dedupe=False)
    await pg_store.close()

    def down(connection: object) -> None:
        command.downgrade(alembic_config(connection), "0101_instagram")  # type: ignore[arg-type]

    old = await MemoryStore.open(postgres_url)  # at head still: open, then step back
    try:
        async with old.engine.begin() as conn:
            await conn.run_sync(down)
        predicates = await _index_predicates(old)
        assert predicates == {MAIN_VECTOR_INDEX: ""}  # the one, whole-table index of 0101
        assert (await schema_state(old.engine)).status == "behind"
        await upgrade(old.engine)
        assert (await schema_state(old.engine)).status == "current"
        assert await _index_predicates(old) == {
            MAIN_VECTOR_INDEX: "(vector_segment IS NULL)",
            BULK_VECTOR_INDEX: "(vector_segment = 1)",  # empty until a load fills it
        }
    finally:
        await old.close()
    reopened = await MemoryStore.open(postgres_url)
    try:
        await _assert_finds(reopened, base, "base")
    finally:
        await reopened.close()
