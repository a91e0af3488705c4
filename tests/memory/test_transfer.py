"""Export/import: lossless, idempotent, and across backends in both directions."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from carrier_cli.errors import InputError
from carrier_cli.memory.store import MemoryStore
from carrier_cli.memory.transfer import export_jsonl, import_jsonl
from carrier_cli.memory.types import Memory, MemoryKind, stable_id
from tests.memory.conftest import HashEmbedder


async def _fill(store: MemoryStore) -> None:
    agent = await store.ensure_agent("exporter")
    room = await store.ensure_room(agent, "discord", "123", "general")
    alice = await store.ensure_entity("discord", "42", "alice")
    await store.ensure_participant(room.id, alice.id)
    await store.add_many(
        [
            Memory(
                id=stable_id("discord", "message", "m1", agent),
                agent_id=agent,
                room_id=room.id,
                entity_id=alice.id,
                content={
                    "text": "Our office cat is called Miso",
                    "source": "discord",
                    "actions": ["REPLY"],
                },
                created_at=datetime(2025, 5, 1, 12, 30, 15, 123456, tzinfo=UTC),
                metadata={"discord": {"channel": "123"}},
            ),
            Memory(
                agent_id=agent,
                kind=MemoryKind.FACT,
                content={"text": "Alice likes tea"},
                metadata={"confidence": 0.9},
            ),
            Memory(agent_id=agent, kind=MemoryKind.LORE, content={"text": ""}),
            Memory(
                agent_id=agent, room_id=room.id, content={"text": "Our office cat is called Miso!"}
            ),
        ]
    )


def _key(memory: Memory) -> tuple[object, ...]:
    return (
        memory.id,
        memory.agent_id,
        memory.room_id,
        memory.entity_id,
        memory.kind,
        memory.content,
        memory.created_at,
        memory.unique,
        memory.metadata,
    )


async def _roundtrip(source_url: str, target_url: str, with_vectors: bool) -> None:
    source = await MemoryStore.open(source_url)
    await _fill(source)
    buffer = io.StringIO()
    assert await export_jsonl(source, buffer, with_vectors=with_vectors) == 4
    original = {m.id: m for m in await source.list(limit=None, with_vectors=True)}
    await source.close()

    target = await MemoryStore.open(target_url)
    try:
        lines = buffer.getvalue().splitlines()
        report = await import_jsonl(target, lines)
        assert report.memories_added == 4 and report.memories_existing == 0
        again = await import_jsonl(target, lines)
        assert again.memories_added == 0 and again.memories_existing == 4
        assert await target.count() == 4
        copied = {m.id: m for m in await target.list(limit=None, with_vectors=True)}
        assert {k: _key(m) for k, m in copied.items()} == {k: _key(m) for k, m in original.items()}
        for memory_id, memory in original.items():
            if memory.embedding is None:
                assert copied[memory_id].embedding is None
            else:
                assert copied[memory_id].embedding == pytest.approx(memory.embedding, abs=1e-6)
        agent = stable_id("character", "exporter")
        rooms = await target.list_rooms(agent)
        assert [(r.source, r.external_id, r.name) for r in rooms] == [("discord", "123", "general")]
        assert [e.names for e in await target.participants(rooms[0].id)] == [["alice"]]
        hits = await target.search("kitten name", agent_id=agent, k=1)
        assert hits[0].memory.text.startswith("Our office cat")
    finally:
        await target.close()


@pytest.mark.postgres
@pytest.mark.parametrize("with_vectors", [False, True])
async def test_sqlite_to_postgres(tmp_path: Path, postgres_url: str, with_vectors: bool) -> None:
    await _roundtrip(f"sqlite:///{tmp_path / 'a.db'}", postgres_url, with_vectors)


@pytest.mark.postgres
@pytest.mark.parametrize("with_vectors", [False, True])
async def test_postgres_to_sqlite(tmp_path: Path, postgres_url: str, with_vectors: bool) -> None:
    await _roundtrip(postgres_url, f"sqlite:///{tmp_path / 'b.db'}", with_vectors)


async def test_vectors_of_another_model_are_reembedded(
    tmp_path: Path, pg_database_factory: Callable[[], str]
) -> None:
    source = await MemoryStore.open(f"sqlite:///{tmp_path / 'a.db'}")
    await _fill(source)
    buffer = io.StringIO()
    await export_jsonl(source, buffer, with_vectors=True)
    await source.close()
    target = await MemoryStore.open(f"sqlite:///{tmp_path / 'c.db'}", embedder=HashEmbedder())
    try:
        report = await import_jsonl(target, buffer.getvalue().splitlines())
        assert report.reembedded == 3 and report.memories_added == 4
        assert await target.stored_models() == {"test:hash-64": 3}
    finally:
        await target.close()


async def test_bad_import_lines_name_the_line(store: MemoryStore) -> None:
    with pytest.raises(InputError, match=r"f\.jsonl:2: not valid JSON"):
        await import_jsonl(store, ['{"type":"header"}', "{oops"], source="f.jsonl")
    with pytest.raises(InputError, match=r"f\.jsonl:1: unknown memory kind 'poem'"):
        await import_jsonl(store, ['{"type":"memory","kind":"poem","id":"x"}'], source="f.jsonl")
    with pytest.raises(InputError, match="`id` is not a UUID"):
        await import_jsonl(store, ['{"type":"memory","id":"x","content":{"text":"a"}}'])


@pytest.mark.postgres
async def test_large_import_into_postgres_builds_the_index_once(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import text

    from carrier_cli.memory.postgres import bulk as bulk_module

    source = await MemoryStore.open(f"sqlite:///{tmp_path / 'a.db'}")
    await _fill(source)
    buffer = io.StringIO()
    await export_jsonl(source, buffer)
    await source.close()
    monkeypatch.setattr(bulk_module, "BULK_MIN_ROWS", 3)
    target = await MemoryStore.open(postgres_url)
    bulk_loads: list[int | None] = []
    original = target.bulk_load

    def counting_bulk_load(rows: int | None = None):  # type: ignore[no-untyped-def]
        bulk_loads.append(rows)
        return original(rows)

    monkeypatch.setattr(target, "bulk_load", counting_bulk_load)
    try:
        report = await import_jsonl(target, buffer.getvalue().splitlines())
        assert report.memories_added == 4
        assert len(bulk_loads) == 1 and bulk_loads[0] == 4  # the memory records, counted
        async with target.engine.connect() as conn:
            indexes = (
                (
                    await conn.execute(
                        text(
                            "SELECT indexdef FROM pg_indexes "
                            "WHERE indexname = 'ix_memories_embedding_hnsw'"
                        )
                    )
                )
                .scalars()
                .all()
            )
        assert len(indexes) == 1 and "hnsw" in indexes[0]
        hits = await target.search("kitten name", k=1)
        assert hits[0].memory.text.startswith("Our office cat")
    finally:
        await target.close()
