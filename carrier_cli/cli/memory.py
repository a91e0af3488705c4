"""`carrier memory search|list|add|delete|stats|export|import|ingest|reembed`.

Every command works on one agent (`--character`, default: the `character` setting) except
export/import, which move the whole database unless --character is given. The database is
created on first use (SQLite or an empty PostgreSQL database); an older schema is never
upgraded implicitly (`carrier db upgrade`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    import uuid
    from collections.abc import Awaitable, Callable
    from datetime import datetime

    from carrier_cli.memory.admin import Agent
    from carrier_cli.memory.store import MemoryStore
    from carrier_cli.memory.types import Memory

app = typer.Typer(help="Search and manage long-term memory and knowledge.", no_args_is_help=True)

CharacterOpt = Annotated[
    str | None, typer.Option("--character", "-c", help="Character (name or file) whose memory.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
KindOpt = Annotated[
    list[str] | None,
    typer.Option("--kind", help="message, fact, document, fragment or lore (repeatable)."),
]
RoomOpt = Annotated[
    str | None, typer.Option("--room", help="Room id, or a room's external id or name.")
]


def _run(character: str | None, body: Callable[[MemoryStore, Agent], Awaitable[Any]]) -> Any:
    import asyncio

    from carrier_cli.memory.admin import open_store, resolve_agent
    from carrier_cli.state import STATE

    settings = STATE.settings().settings
    agent = resolve_agent(character, settings)

    async def main() -> Any:
        store = await open_store(settings, agent)
        try:
            return await body(store, agent)
        finally:
            await store.close()

    return asyncio.run(main())


def _kinds(kinds: list[str] | None) -> list[Any] | None:
    from carrier_cli.errors import InputError
    from carrier_cli.memory.types import MemoryKind

    if not kinds:
        return None
    out = []
    for kind in kinds:
        try:
            out.append(MemoryKind(kind.lower()))
        except ValueError:
            raise InputError(
                f"--kind {kind!r} is not a memory kind.",
                hint=f"Use one of {', '.join(k.value for k in MemoryKind)}.",
            ) from None
    return out


async def _room_id(store: MemoryStore, agent: Agent, room: str | None) -> uuid.UUID | None:
    from carrier_cli.memory.rooms_lookup import resolve_room

    return await resolve_room(store, agent.id, agent.name, room)


def _age(moment: datetime | None) -> str:
    from datetime import UTC, datetime

    if moment is None:
        return "-"
    seconds = max(0.0, (datetime.now(UTC) - moment).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _record(memory: Memory, score: float | None = None) -> dict[str, Any]:
    from carrier_cli.memory.transfer import memory_record

    record = memory_record(memory, with_vectors=False)
    record.pop("type")
    if score is not None:
        record = {"score": round(score, 4), **record}
    return record


def _table(rows: list[tuple[Memory, float | None]], rooms: dict[Any, str]) -> None:
    from carrier_cli.memory.ids import short
    from carrier_cli.output import out
    from carrier_cli.output import table as Table
    from carrier_cli.text import one_line

    scored = any(score is not None for _, score in rows)
    table = Table(show_lines=False)
    if scored:
        table.add_column("score", justify="right")
    table.add_column("kind")
    table.add_column("room")
    table.add_column("age", justify="right")
    table.add_column("text", overflow="fold", ratio=1, min_width=30)
    table.add_column("id", style="dim", no_wrap=True)
    for memory, score in rows:
        cells = [f"{score:.3f}"] if scored and score is not None else []
        room = rooms.get(memory.room_id, str(memory.room_id)[:8]) if memory.room_id else "-"
        flag = "" if memory.unique else " (dup)"
        cells += [
            str(memory.kind) + flag,
            room,
            _age(memory.created_at),
            one_line(memory.text, 90) or "(empty)",
            short(memory.id),
        ]
        table.add_row(*cells)
    out().print(table)


async def _room_names(store: MemoryStore, agent: Agent) -> dict[Any, str]:
    from carrier_cli.memory.rooms_lookup import room_names

    return await room_names(store, agent.id)


@app.command("search")
def search(
    query: Annotated[str, typer.Argument(help="What to look for (meaning, not keywords).")],
    k: Annotated[int, typer.Option("-k", "--top", min=1, max=1000, help="How many.")] = 10,
    kind: KindOpt = None,
    room: RoomOpt = None,
    threshold: Annotated[
        float, typer.Option("--threshold", min=-1.0, max=1.0, help="Minimum cosine similarity.")
    ] = 0.0,
    unique: Annotated[bool, typer.Option("--unique", help="Skip near-duplicates.")] = False,
    character: CharacterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Semantic search: the memories closest in meaning to QUERY, best first."""
    from carrier_cli.output import notice, print_json

    kinds = _kinds(kind)

    async def body(store: MemoryStore, agent: Agent) -> None:
        hits = await store.search(
            query,
            agent_id=agent.id,
            k=k,
            threshold=threshold,
            kinds=kinds,
            room_id=await _room_id(store, agent, room),
            unique_only=unique,
        )
        if as_json:
            print_json([_record(h.memory, h.score) for h in hits])
        elif not hits:
            notice(f"No memories of {agent.name} match.")
        else:
            _table([(h.memory, h.score) for h in hits], await _room_names(store, agent))

    _run(character, body)


