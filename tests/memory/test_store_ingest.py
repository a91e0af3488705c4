"""The store's bulk path (add_many at ingest and import sizes): the vectors already stored
are found by content hash for whole batches, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import numpy as np

from carrier_cli.memory.rows import content_hash
from carrier_cli.memory.store import MemoryStore
from carrier_cli.memory.types import Memory, MemoryKind
from tests.memory.conftest import HashEmbedder


def _facts(agent: uuid.UUID, texts: list[str]) -> list[Memory]:
    return [
        Memory(agent_id=agent, content={"text": t}, kind=MemoryKind.FACT, metadata={"n": i})
        for i, t in enumerate(texts)
    ]


async def test_a_batch_finds_its_stored_vectors_by_content_hash(db_url: str) -> None:
    # More texts than one IN (...) chunk (500) and than an inline read (64 rows).
    texts = [f"fact number {i} about word{i % 97} and thing{i % 13}" for i in range(1203)]
    first = await MemoryStore.open(db_url, embedder=HashEmbedder())
    try:
        agent = await first.ensure_agent("tester")
        stored = await first.add_many(_facts(agent, texts))
    finally:
        await first.close()
    fresh = HashEmbedder()
    again = await MemoryStore.open(db_url, embedder=fresh)
    try:
        backend = again._backend
        hashes = [content_hash(t) for t in texts]
        found = await backend.stored_vectors("test:hash-64", [*hashes, content_hash("unseen")])
        assert set(found) == set(hashes)
        for memory, digest in zip(stored, hashes, strict=True):
            assert memory.embedding is not None
            assert np.array_equal(found[digest], np.asarray(memory.embedding, dtype=np.float32))
        assert await backend.stored_vectors("test:other", hashes) == {}
        # Stored again under new ids (an import of the same texts): nothing is embedded
        # but the one new text, and the rows keep their hashes, vectors and metadata.
        added = await again.add_many(_facts(agent, [*texts, "one new text"]))
        assert fresh.calls == [["one new text"]]
        by_id = {m.id: m for m in await again.list(agent_id=agent, limit=None, with_vectors=True)}
        for before, after in zip(stored, added, strict=False):
            read = by_id[after.id]
            assert read.embedding == before.embedding
            assert read.metadata == before.metadata
        assert await again.count(agent_id=agent) == 2 * len(texts) + 1
    finally:
        await again.close()


async def test_batches_after_a_search_are_found_at_their_own_rows(db_url: str) -> None:
    """The SQLite index takes each inserted batch without reading it back (rowids from
    the table's end): a search must still name the right memory, for a batch of all
    new ids and for one that repeats stored ids."""
    store = await MemoryStore.open(db_url, embedder=HashEmbedder())
    try:
        agent = await store.ensure_agent("tester")
        first = await store.add_many(_facts(agent, [f"alpha{i} beta{i}" for i in range(50)]))
        assert (await store.search("alpha3 beta3", agent_id=agent, k=1))[0].memory.id == first[3].id
        fresh = _facts(agent, [f"gamma{i} delta{i}" for i in range(40)])
        added = await store.add_many(fresh)
        assert added == fresh and all(a is f for a, f in zip(added, fresh, strict=True))
        mixed = [*first[:5], *_facts(agent, [f"omega{i} sigma{i}" for i in range(5)])]
        again = await store.add_many(mixed)
        assert [m.id for m in again] == [m.id for m in mixed]
        assert [m.text for m in again[:5]] == [m.text for m in first[:5]]
        for query, memory in (("gamma7 delta7", fresh[7]), ("omega2 sigma2", mixed[7])):
            hits = await store.search(query, agent_id=agent, k=1)
            assert hits[0].memory.id == memory.id and hits[0].memory.metadata == memory.metadata
        assert await store.count(agent_id=agent) == 95
    finally:
        await store.close()
