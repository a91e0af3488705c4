"""Review of the pruned knowledge scan (a84e314): its hits equal the unpruned scan's
(the same filter with `since` set far in the past, which takes the masked path), for
ties at the k-th score, k past the subset, a threshold above every score, and after
forget/delete and unique-flag updates."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import numpy as np
import pytest

from carrier_cli.memory.sqlite import vector_index, vector_prune
from carrier_cli.memory.store import MemoryStore
from carrier_cli.memory.types import Memory, MemoryKind

DIM = 256
EPOCH = datetime(1970, 1, 2, tzinfo=UTC)


def clustered(n: int, seed: int, rank: int = 24, noise: float = 2.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(0).standard_normal((rank, DIM))
    vectors = rng.standard_normal((n, rank)) @ basis + noise * rng.standard_normal((n, DIM))
    vectors = vectors.astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


async def both(
    store: MemoryStore, agent: uuid.UUID, query: np.ndarray, k: int, threshold: float
) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """The pruned search's hit ids and the unpruned (masked) search's."""
    kinds = [MemoryKind.FACT]
    query = query.astype(np.float32)  # the store takes float32 arrays (Sequence[float] typed)
    pruned = await store.search(
        query,  # type: ignore[arg-type]
        agent_id=agent,
        k=k,
        threshold=threshold,
        kinds=kinds,
    )
    plain = await store.search(
        query,  # type: ignore[arg-type]
        agent_id=agent,
        k=k,
        threshold=threshold,
        kinds=kinds,
        since=EPOCH,
    )
    return [h.memory.id for h in pruned], [h.memory.id for h in plain]


async def filler(store: MemoryStore, agent: uuid.UUID, n: int) -> None:
    """As many messages as facts, so the facts are a subset (at most 60% of the rows)."""
    room = (await store.ensure_room(agent, "discord", "r")).id
    messages = [
        Memory(
            agent_id=agent,
            kind=MemoryKind.MESSAGE,
            room_id=room,
            content={"text": f"m {i}"},
            embedding=v,
        )
        for i, v in enumerate(clustered(n, 99))
    ]
    await store.add_many(messages, dedupe=False)


def pruning(store: MemoryStore) -> vector_prune.Pruner:
    index: vector_index.SqliteVectorIndex = store._backend.index  # type: ignore[attr-defined]
    (subset,) = index._subsets.values()
    assert subset.pruner is not None
    return subset.pruner


@pytest.fixture
def small_prune(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vector_prune, "PRUNE_MIN_ROWS", 200)


async def test_ties_at_the_kth_score_give_the_unpruned_hits(
    tmp_path: object, small_prune: None
) -> None:
    """Identical vectors (the same fact stored twice with dedupe off, a document fragment
    repeated): with k cutting through the tied group the unpruned scan's choice and
    order among them must be kept."""
    async with await MemoryStore.open(f"sqlite:///{tmp_path}/m.db") as store:
        agent = await store.ensure_agent("ties")
        vectors = clustered(600, 3)
        vectors[::50] = vectors[7]  # 12 copies of one vector, spread through the rows
        facts = [
            Memory(agent_id=agent, kind=MemoryKind.FACT, content={"text": f"f {i}"}, embedding=v)
            for i, v in enumerate(vectors)
        ]
        await store.add_many(facts, dedupe=False)
        await filler(store, agent, len(facts))
        index: vector_index.SqliteVectorIndex = store._backend.index  # type: ignore[attr-defined]
        for k in (1, 3, 5, 11):
            pruned, plain = await both(store, agent, vectors[7], k, -1.0)
            assert pruned == plain, k
        (subset,) = index._subsets.values()
        assert subset.pruner is not None and subset.pruner.misses == 0


async def test_edges_k_and_threshold(tmp_path: object, small_prune: None) -> None:
    async with await MemoryStore.open(f"sqlite:///{tmp_path}/m.db") as store:
        agent = await store.ensure_agent("edges")
        vectors = clustered(400, 4)
        facts = [
            Memory(agent_id=agent, kind=MemoryKind.FACT, content={"text": f"f {i}"}, embedding=v)
            for i, v in enumerate(vectors)
        ]
        await store.add_many(facts, dedupe=False)
        await filler(store, agent, len(facts))
        for query in clustered(5, 5):
            for k, threshold in ((1000, 0.3), (400, 0.5), (399, 0.2), (1, 0.999), (5, 1.5)):
                pruned, plain = await both(store, agent, query, k, threshold)
                assert pruned == plain, (k, threshold)
            assert await store.search(query, agent_id=agent, k=0, kinds=[MemoryKind.FACT]) == []
        pruning(store)


async def test_after_forget_and_unique_change(tmp_path: object, small_prune: None) -> None:
    async with await MemoryStore.open(f"sqlite:///{tmp_path}/m.db") as store:
        agent = await store.ensure_agent("forget")
        vectors = clustered(500, 6)
        facts = [
            Memory(agent_id=agent, kind=MemoryKind.FACT, content={"text": f"f {i}"}, embedding=v)
            for i, v in enumerate(vectors)
        ]
        await store.add_many(facts, dedupe=False)
        await filler(store, agent, len(facts))
        queries = clustered(4, 7)
        first = [await both(store, agent, q, 5, -1.0) for q in queries]
        assert all(p == u for p, u in first)
        pruning(store)
        gone = {i for p, _ in first for i in p[:2]}
        assert await store.delete(sorted(gone)) == len(gone)
        for query in queries:
            pruned, plain = await both(store, agent, query, 5, -1.0)
            assert pruned == plain and not gone & set(pruned)
        assert pruning(store).count == 500 - len(gone)


async def test_two_agents_unique_only_and_a_reopened_file(
    tmp_path: object, small_prune: None
) -> None:
    """Each agent's subset prunes its own rows; `unique_only` (its own subset key) too;
    and a store opened again (the vector file mapped, as a new process does) agrees."""
    url = f"sqlite:///{tmp_path}/m.db"
    async with await MemoryStore.open(url) as store:
        agents = [await store.ensure_agent(name) for name in ("a", "b")]
        for n, agent in enumerate(agents):
            vectors = clustered(3000, 20 + n)
            facts = [
                Memory(
                    agent_id=agent,
                    kind=MemoryKind.FACT,
                    content={"text": f"f {n} {i}"},
                    embedding=v,
                    unique=i % 3 != 0,
                )
                for i, v in enumerate(vectors)
            ]
            await store.add_many(facts, dedupe=False)
            await filler(store, agent, len(facts))
    for _ in range(2):
        async with await MemoryStore.open(url) as store:
            for agent in agents:
                for query in clustered(3, 30):
                    pruned, plain = await both(store, agent, query, 5, 0.0)
                    assert pruned == plain
                    q = query.astype(np.float32)
                    one = await store.search(q, agent_id=agent, k=4, unique_only=True)  # type: ignore[arg-type]
                    two = await store.search(q, agent_id=agent, k=4, unique_only=True, since=EPOCH)  # type: ignore[arg-type]
                    assert [h.memory.id for h in one] == [h.memory.id for h in two]
            index: vector_index.SqliteVectorIndex = store._backend.index  # type: ignore[attr-defined]
            assert index.header is not None and index.base_count > 0
            assert sum(s.pruner is not None for s in index._subsets.values()) >= 2