@app.command("list")
def list_memories(
    limit: Annotated[int, typer.Option("-n", "--limit", min=1, help="How many.")] = 20,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many.")] = 0,
    kind: KindOpt = None,
    room: RoomOpt = None,
    character: CharacterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The newest memories first."""
    from carrier_cli.output import notice, print_json

    kinds = _kinds(kind)

    async def body(store: MemoryStore, agent: Agent) -> None:
        memories = await store.list(
            agent_id=agent.id,
            kinds=kinds,
            limit=limit,
            offset=offset,
            room_id=await _room_id(store, agent, room),
        )
        if as_json:
            print_json([_record(m) for m in memories])
        elif not memories:
            notice(f"No memories of {agent.name} yet.")
        else:
            _table([(m, None) for m in memories], await _room_names(store, agent))

    _run(character, body)


@app.command("add")
def add(
    text: Annotated[str, typer.Argument(help="The memory's text.")],
    kind: Annotated[str, typer.Option("--kind", help="message, fact, lore...")] = "fact",
    room: RoomOpt = None,
    character: CharacterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Store one memory (embedded with the configured model)."""
    from carrier_cli.memory.types import Memory
    from carrier_cli.output import out, print_json

    (memory_kind,) = _kinds([kind]) or []

    async def body(store: MemoryStore, agent: Agent) -> Memory:
        await store.ensure_agent(agent.name, agent.id)
        memory = Memory(
            agent_id=agent.id,
            content={"text": text},
            kind=memory_kind,
            room_id=await _room_id(store, agent, room),
            metadata={"source": "cli"},
        )
        return await store.add(memory)

    stored = _run(character, body)
    if as_json:
        print_json(_record(stored))
    else:
        note = "" if stored.unique else " (near-duplicate of an existing memory)"
        out().print(f"Added {stored.kind} {stored.id}{note}.", markup=False)


@app.command("delete")
def delete(
    ids: Annotated[
        list[str], typer.Argument(help="Memory ids, or 8+ character prefixes (see `list`).")
    ],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    character: CharacterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete memories by id (asks first unless --yes)."""
    import sys

    from carrier_cli.errors import InputError
    from carrier_cli.output import out, print_json

    if not yes:
        if not sys.stdin.isatty():
            raise InputError(
                f"Deleting {len(ids)} memories needs confirmation.", hint="Pass --yes."
            )
        typer.confirm(f"Delete {len(ids)} memories?", abort=True)

    async def body(store: MemoryStore, agent: Agent) -> int:
        resolved = [await store.resolve_id(value) for value in ids]
        return await store.delete(resolved)

    deleted = _run(character, body)
    if as_json:
        print_json({"deleted": deleted, "requested": len(ids)})
    else:
        out().print(f"Deleted {deleted} of {len(ids)} memories.", markup=False)


@app.command("stats")
def stats(character: CharacterOpt = None, as_json: JsonOpt = False) -> None:
    """Counts by kind, rooms, vectors and the embedding model in use."""
    from carrier_cli.output import out, print_json

    async def body(store: MemoryStore, agent: Agent) -> dict[str, Any]:
        info = await store.stats(agent.id)
        info["character"] = agent.name
        info["agent_id"] = str(agent.id)
        info["database"] = store.masked_url
        return info

    info = _run(character, body)
    if as_json:
        print_json(info)
        return
    from carrier_cli.output import key_value_table

    rows = [
        ("character", f"{info['character']} ({info['agent_id']})"),
        ("database", info["database"]),
        ("memories", str(info["total"])),
        *((f"  {kind}", str(count)) for kind, count in sorted(info["by_kind"].items())),
        ("rooms", str(info["rooms"])),
        ("without vectors", str(info["without_vectors"])),
        ("near-duplicates", str(info["not_unique"])),
        ("embedding model", str(info["embedding_model"] or "none stored yet")),
        ("dimension", str(info["embedding_dimension"] or "-")),
        ("configured embedder", info["embedder"]),
    ]
    out().print(key_value_table(rows))


@app.command("export")
def export(
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="File to write (default: stdout).")
    ] = None,
    with_vectors: Annotated[
        bool, typer.Option("--with-vectors", help="Include embedding vectors.")
    ] = False,
    character: Annotated[
        str | None, typer.Option("--character", "-c", help="Only this character's memories.")
    ] = None,
) -> None:
    """Write memories (and their agents, rooms, entities) as JSON Lines."""
    import sys

    from carrier_cli.memory.transfer import export_jsonl
    from carrier_cli.output import notice

    async def body(store: MemoryStore, agent: Agent) -> int:
        agent_id = agent.id if character else None
        if output is None:
            return await export_jsonl(
                store, sys.stdout, agent_id=agent_id, with_vectors=with_vectors
            )
        with output.open("w", encoding="utf-8") as handle:
            return await export_jsonl(store, handle, agent_id=agent_id, with_vectors=with_vectors)

    count = _run(character, body)
    notice(f"Exported {count} memories" + (f" to {output}." if output else "."))


@app.command("import")
def import_(
    file: Annotated[
        Path,
        typer.Argument(
            help="JSON Lines from `carrier memory export`; - for stdin.", allow_dash=True
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Import an export. Idempotent: memories already present (same id) are skipped.

    The whole file is checked before anything is written (a bad line is refused with its
    line number, exit 2, database untouched). A memory whose id is already used by a
    different memory (in the file or stored) is not imported: the stored one is kept,
    the conflicts are listed on stderr (and in --json), and the exit status stays 0,
    since the database is consistent and rerunning would change nothing.
    """
    import sys

    from carrier_cli.errors import InputError
    from carrier_cli.memory.transfer import import_jsonl
    from carrier_cli.output import err, out, print_json
    from carrier_cli.textfile import decode_text, read_text

    hint = "Import files are JSON Lines as written by `carrier memory export`."
    if str(file) == "-":
        source = "<stdin>"
        text = decode_text(sys.stdin.buffer.read(), source, what="import input", hint=hint)
    else:
        if not file.is_file():
            raise InputError(f"{file}: no such file.", hint="Give the path of an export.")
        source = str(file)
        text = read_text(file, what="memory export", hint=hint)
    lines = text.splitlines()  # read (and decoded) whole before the database is opened

    async def body(store: MemoryStore, agent: Agent) -> Any:
        return await import_jsonl(store, lines, source=source)

    report = _run(None, body)
    if as_json:
        print_json(report.as_dict())
    else:
        out().print(
            f"Imported {report.memories_added} memories ({report.memories_existing} already "
            f"present, {report.reembedded} re-embedded, {report.other_records} "
            "agents/rooms/entities/participants).",
            markup=False,
        )
    if report.conflicts:
        shown = "; ".join(report.conflict_examples)
        more = report.conflicts - len(report.conflict_examples)
        err().print(
            f"{report.conflicts} memories in {source} were not imported: their id is "
            f"already used by a memory with different content, which was kept ({shown}"
            + (f"; and {more} more" if more > 0 else "")
            + "). To take the file's version, `carrier memory delete` the stored one and "
            "import again.",
            markup=False,
        )


def _progress_bar(label: str) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from carrier_cli.output import err

    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}", markup=False),  # a file name, shown as it is
        TimeRemainingColumn(),
        console=err(),
        transient=True,
    )


