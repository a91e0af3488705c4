"""The knowledge subset's pruned scan (memory/sqlite/vector_prune.py) stays exact: the
rows it keeps always include the brute-force top k above the threshold, its searches
return numpy's top k, rows appended after the axes were fitted (and after a refit) are
covered, and vectors it cannot prune fall back to the whole scan."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from carrier_cli.memory.sqlite import vector_index, vector_prune
from carrier_cli.memory.sqlite.vector_prune import Pruner
from carrier_cli.memory.store import MemoryStore
from carrier_cli.memory.types import Memory, MemoryKind
from tests.memory.test_vector_search import numpy_top

DIM = 256


def clustered(n: int, seed: int, rank: int = 24, noise: float = 2.0) -> np.ndarray:
    """Unit vectors near a low-dimensional subspace, like sentence embeddings (whose
    length sits mostly in a few principal axes), so the bound prunes."""
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(0).standard_normal((rank, DIM))
    vectors = rng.standard_normal((n, rank)) @ basis + noise * rng.standard_normal((n, DIM))
    vectors = vectors.astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def isotropic(n: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def brute_top(matrix: np.ndarray, query: np.ndarray, k: int, threshold: float) -> set[int]:
    scores = matrix @ query
    top = np.argsort(-scores, kind="stable")[:k]
    return {int(i) for i in top if scores[i] >= threshold}


@pytest.mark.parametrize(
    ("k", "threshold"), [(1, -1.0), (5, 0.35), (10, 0.0), (5, 0.9), (100, -1.0), (6000, 0.6)]
)
def test_candidates_hold_the_brute_force_top_k(k: int, threshold: float) -> None:
    matrix = clustered(6000, 1)
    pruner = Pruner.fitted(matrix[:5000])  # fitted on part, the rest appended after
    pruner.append(matrix[5000:])
    assert pruner.width < DIM // 2
    pruned = 0
    for query in clustered(30, 2):
        chosen = pruner.candidates(matrix, query, k, threshold)
        if chosen is None:
            continue
        pruned += 1
        assert np.all(np.diff(chosen) > 0)  # ascending, as the scan's rows
        assert brute_top(matrix, query, k, threshold) <= set(chosen.tolist())
        assert len(chosen) < len(matrix) // 5
    assert pruned >= 20  # the bound does rule rows out on such data


def test_rows_whose_score_lies_outside_the_prefix_are_kept() -> None:
    """The bound is tight for a row whose length lies outside the fitted axes in the same
    direction as the query's: its score is almost all |rest(q)| |rest(x)|. Such rows
    (a few, so the fit does not see them) are the top hits and must be candidates; a
    bound with the rest term weakened even slightly (x0.9) drops them."""
    rng = np.random.default_rng(7)
    matrix = clustered(6000, 5, rank=16, noise=0.3)
    pruner = Pruner.fitted(matrix)
    outside = np.eye(DIM, dtype=np.float64) - pruner.rotation.T @ pruner.rotation
    direction = outside @ rng.standard_normal(DIM)
    direction /= np.linalg.norm(direction)
    planted = [11, 2222, 5999]
    for row in planted:  # mostly `direction`, a little of an ordinary row
        mixed = 0.97 * direction + 0.243 * matrix[row].astype(np.float64)
        matrix[row] = (mixed / np.linalg.norm(mixed)).astype(np.float32)
    pruner = Pruner(matrix[[i for i in range(len(matrix)) if i not in planted]][::2])
    pruner.append(matrix)
    query = (0.9 * direction + 0.436 * matrix[100].astype(np.float64)).astype(np.float32)
    query /= np.linalg.norm(query)
    chosen = pruner.candidates(matrix, query, 3, -1.0)
    assert chosen is not None and len(chosen) < len(matrix) // 5
    assert brute_top(matrix, query, 3, -1.0) == set(planted) <= set(chosen.tolist())
    pruner.rest[: pruner.count] *= 0.9  # a weaker bound than Cauchy-Schwarz allows
    weakened = pruner.candidates(matrix, query, 3, -1.0)
    assert weakened is None or not set(planted) <= set(weakened.tolist())


def test_rows_rotated_in_chunks_as_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    matrix = clustered(5000, 21)
    whole = Pruner.fitted(matrix)
    monkeypatch.setattr(vector_prune, "APPEND_CHUNK", 777)
    chunked = Pruner.fitted(matrix)
    assert chunked.count == whole.count == 5000
    assert np.allclose(chunked.prefix[:5000], whole.prefix[:5000], rtol=0, atol=1e-6)
    assert np.allclose(chunked.rest[:5000], whole.rest[:5000], rtol=0, atol=1e-6)
    assert abs(chunked.longest - whole.longest) < 1e-9


def test_unprunable_vectors_fall_back_and_pause() -> None:
    matrix = isotropic(5000, 3)  # length spread evenly over every axis: nothing to cut
    pruner = Pruner.fitted(matrix)
    queries = isotropic(vector_prune.MISSES_TO_PAUSE + 1, 4)
    assert all(pruner.candidates(matrix, q, 5, 0.0) is None for q in queries)
    assert pruner.paused == vector_prune.PAUSE - 1  # the last query was already paused


async def add(
    store: MemoryStore, agent: uuid.UUID, vectors: np.ndarray, room: uuid.UUID
) -> list[Memory]:
    memories = [
        Memory(
            agent_id=agent,
            kind=MemoryKind.FACT if i % 2 else MemoryKind.MESSAGE,
            room_id=None if i % 2 else room,
            content={"text": f"memory {uuid.uuid4().hex}"},
            embedding=vector,
        )
        for i, vector in enumerate(vectors)
    ]
    await store.add_many(memories, dedupe=False)
    return memories


async def test_pruned_search_equals_numpy_as_rows_arrive(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the store: the facts' subset gets a pruner past PRUNE_MIN_ROWS (lowered
    here), keeps it as rows arrive, refits when they have doubled, and after a reopen
    (invalidate) builds it again; every search equals numpy's top k."""
    monkeypatch.setattr(vector_prune, "PRUNE_MIN_ROWS", 200)
    async with await MemoryStore.open(f"sqlite:///{tmp_path}/m.db") as store:
        agent = await store.ensure_agent("pruned")
        room = (await store.ensure_room(agent, "discord", "r")).id
        memories = await add(store, agent, clustered(500, 5), room)
        index: vector_index.SqliteVectorIndex = store._backend.index  # type: ignore[attr-defined]

        async def check(seed: int) -> None:
            facts = [m for m in memories if m.kind == MemoryKind.FACT]
            for query in clustered(6, seed):
                hits = await store.search(
                    query, agent_id=agent, k=5, threshold=-1.0, kinds=[MemoryKind.FACT]
                )
                assert [h.memory.id for h in hits] == numpy_top(facts, query, 5)
                hits = await store.search(
                    query, agent_id=agent, k=3, threshold=0.5, kinds=[MemoryKind.FACT]
                )
                top = numpy_top(facts, query, 3)
                scores = {m.id: float(np.dot(m.embedding, query)) for m in facts}  # type: ignore[arg-type]
                assert [h.memory.id for h in hits] == [i for i in top if scores[i] >= 0.5]

        await check(6)
        (subset,) = index._subsets.values()
        first = subset.pruner
        assert first is not None and first.count == subset.count == 250
        memories += await add(store, agent, clustered(100, 7), room)  # appended to it
        await check(8)
        assert subset.pruner is first and first.count == 300
        memories += await add(store, agent, clustered(400, 9), room)  # doubled: refitted
        await check(10)
        assert subset.pruner is not first and subset.pruner is not None
        assert subset.pruner.count == subset.count == 500
        index.invalidate()
        await check(11)
        (rebuilt,) = index._subsets.values()
        assert rebuilt is not subset and rebuilt.pruner is not None
        assert rebuilt.pruner.misses == 0 and rebuilt.pruner.paused == 0  # it did prune


