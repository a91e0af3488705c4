"""Exact search stays exact (issue 15): Carrier's top-k equals numpy's on random vectors,
on both backends, with and without filters, across the SQLite index's mapped file and
in-memory tail."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from carrier_cli.memory.store import MemoryStore
from carrier_cli.memory.types import Memory, MemoryKind

DIM = 256  # the default (local) model's dimension: stored vectors are taken as its


def unit_vectors(n: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


async def add_random(
    store: MemoryStore, agent: uuid.UUID, vectors: np.ndarray, *, rooms: list[uuid.UUID]
) -> list[Memory]:
    memories = [
        Memory(
            agent_id=agent,
            kind=MemoryKind.MESSAGE if i % 3 else MemoryKind.FACT,
            room_id=rooms[i % len(rooms)] if i % 3 else None,
            content={"text": f"random memory {uuid.uuid4().hex}"},
            embedding=vector,
        )
        for i, vector in enumerate(vectors)
    ]
    await store.add_many(memories, dedupe=False)
    return memories


def numpy_top(memories: list[Memory], query: np.ndarray, k: int) -> list[uuid.UUID]:
    matrix = np.stack([np.asarray(m.embedding, dtype=np.float32) for m in memories])
    scores = matrix @ query
    return [memories[i].id for i in np.argsort(-scores, kind="stable")[:k]]


async def assert_exact(
    store: MemoryStore, agent: uuid.UUID, memories: list[Memory], queries: np.ndarray
) -> None:
    room = next(m.room_id for m in memories if m.room_id is not None)
    for query in queries:
        hits = await store.search(query, agent_id=agent, k=10, threshold=-1.0)
        assert [h.memory.id for h in hits] == numpy_top(memories, query, 10)
        facts = [m for m in memories if m.kind == MemoryKind.FACT]
        hits = await store.search(
            query, agent_id=agent, k=5, threshold=-1.0, kinds=[MemoryKind.FACT]
        )
        assert [h.memory.id for h in hits] == numpy_top(facts, query, 5)
        in_room = [m for m in memories if m.room_id == room]  # a few rows: scored alone
        hits = await store.search(query, agent_id=agent, k=5, threshold=-1.0, room_id=room)
        assert [h.memory.id for h in hits] == numpy_top(in_room, query, 5)


async def test_top_k_equals_numpy_on_random_vectors(store: MemoryStore) -> None:
    agent = await store.ensure_agent("exact")
    other = await store.ensure_agent("someone else")
    rooms = [(await store.ensure_room(agent, "discord", f"r{i}")).id for i in range(7)]
    memories = await add_random(store, agent, unit_vectors(300, 1), rooms=rooms)
    await add_random(store, other, unit_vectors(50, 2), rooms=rooms[:1])  # filtered out
    await assert_exact(store, agent, memories, unit_vectors(8, 3))
    # more rows after the first search (SQLite: the in-memory tail beside the file)
    memories += await add_random(store, agent, unit_vectors(100, 4), rooms=rooms)
    await assert_exact(store, agent, memories, unit_vectors(8, 5))


@pytest.mark.parametrize("split", [False, True])
async def test_top_k_by_group_maxima_equals_numpy(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch, split: bool
) -> None:
    """The SQLite index takes its top k from the score groups' maxima (vector_top) past
    8k rows, taken during the scan (vector_scan.scores_and_maxima): forced here at 300
    rows, with a duplicated best vector (ties at the k-th go to the lowest rows, the
    order numpy_top's stable sort gives; PostgreSQL orders equal scores its own way);
    `split`: the scan on two threads in blocks of a few grid rows, as at 100k rows."""
    from carrier_cli.memory.sqlite import vector_scan, vector_top

    monkeypatch.setattr(vector_top, "MIN_SCORES", 0)
    monkeypatch.setattr(vector_top, "GROUPS_PER_K", 1)
    if split:
        monkeypatch.setattr(vector_scan, "SPLIT_ROWS", 0)
        monkeypatch.setattr(vector_scan, "SPLIT_VALUES", 0)
        monkeypatch.setattr(vector_scan, "BLOCK_SCORES", 40)
    async with await MemoryStore.open(f"sqlite:///{tmp_path}/m.db") as store:
        await _exact_with_ties(store)


async def _exact_with_ties(store: MemoryStore) -> None:
    agent = await store.ensure_agent("exact")
    rooms = [(await store.ensure_room(agent, "discord", f"r{i}")).id for i in range(3)]
    vectors = unit_vectors(300, 12)
    vectors[[7, 150, 299]] = vectors[40]  # four equal vectors
    memories = await add_random(store, agent, vectors, rooms=rooms)
    queries = np.concatenate([unit_vectors(6, 13), vectors[40:41]])
    await assert_exact(store, agent, memories, queries)


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("flush_rows", [1, 10_000])
async def test_top_k_equals_numpy_across_file_and_tail(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch, flush_rows: int, grouped: bool
) -> None:
    """SQLite: a new process maps the file and reads the rows since into the tail; with
    FLUSH_ROWS=1 every refresh appends the tail to the file, with 10k it stays a tail.
    `grouped`: the top k by group maxima (vector_top), forced at these few rows, whose
    grid then spans the file and the tail (the scan takes the file's maxima, the grid
    rows reaching into the tail are maxed after)."""
    from carrier_cli.memory.sqlite import vector_index, vector_top

    monkeypatch.setattr(vector_index, "FLUSH_ROWS", flush_rows)
    if grouped:
        monkeypatch.setattr(vector_top, "MIN_SCORES", 0)
        monkeypatch.setattr(vector_top, "GROUPS_PER_K", 1)
    url = f"sqlite:///{tmp_path}/m.db"
    async with await MemoryStore.open(url) as first:
        agent = await first.ensure_agent("exact")
        rooms = [(await first.ensure_room(agent, "discord", f"r{i}")).id for i in range(5)]
        memories = await add_random(first, agent, unit_vectors(200, 6), rooms=rooms)
        await assert_exact(first, agent, memories, unit_vectors(3, 7))  # writes the file
        memories += await add_random(first, agent, unit_vectors(60, 8), rooms=rooms)
        await assert_exact(first, agent, memories, unit_vectors(3, 9))
    async with await MemoryStore.open(url) as second:  # maps the file
        memories += await add_random(second, agent, unit_vectors(40, 10), rooms=rooms)
        await assert_exact(second, agent, memories, unit_vectors(4, 11))
        index = second._backend.index  # type: ignore[attr-defined]
        assert index.base_count > 0
        assert (index.tail_count == 0) == (flush_rows == 1)
