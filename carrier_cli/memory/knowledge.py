"""Knowledge: files and inline facts turned into document + fragment memories for RAG.

A document is stored once per distinct content (its id is derived from the agent and the
content hash), so ingesting the same file again does nothing, and an edited file replaces
the older version of itself (same source path, different hash). Fragments carry the
vectors; documents are stored without one (they are often far longer than any embedding
model reads well) and are found through their fragments.

Tokens are counted with a tokenizer-free approximation (words and punctuation marks):
tiktoken would have to download its vocabulary, and Carrier must ingest offline.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carrier_cli.errors import InputError
from carrier_cli.memory.overlap import Overlapped
from carrier_cli.memory.types import Memory, MemoryKind, stable_id

if TYPE_CHECKING:
    from carrier_cli.memory.store import MemoryStore

SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".pdf": "pdf"}
_TOKEN = re.compile(r"\w+|[^\w\s]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")

Progress = Callable[[int, int, str], None]
"""progress(done, total, label): called after each document."""


@dataclass
class IngestReport:
    documents_added: int = 0
    documents_unchanged: int = 0
    documents_replaced: int = 0
    fragments_added: int = 0
    files: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # files with no text (e.g. scanned PDFs)

    def as_dict(self) -> dict[str, Any]:
        return {
            "documents_added": self.documents_added,
            "documents_unchanged": self.documents_unchanged,
            "documents_replaced": self.documents_replaced,
            "fragments_added": self.fragments_added,
            "files": self.files,
            "skipped": self.skipped,
        }


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def _split_long(paragraph: str, target: int) -> list[str]:
    """A paragraph above the target: by sentences, a giant sentence by words, and a giant
    word (minified JSON, a base64 blob, a log line without spaces) by tokens.

    Linear in the paragraph: every piece's tokens are counted once and carried as a size.
    Tokens never contain whitespace (`_TOKEN`), so the count of pieces joined by spaces is
    the sum of their counts. Recounting the growing chunk after each word, as this did,
    made a 1 MB log without sentence ends take 5.6 s, about 8x prose's cost per byte.
    """
    pieces: list[tuple[str, int]] = []
    for sentence in _SENTENCE_END.split(paragraph):
        size = count_tokens(sentence)
        if size <= target:
            pieces.append((sentence, size))
        else:
            pieces.extend(_split_by_words(sentence, target))
    # Re-pack sentences up to the target so fragments are not needlessly small.
    packed: list[tuple[str, int]] = []
    for piece, size in pieces:
        if packed and packed[-1][1] + size <= target:
            packed[-1] = (f"{packed[-1][0]} {piece}", packed[-1][1] + size)
        else:
            packed.append((piece, size))
    return [piece for piece, _ in packed]


def _split_by_words(sentence: str, target: int) -> list[tuple[str, int]]:
    """Pieces of at most `target` tokens, as full as the words allow, cut between words."""
    pieces: list[tuple[str, int]] = []
    current: list[str] = []
    current_size = 0
    for word in _words(sentence, target):
        size = count_tokens(word)
        if current and current_size + size > target:
            pieces.append((" ".join(current), current_size))
            current, current_size = [], 0
        current.append(word)
        current_size += size
    if current:
        pieces.append((" ".join(current), current_size))
    return pieces


def _words(sentence: str, target: int) -> Iterable[str]:
    """The sentence's words, with any word above `target` tokens cut into runs of exactly
    `target` tokens at token starts (so the text of a run is unchanged, never re-spaced)."""
    for word in sentence.split():
        if len(word) <= target:  # a token is at least one character
            yield word
            continue
        starts = [m.start() for m in _TOKEN.finditer(word)]
        if len(starts) <= target:
            yield word
            continue
        cuts = starts[target::target]
        begin = 0
        for cut in cuts:
            yield word[begin:cut]
            begin = cut
        yield word[begin:]


def chunk_text(text: str, *, target_tokens: int = 500, overlap_tokens: int = 100) -> list[str]:
    """Chunks of about target_tokens along paragraph boundaries; each chunk after the first
    starts with the trailing paragraphs (up to overlap_tokens) of the one before it."""
    if target_tokens <= 0:
        raise ValueError("target_tokens must be positive")
    paragraphs: list[str] = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        block = block.strip()
        if not block:
            continue
        if count_tokens(block) > target_tokens:
            paragraphs.extend(_split_long(block, target_tokens))
        else:
            paragraphs.append(block)
    chunks: list[str] = []
    current: list[str] = []
    current_tokens = 0
    fresh = 0  # paragraphs in `current` that are not overlap from the previous chunk
    for paragraph in paragraphs:
        size = count_tokens(paragraph)
        if current and fresh and current_tokens + size > target_tokens:
            chunks.append("\n\n".join(current))
            overlap: list[str] = []
            overlap_size = 0
            for previous in reversed(current):
                previous_size = count_tokens(previous)
                if overlap_size + previous_size > overlap_tokens:
                    break
                overlap.insert(0, previous)
                overlap_size += previous_size
            if overlap_size + size > target_tokens:
                overlap, overlap_size = [], 0
            current, current_tokens, fresh = overlap, overlap_size, 0
        current.append(paragraph)
        current_tokens += size
        fresh += 1
    if current and fresh:
        chunks.append("\n\n".join(current))
    return chunks


def read_document(path: Path) -> str:
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise InputError(
            f"{path}: cannot ingest files of type `{path.suffix or '(none)'}`.",
            hint="Knowledge files must be .md, .markdown, .txt or .pdf.",
        )
    try:
        if kind == "pdf":
            from pypdf import PdfReader

            reader = PdfReader(str(path))
            return "\n\n".join((page.extract_text() or "").strip() for page in reader.pages)
        return _read_text_document(path)
    except InputError:
        raise
    except OSError as exc:
        raise InputError(f"{path}: cannot read the file ({exc.strerror or exc}).") from exc
    except Exception as exc:
        raise InputError(
            f"{path}: not a readable {kind.upper()} file ({type(exc).__name__}: {exc}).",
            hint="Check that the file is not damaged or encrypted.",
        ) from exc


def _read_text_document(path: Path) -> str:
    """A .md/.txt file's text, or an InputError naming the file when it is not UTF-8 text.
    Undecodable bytes used to become U+FFFD: a PNG renamed .txt was stored as fragments
    of replacement characters, useless to search and embedded for nothing. A NUL byte is
    refused too: valid UTF-8 as it may be, no text document contains one."""
    from carrier_cli.textfile import read_text

    hint = (
        "Knowledge files must be UTF-8 text (.md, .markdown, .txt) or PDF; convert the "
        "file, or leave it out."
    )
    text = read_text(path, what="document", hint=hint)
    nul = text.find("\x00")
    if nul >= 0:
        raise InputError(
            f"{path}: the document contains a NUL byte (character {nul}); it looks like a "
            "binary file, not text.",
            hint=hint,
        )
    return text


def expand_paths(paths: Iterable[Path]) -> list[Path]:
    """Files to ingest: given files as they are, directories walked for known suffixes."""
    files: list[Path] = []
    for path in paths:
        if not path.exists():
            raise InputError(f"{path}: no such file or directory.", hint="Check the path.")
        if path.is_dir():
            for candidate in sorted(path.rglob("*")):
                hidden = any(part.startswith(".") for part in candidate.relative_to(path).parts)
                if candidate.is_file() and not hidden and candidate.suffix.lower() in SUFFIXES:
                    files.append(candidate)
        else:
            if path.suffix.lower() not in SUFFIXES:
                read_document(path)  # raises the "cannot ingest" error
            files.append(path)
    unique: dict[Path, None] = {}
    for file in files:
        unique.setdefault(file.resolve(), None)
    return list(unique)


async def ingest_text(
    store: MemoryStore,
    agent_id: uuid.UUID,
    text: str,
    *,
    source: str,
    title: str | None = None,
    report: IngestReport | None = None,
) -> IngestReport:
    """One document: skipped if this exact content is stored, else stored with fragments
    (replacing an older version from the same source)."""
    report = report or IngestReport()
    prepared = await _prepare_document(store, agent_id, text, source, title, report)
    if prepared is not None:
        await _store_document(store, *prepared)
    return report


async def _prepare_document(
    store: MemoryStore,
    agent_id: uuid.UUID,
    text: str,
    source: str,
    title: str | None,
    report: IngestReport,
) -> tuple[Memory, list[Memory]] | None:
    """The document and its fragments to store, None when there is nothing to store. An
    older version from the same source is deleted here."""
    from carrier_cli.memory.store import content_hash

    text = text.strip()
    if not text:
        report.skipped.append(source)
        return None
    digest = content_hash(text)
    document_id = stable_id("knowledge", agent_id, digest)
    if await store.get(document_id, with_vector=False) is not None:
        report.documents_unchanged += 1
        return None
    report.documents_replaced += await _drop_older_versions(store, agent_id, source, document_id)
    chunks = chunk_text(text)
    document = Memory(
        id=document_id,
        agent_id=agent_id,
        kind=MemoryKind.DOCUMENT,
        content={"text": text, "source": source, "title": title or Path(source).name},
        metadata={"source": source, "content_hash": digest, "fragments": len(chunks)},
    )
    fragments = [
        Memory(
            id=stable_id("fragment", document_id, index),
            agent_id=agent_id,
            kind=MemoryKind.FRAGMENT,
            content={"text": chunk, "source": source},
            metadata={"source": source, "document_id": str(document_id), "position": index},
        )
        for index, chunk in enumerate(chunks)
    ]
    report.documents_added += 1
    report.fragments_added += len(fragments)
    return document, fragments


async def _store_document(store: MemoryStore, document: Memory, fragments: list[Memory]) -> None:
    # Fragments first: the document row says "stored", so an ingest stopped half-way
    # leaves no document without its fragments and the next run completes it.
    await store.add_many(fragments, dedupe=False)
    await store.add(document, embed=False, dedupe=False)


async def _drop_older_versions(
    store: MemoryStore, agent_id: uuid.UUID, source: str, keep: uuid.UUID
) -> int:
    older = [
        m
        for m in await store.list(agent_id=agent_id, kinds=[MemoryKind.DOCUMENT], limit=None)
        if m.metadata.get("source") == source and m.id != keep
    ]
    for document in older:
        count = int(document.metadata.get("fragments", 0))
        ids = [stable_id("fragment", document.id, i) for i in range(count)]
        await store.delete([document.id, *ids])
    return len(older)


async def ingest_paths(
    store: MemoryStore,
    agent_id: uuid.UUID,
    paths: Sequence[Path],
    *,
    progress: Progress | None = None,
) -> IngestReport:
    """Ingest .md/.txt/.pdf files and directories; idempotent by content hash."""
    files = expand_paths(Path(p) for p in paths)
    report = IngestReport()
    texts = [read_document(file) for file in files]  # every file readable before storing any
    # PostgreSQL: a large ingest keeps HNSW maintenance out of its inserts (the store
    # decides how from this estimate of the fragments to come; counting costs, so only
    # for a backend whose bulk loads use it).
    estimate = sum(count_tokens(t) for t in texts) // 400 if store.sizes_bulk_loads else 0
    done = 0

    async def store_one(file: Path, prepared: tuple[Memory, list[Memory]] | None) -> None:
        nonlocal done
        if prepared is not None:
            await _store_document(store, *prepared)
        done += 1
        if progress is not None:
            progress(done, len(files), file.name)

    # One document is embedded while the one before it is written.
    async with store.bulk_load(rows=estimate), Overlapped() as pipeline:
        for file, text in zip(files, texts, strict=True):
            report.files.append(str(file))
            prepared = await _prepare_document(store, agent_id, text, str(file), file.name, report)
            await pipeline.submit(store_one(file, prepared))
    return report


async def ingest_character_knowledge(
    store: MemoryStore, character: Any, *, progress: Progress | None = None
) -> IngestReport:
    """What the runtime calls at start-up: the character's knowledge paths as documents, and
    its inline knowledge strings each as a small document (source `character:<name>`)."""
    agent_id = await store.ensure_agent(character.name, character.id)
    report = await ingest_paths(store, agent_id, character.knowledge_paths(), progress=progress)
    for index, fact in enumerate(character.knowledge_texts()):
        await ingest_text(
            store,
            agent_id,
            fact,
            source=f"character:{character.name}:{index}",
            title=f"{character.name} knowledge {index + 1}",
            report=report,
        )
    return report
