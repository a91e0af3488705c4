"""Chunking and knowledge ingestion (files, directories, PDFs, character knowledge)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from carrier_cli.errors import InputError
from carrier_cli.memory.knowledge import (
    chunk_text,
    count_tokens,
    ingest_character_knowledge,
    ingest_paths,
)
from carrier_cli.memory.store import MemoryStore
from carrier_cli.memory.types import MemoryKind, stable_id
from tests.memory.pdfmaker import write_text_pdf


def _paragraphs(n: int, words: int = 60) -> list[str]:
    return [" ".join(f"p{i}w{j}" for j in range(words)) + "." for i in range(n)]


def test_chunks_follow_paragraphs_with_overlap() -> None:
    paragraphs = _paragraphs(30)  # 61 tokens each: 8 fit in 500, 2 in an overlap of 130
    chunks = chunk_text("\n\n".join(paragraphs), target_tokens=500, overlap_tokens=130)
    assert len(chunks) == 5
    for chunk in chunks:
        assert count_tokens(chunk) <= 500
        for part in chunk.split("\n\n"):
            assert part in paragraphs  # never cut inside a paragraph
    for before, after in itertools.pairwise(chunks):
        # the next chunk starts with the last two paragraphs of the previous one
        assert after.split("\n\n")[:2] == before.split("\n\n")[-2:]
    covered = {p for c in chunks for p in c.split("\n\n")}
    assert covered == set(paragraphs)


def test_chunking_edge_cases() -> None:
    assert chunk_text("") == []
    assert chunk_text("   \n\n  ") == []
    assert chunk_text("one short paragraph") == ["one short paragraph"]
    giant = " ".join(f"word{i}" for i in range(3000))  # one paragraph, no sentence ends
    chunks = chunk_text(giant, target_tokens=500, overlap_tokens=100)
    assert len(chunks) >= 6 and all(count_tokens(c) <= 500 for c in chunks)
    assert " ".join(chunks).count("word2999") >= 1
    sentences = " ".join(f"Sentence number {i} is here." for i in range(400))
    for chunk in chunk_text(sentences, target_tokens=200, overlap_tokens=0):
        assert chunk.endswith(".") and count_tokens(chunk) <= 200


def test_a_word_longer_than_the_target_is_cut_at_token_starts() -> None:
    # Minified JSON: one "word" of 60,000 tokens. It used to come out as one fragment.
    blob = '{"k":[' + ",".join(str(i % 10) for i in range(20_000)) + "]}"
    chunks = chunk_text(f"before {blob} after", target_tokens=500, overlap_tokens=100)
    assert all(count_tokens(c) <= 500 for c in chunks)
    assert len(chunks) >= count_tokens(blob) // 500
    # Cut without re-spacing: the pieces put back together are the text.
    assert "".join(chunks).replace(" ", "") == f"before{blob}after"


@pytest.mark.parametrize(
    "text",
    [
        " ".join(f"w{i}" for i in range(40_000)),  # a log line: words, no sentence ends
        "a,b;" * 40_000,  # no spaces at all
    ],
    ids=["words", "one-word"],
)
def test_chunking_counts_each_character_a_bounded_number_of_times(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Linear in the input: the characters handed to the token counter stay a small
    multiple of the text's length (recounting the growing chunk after each word made it
    quadratic: ~250x the text's length for the first case)."""
    import carrier_cli.memory.knowledge as knowledge

    scanned = 0
    real = knowledge.count_tokens

    def counting(piece: str) -> int:
        nonlocal scanned
        scanned += len(piece)
        return real(piece)

    monkeypatch.setattr(knowledge, "count_tokens", counting)
    chunks = knowledge.chunk_text(text, target_tokens=500, overlap_tokens=100)
    assert chunks and all(real(c) <= 500 for c in chunks)
    assert scanned <= 6 * len(text)


async def test_ingest_is_idempotent_and_replaces_edited_files(
    store: MemoryStore, tmp_path: Path
) -> None:
    agent = await store.ensure_agent("tester")
    docs = tmp_path / "docs"
    (docs / "nested").mkdir(parents=True)
    (docs / "cats.md").write_text(
        "# Cats\n\nOur office cat Miso sleeps on the warm server rack.\n\n"
        + "\n\n".join(_paragraphs(12)),
        encoding="utf-8",
    )
    (docs / "nested" / "tea.txt").write_text(
        "Alice drinks green tea every morning.", encoding="utf-8"
    )
    (docs / ".hidden.md").write_text("secret", encoding="utf-8")
    (docs / "image.png").write_bytes(b"\x89PNG")
    write_text_pdf(
        docs / "manual.pdf",
        [["The backup job runs at midnight on Sundays."], ["Restores are tested every quarter."]],
    )
    calls: list[tuple[int, int, str]] = []
    report = await ingest_paths(
        store, agent, [docs], progress=lambda d, t, label: calls.append((d, t, label))
    )
    assert report.documents_added == 3 and report.documents_unchanged == 0
    assert [c[:2] for c in calls] == [(1, 3), (2, 3), (3, 3)]
    fragments = await store.count(agent_id=agent, kinds=[MemoryKind.FRAGMENT])
    assert fragments == report.fragments_added >= 4
    assert await store.count(agent_id=agent, kinds=[MemoryKind.DOCUMENT]) == 3

    again = await ingest_paths(store, agent, [docs])
    assert again.documents_added == 0 and again.documents_unchanged == 3
    assert await store.count(agent_id=agent) == 3 + fragments

    hits = await store.search(
        "when are backups made", agent_id=agent, kinds=[MemoryKind.FRAGMENT], k=3
    )
    assert "backup job" in hits[0].memory.text
    hits = await store.search("kitten", agent_id=agent, kinds=[MemoryKind.FRAGMENT], k=1)
    assert "Miso" in hits[0].memory.text

    (docs / "nested" / "tea.txt").write_text("Alice switched to coffee.", encoding="utf-8")
    edited = await ingest_paths(store, agent, [docs / "nested" / "tea.txt"])
    assert edited.documents_added == 1 and edited.documents_replaced == 1
    texts = [
        m.text for m in await store.list(agent_id=agent, kinds=[MemoryKind.FRAGMENT], limit=None)
    ]
    assert "Alice switched to coffee." in texts
    assert not any("green tea" in t for t in texts)