async def test_room_rows_equal_brute_force_as_rows_arrive(tmp_path: object) -> None:
    """The per-room row lists (vector_index._RoomRows) behind room-filtered searches and
    the same-room dedupe: equal to brute force over every room, for rows appended after
    the lists were built, and after a reopen (invalidate) rebuilds them. A room with more
    than a quarter of the rows is masked and scanned as before, with the same answers."""
    from carrier_cli.memory.store import DEDUPE_THRESHOLD

    async with await MemoryStore.open(f"sqlite:///{tmp_path}/m.db") as store:
        agent = await store.ensure_agent("rooms")
        other = await store.ensure_agent("someone else")
        rooms = [(await store.ensure_room(agent, "discord", f"r{i}")).id for i in range(8)]
        index: vector_index.SqliteVectorIndex = store._backend.index  # type: ignore[attr-defined]
        memories: list[Memory] = []
        rng = np.random.default_rng(12)

        async def add_messages(count: int, seed: int) -> None:
            vectors = isotropic(count, seed)
            # room 0 takes half the rows (the masked path), the others share the rest
            picks = [rooms[0] if rng.random() < 0.5 else rooms[rng.integers(1, 8)] for _ in vectors]
            batch = [
                Memory(
                    agent_id=agent,
                    kind=MemoryKind.MESSAGE,
                    room_id=room,
                    content={"text": f"message {uuid.uuid4().hex}"},
                    embedding=vector,
                )
                for vector, room in zip(vectors, picks, strict=True)
            ]
            await store.add_many(batch, dedupe=False)
            memories.extend(batch)

        async def check(seed: int, newest: int = 0) -> None:
            queries = list(isotropic(4, seed))
            sample = memories[:: max(1, len(memories) // 6)] + memories[len(memories) - newest :]
            for m in sample:  # near copies: duplicates in their own room only
                near = np.asarray(m.embedding) + 0.01 * isotropic(1, seed + 1)[0]
                queries.append((near / np.linalg.norm(near)).astype(np.float32))
            for room in [*rooms, uuid.uuid4()]:
                in_room = [m for m in memories if m.room_id == room]
                for query in queries:
                    hits = await store.search(
                        query, agent_id=agent, k=5, threshold=-1.0, room_id=room
                    )
                    top = numpy_top(in_room, query, 5) if in_room else []
                    assert [h.memory.id for h in hits] == top
                    scores = [float(np.dot(m.embedding, query)) for m in in_room]  # type: ignore[arg-type]
                    expected = any(s >= DEDUPE_THRESHOLD for s in scores)
                    assert await store._has_near(query, agent, room) is expected
            assert index._by_room is not None and index._by_room.upto == index.size

        await add_messages(400, 13)
        await store.add_many(  # another agent's rows in the same room: filtered out
            [
                Memory(
                    agent_id=other,
                    kind=MemoryKind.MESSAGE,
                    room_id=rooms[1],
                    content={"text": f"x {i}"},
                    embedding=v,
                )
                for i, v in enumerate(isotropic(30, 14))
            ],
            dedupe=False,
        )
        await check(15)
        built = index._by_room
        await add_messages(5, 16)  # a turn's few rows: appended one by one
        await check(17, newest=5)
        await add_messages(120, 18)  # a burst: grouped
        await check(19, newest=120)
        assert index._by_room is built
        index.invalidate()
        await check(20, newest=50)
        assert index._by_room is not built
