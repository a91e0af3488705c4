"""Import and ingest refuse what would damage the database or search, with the line or
file named: binary files, vectors of the wrong dimension, NaN/inf vectors; conflicting
duplicate ids are reported, never dropped without a word."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from carrier_cli.errors import InputError
from carrier_cli.memory.knowledge import ingest_paths
from carrier_cli.memory.store import MemoryStore
from carrier_cli.memory.transfer import import_jsonl
from tests.helpers import run_carrier
from tests.memory.pdfmaker import write_text_pdf

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\xff\xfe"
AGENT = str(uuid.UUID(int=1))


def _flat(text: str) -> str:
    return " ".join(text.split())


def _memory(n: int, text: str, **extra: Any) -> str:
    record = {
        "type": "memory",
        "id": str(uuid.UUID(int=1000 + n)),
        "agent_id": AGENT,
        "kind": "fact",
        "content": {"text": text},
        **extra,
    }
    return json.dumps(record, allow_nan=True, ensure_ascii=False)


def _vector(store: MemoryStore, size: int | None = None, fill: float = 0.1) -> dict[str, Any]:
    dimension = size or store.embedder.dimension
    return {"embedding_model": store.embedder.model_id, "embedding": [fill] * dimension}


# ----------------------------------------------------------------- binary files (item 3)


def test_import_of_a_binary_file_names_it_and_exits_2(tmp_path: Path) -> None:
    image = tmp_path / "photo.png"
    image.write_bytes(PNG)
    result = run_carrier(["memory", "import", str(image)])
    assert result.returncode == 2, result.stderr
    message = _flat(result.stderr)
    assert "photo.png: the memory export is not UTF-8 text" in message
    assert "Traceback" not in result.stderr and "Unexpected error" not in message
    latin = tmp_path / "old.jsonl"
    latin.write_bytes(_memory(1, "caf\xe9").encode("latin-1") + b"\n")
    piped = run_carrier(["memory", "import", str(latin)])
    assert piped.returncode == 2 and "old.jsonl: the memory export is not UTF-8" in _flat(
        piped.stderr
    )


def test_import_from_stdin_of_binary_bytes_exits_2(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "carrier_cli", "memory", "import", "-"],
        input=PNG,
        capture_output=True,
        timeout=60,
    )
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert "<stdin>: the import input is not UTF-8 text" in _flat(stderr)


async def test_ingest_refuses_binary_text_files_and_keeps_pdfs(
    store: MemoryStore, tmp_path: Path
) -> None:
    agent = await store.ensure_agent("reader")
    disguised = tmp_path / "notes.txt"
    disguised.write_bytes(PNG)
    with pytest.raises(InputError, match=r"notes\.txt: the document is not UTF-8 text"):
        await ingest_paths(store, agent, [disguised])
    zeros = tmp_path / "zeros.md"
    zeros.write_bytes(b"# title\n\x00\x00\x00\x00")
    with pytest.raises(InputError, match=r"zeros\.md: the document contains a NUL byte"):
        await ingest_paths(store, agent, [zeros])
    assert await store.count() == 0  # refused before anything was stored
    pdf = tmp_path / "manual.pdf"
    write_text_pdf(pdf, ["The pump is serviced every spring."])
    report = await ingest_paths(store, agent, [pdf])
    assert report.documents_added == 1


# ----------------------------------------------------------------- vectors (item 5)


async def test_wrong_dimension_vector_is_refused_with_its_line(store: MemoryStore) -> None:
    lines = [
        _memory(1, "fine", **_vector(store)),
        _memory(2, "short", **_vector(store, size=store.embedder.dimension - 1)),
    ]
    with pytest.raises(InputError, match=r"f\.jsonl:2: the `embedding` has \d+ dimensions"):
        await import_jsonl(store, lines, source="f.jsonl")
    assert await store.count() == 0  # the whole file is checked before anything is written


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity", "1e39"])
async def test_non_finite_vector_is_refused_with_its_line(store: MemoryStore, bad: str) -> None:
    good = _memory(1, "fine", **_vector(store))
    vector = _vector(store)
    broken = _memory(2, "broken", **vector).replace("0.1]", f"{bad}]", 1)
    assert bad in broken
    with pytest.raises(InputError, match=r"f\.jsonl:3: `embedding` component \d+ is .*finite"):
        await import_jsonl(store, ['{"type":"header","version":1}', good, broken], source="f.jsonl")
    assert await store.count() == 0


async def test_other_models_vectors_must_agree_and_zero_vectors_are_refused(
    store: MemoryStore,
) -> None:
    other = {"embedding_model": "someone:else"}
    lines = [
        _memory(1, "a", **other, embedding=[0.5] * 8),
        _memory(2, "b", **other, embedding=[0.5] * 9),
    ]
    with pytest.raises(InputError, match=r"f\.jsonl:2: .*9 dimensions, but f\.jsonl:1"):
        await import_jsonl(store, lines, source="f.jsonl")
    with pytest.raises(InputError, match=r"f\.jsonl:1: `embedding` is all zeros"):
        await import_jsonl(store, [_memory(1, "z", **_vector(store, fill=0.0))], source="f.jsonl")
    with pytest.raises(InputError, match=r"f\.jsonl:1: `embedding` must be a flat list"):
        await import_jsonl(store, [_memory(1, "s", embedding=["x", 1])], source="f.jsonl")
    assert await store.count() == 0


async def test_valid_vectors_are_imported_and_searchable(store: MemoryStore) -> None:
    [vector] = await store.embed_texts(["the cat is called Miso"])
    assert vector is not None
    line = _memory(
        1,
        "the cat is called Miso",
        embedding_model=store.embedder.model_id,
        embedding=vector.tolist(),
    )
    report = await import_jsonl(store, [line])
    assert report.memories_added == 1 and report.reembedded == 0
    hits = await store.search("the cat is called Miso", agent_id=uuid.UUID(AGENT), k=1)
    assert hits and hits[0].memory.text == "the cat is called Miso"


# ----------------------------------------------------------------- duplicates (item 5)


async def test_conflicting_duplicates_are_reported(store: MemoryStore) -> None:
    first = await import_jsonl(store, [_memory(1, "stored version"), _memory(2, "two")], source="a")
    assert first.memories_added == 2 and first.conflicts == 0
    lines = [
        _memory(1, "a different text"),  # conflicts with the stored memory
        _memory(2, "two"),  # a plain repeat
        _memory(3, "three"),
        _memory(3, "three, edited"),  # conflicts with line 3 of the same file
    ]
    report = await import_jsonl(store, lines, source="b.jsonl")
    assert report.memories_added == 1 and report.memories_existing == 1
    assert report.conflicts == 2
    assert any(e.startswith("b.jsonl:4: id") and "line 3" in e for e in report.conflict_examples)
    assert any(e.startswith("b.jsonl:1: id") and "stored" in e for e in report.conflict_examples)
    kept = await store.get(uuid.UUID(int=1001))
    assert kept is not None and kept.text == "stored version"  # never overwritten


def test_cli_lists_conflicts_and_exits_0(tmp_path: Path) -> None:
    export = tmp_path / "dupes.jsonl"
    export.write_text(
        "\n".join([_memory(1, "one"), _memory(1, "uno"), _memory(2, "two")]) + "\n",
        encoding="utf-8",
    )
    # Wide: the message wraps at the terminal width, and an xdist worker's tmp path (with
    # popen-gwN/ in it) was long enough to break the file name over two lines.
    result = run_carrier(["memory", "import", str(export)], env={"COLUMNS": "400"})
    assert result.returncode == 0, result.stderr
    message = _flat(result.stderr)
    assert "1 memories in" in message and "dupes.jsonl:2: id" in message
    assert "Imported 2 memories" in result.stdout
    data = json.loads(run_carrier(["memory", "import", str(export), "--json"]).stdout)
    assert data["conflicts"] == 1 and data["memories_existing"] == 2