@app.command("ingest")
def ingest(
    paths: Annotated[list[Path], typer.Argument(help=".md, .txt, .pdf files or directories.")],
    character: CharacterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Store documents as knowledge (split into ~500-token fragments); unchanged files are
    skipped, edited ones replaced."""
    from carrier_cli.memory.knowledge import ingest_paths
    from carrier_cli.output import out, print_json

    async def body(store: MemoryStore, agent: Agent) -> Any:
        await store.ensure_agent(agent.name, agent.id)
        with _progress_bar("Ingesting") as bar:
            task = bar.add_task("", total=None)

            def progress(done: int, total: int, label: str) -> None:
                bar.update(task, completed=done, total=total, description=label)

            return await ingest_paths(store, agent.id, paths, progress=progress)

    report = _run(character, body)
    if as_json:
        print_json(report.as_dict())
        return
    out().print(
        f"{len(report.files)} files: {report.documents_added} documents added "
        f"({report.fragments_added} fragments), {report.documents_unchanged} unchanged, "
        f"{report.documents_replaced} older versions replaced.",
        markup=False,
    )
    for skipped in report.skipped:
        out().print(f"no text found in {skipped} (scanned PDF?)", markup=False)


@app.command("reembed")
def reembed(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Re-embed every memory with the configured embedding model (after changing it)."""
    import sys

    from carrier_cli.errors import InputError
    from carrier_cli.output import out, print_json

    if not yes and sys.stdin.isatty():
        typer.confirm("Re-embed every memory with the configured model?", abort=True)
    elif not yes:
        raise InputError("Re-embedding replaces every stored vector.", hint="Pass --yes.")

    async def body(store: MemoryStore, agent: Agent) -> tuple[int, str]:
        with _progress_bar("Re-embedding") as bar:
            task = bar.add_task(store.embedder.model_id, total=None)
            done = await store.reembed(progress=lambda d, t: bar.update(task, completed=d, total=t))
        return done, store.embedder.model_id

    done, model = _run(None, body)
    if as_json:
        print_json({"reembedded": done, "model": model})
    else:
        out().print(f"Re-embedded {done} memories with {model}.", markup=False)