async def test_ingest_rejects_unknown_files(store: MemoryStore, tmp_path: Path) -> None:
    agent = await store.ensure_agent("tester")
    (tmp_path / "data.csv").write_text("a,b", encoding="utf-8")
    with pytest.raises(InputError, match=r"data\.csv"):
        await ingest_paths(store, agent, [tmp_path / "data.csv"])
    with pytest.raises(InputError, match="no such file"):
        await ingest_paths(store, agent, [tmp_path / "missing.md"])
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    with pytest.raises(InputError, match=r"broken\.pdf"):
        await ingest_paths(store, agent, [tmp_path / "broken.pdf"])


@dataclass
class _Character:
    name: str
    paths: list[Path] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    @property
    def id(self):  # type: ignore[no-untyped-def]
        return stable_id("character", self.name)

    def knowledge_paths(self) -> list[Path]:
        return self.paths

    def knowledge_texts(self) -> list[str]:
        return self.texts


async def test_character_knowledge_is_ingested_once(store: MemoryStore, tmp_path: Path) -> None:
    (tmp_path / "faq.md").write_text("The shop opens at nine.", encoding="utf-8")
    character = _Character(
        "Shopkeeper", [tmp_path / "faq.md"], ["Returns are accepted within 30 days."]
    )
    first = await ingest_character_knowledge(store, character)
    assert first.documents_added == 2
    second = await ingest_character_knowledge(store, character)
    assert second.documents_added == 0 and second.documents_unchanged == 2
    hits = await store.search(
        "can I return an item", agent_id=character.id, kinds=[MemoryKind.FRAGMENT]
    )
    assert hits[0].memory.text == "Returns are accepted within 30 days."


@pytest.mark.postgres
async def test_large_ingest_into_postgres_loads_in_bulk(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import text

    from carrier_cli.memory.postgres import bulk as bulk_module

    monkeypatch.setattr(bulk_module, "BULK_MIN_ROWS", 1)
    store = await MemoryStore.open(postgres_url)
    bulk_loads: list[int | None] = []
    original = store.bulk_load

    def counting_bulk_load(rows: int | None = None):  # type: ignore[no-untyped-def]
        bulk_loads.append(rows)
        return original(rows)

    monkeypatch.setattr(store, "bulk_load", counting_bulk_load)
    try:
        agent = await store.ensure_agent("tester")
        (tmp_path / "big.md").write_text("\n\n".join(_paragraphs(40)), encoding="utf-8")
        (tmp_path / "cat.md").write_text("The office cat Miso naps at noon.", encoding="utf-8")
        report = await ingest_paths(store, agent, [tmp_path])
        assert report.fragments_added >= 5
        # One load, told roughly how many fragments come (the estimate counts tokens).
        assert len(bulk_loads) == 1 and bulk_loads[0] is not None
        assert report.fragments_added // 2 <= bulk_loads[0] <= report.fragments_added * 2
        async with store.engine.connect() as conn:
            indexes = (
                await conn.execute(
                    text("SELECT count(*) FROM pg_indexes WHERE indexdef LIKE '%USING hnsw%'")
                )
            ).scalar()
        assert indexes == 2  # built at the end of the load (main + bulk segment)
        hits = await store.search("kitten", agent_id=agent, kinds=[MemoryKind.FRAGMENT], k=1)
        assert "Miso" in hits[0].memory.text
    finally:
        await store.close()


async def test_an_ingest_that_fails_half_way_leaves_no_document_without_its_fragments(
    store: MemoryStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = await store.ensure_agent("tester")
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("a", "b", "c"):
        (docs / f"{name}.md").write_text(
            f"# {name}\n\n" + "\n\n".join(_paragraphs(12)) + f"\n\nThe {name} note.",
            encoding="utf-8",
        )
    original = store.add_many

    async def failing(memories, **kw):  # type: ignore[no-untyped-def]
        if any(m.text.endswith("The b note.") for m in memories):
            raise RuntimeError("connection lost")
        return await original(memories, **kw)

    monkeypatch.setattr(store, "add_many", failing)
    with pytest.raises(RuntimeError, match="connection lost"):
        await ingest_paths(store, agent, [docs])
    documents = await store.list(agent_id=agent, kinds=[MemoryKind.DOCUMENT], limit=None)
    for document in documents:  # every stored document has all its fragments
        ids = [stable_id("fragment", document.id, i) for i in range(document.metadata["fragments"])]
        assert len(await store._get_many(ids)) == len(ids)
    assert "b.md" not in {Path(d.metadata["source"]).name for d in documents}

    monkeypatch.setattr(store, "add_many", original)
    again = await ingest_paths(store, agent, [docs])
    assert again.documents_added == 3 - len(documents)
    assert again.documents_unchanged == len(documents)
    documents = await store.list(agent_id=agent, kinds=[MemoryKind.DOCUMENT], limit=None)
    assert sorted(Path(d.metadata["source"]).name for d in documents) == ["a.md", "b.md", "c.md"]
    for document in documents:
        ids = [stable_id("fragment", document.id, i) for i in range(document.metadata["fragments"])]
        assert len(await store._get_many(ids)) == len(ids)
