"""The SQLite vector file (memory/sqlite/vector_file.py): a new process maps it, and
whatever happens to it (torn writes, truncation, damage, a database changed or replaced
behind it, several writer processes) searches stay exact: at worst it is rebuilt."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

from carrier_cli.memory.sqlite import vector_file, vector_index
from carrier_cli.memory.store import MemoryStore
from carrier_cli.memory.types import Memory
from tests.memory.test_vector_search import add_random, assert_exact, numpy_top, unit_vectors


async def _filled(path: Path, n: int = 120, seed: int = 1) -> tuple[uuid.UUID, list[Memory]]:
    """A database with `n` random memories and a vector file written by a search."""
    async with await MemoryStore.open(f"sqlite:///{path}") as store:
        agent = await store.ensure_agent("files")
        rooms = [(await store.ensure_room(agent, "discord", f"r{i}")).id for i in range(5)]
        memories = await add_random(store, agent, unit_vectors(n, seed), rooms=rooms)
        await store.search(memories[0].embedding or [], agent_id=agent, k=1)
    return agent, memories


def _header(path: Path) -> vector_file.Header:
    header = vector_file.read_header(vector_file.directory_for(path))
    assert header is not None
    return header


async def _check(path: Path, agent: uuid.UUID, memories: list[Memory], seed: int = 50) -> Path:
    async with await MemoryStore.open(f"sqlite:///{path}") as store:
        await assert_exact(store, agent, memories, unit_vectors(4, seed))
    return path


async def test_a_new_process_maps_the_file_instead_of_reading_the_table(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    agent, memories = await _filled(path)
    header = _header(path)
    assert (header.count, header.dim, header.max_rowid) == (120, 256, 120)
    async with await MemoryStore.open(f"sqlite:///{path}") as store:
        await store.search(unit_vectors(1, 2)[0], agent_id=agent)
        index = store._backend.index  # type: ignore[attr-defined]
        assert (index.base_count, index.tail_count) == (120, 0)
        assert not index.base.flags.writeable  # the mapping, not a copy
        await assert_exact(store, agent, memories, unit_vectors(4, 2))
    assert _header(path).gen == header.gen  # not rebuilt


async def test_truncated_vector_file_is_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    agent, memories = await _filled(path)
    before = _header(path)
    vec = vector_file.directory_for(path) / f"{before.gen}.vec"
    with open(vec, "r+b") as handle:
        handle.truncate(vec.stat().st_size // 2)
    await _check(path, agent, memories)
    after = _header(path)
    assert after.gen != before.gen and after.count == 120


@pytest.mark.parametrize("damage", ["flip", "empty", "garbage", "missing"])
async def test_damaged_header_is_rebuilt(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "m.db"
    agent, memories = await _filled(path)
    before = _header(path)
    header = vector_file.directory_for(path) / "header"
    raw = bytearray(header.read_bytes())
    if damage == "flip":
        raw[raw.index(b'"count": 120') + 10] = ord("9")  # the CRC catches it
        header.write_bytes(bytes(raw))
    elif damage == "empty":
        header.write_bytes(b"")
    elif damage == "garbage":
        header.write_bytes(b"\x00" * 64)
    else:
        header.unlink()
    assert vector_file.read_header(header.parent) is None
    await _check(path, agent, memories)
    assert _header(path).gen != before.gen


async def test_torn_append_past_the_header_is_ignored_then_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer killed after appending but before its header: the tail is junk no header
    counts. Readers ignore it; the next append truncates it first."""
    path = tmp_path / "m.db"
    agent, memories = await _filled(path)
    before = _header(path)
    folder = vector_file.directory_for(path)
    for suffix in ("vec", "rows", "codes"):
        with open(folder / f"{before.gen}.{suffix}", "ab") as handle:
            handle.write(b"\xff" * 1000)
    await _check(path, agent, memories)
    assert _header(path) == before  # mapped as it was, no rebuild
    monkeypatch.setattr(vector_index, "FLUSH_ROWS", 1)
    async with await MemoryStore.open(f"sqlite:///{path}") as store:
        rooms = [(await store.ensure_room(agent, "discord", f"r{i}")).id for i in range(5)]
        memories += await add_random(store, agent, unit_vectors(30, 9), rooms=rooms)
        await assert_exact(store, agent, memories, unit_vectors(2, 10))  # appends
    after = _header(path)
    assert (after.gen, after.count) == (before.gen, 150)
    assert (folder / f"{after.gen}.vec").stat().st_size == 150 * 256 * 4
    await _check(path, agent, memories, seed=11)


async def test_rows_that_disagree_with_the_table_are_caught_and_rebuilt(tmp_path: Path) -> None:
    """Damage inside the committed part with an intact header (the ids of the rows):
    the hits do not exist in the table, so the search rebuilds and asks again."""
    path = tmp_path / "m.db"
    agent, memories = await _filled(path)
    before = _header(path)
    rows = vector_file.directory_for(path) / f"{before.gen}.rows"
    data = np.fromfile(rows, dtype=vector_file.ROW)
    data["id"] = np.frombuffer(b"".join(uuid.uuid4().bytes for _ in data), "V16")
    data.tofile(rows)
    await _check(path, agent, memories)
    assert _header(path).gen != before.gen


async def test_rows_deleted_behind_the_file_rebuild_it(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    agent, memories = await _filled(path)
    before = _header(path)
    gone = memories[:10]
    with sqlite3.connect(path) as db:  # another program, or another Carrier process
        db.executemany("DELETE FROM memories WHERE id = ?", [(m.id.hex,) for m in gone])
    await _check(path, agent, memories[10:])
    assert _header(path).gen != before.gen and _header(path).count == 110


async def test_rows_added_behind_the_file_are_read_into_the_tail(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    agent, memories = await _filled(path)
    before = _header(path)
    async with await MemoryStore.open(f"sqlite:///{path}") as writer:  # never searches
        rooms = [(await writer.ensure_room(agent, "discord", f"r{i}")).id for i in range(5)]
        memories += await add_random(writer, agent, unit_vectors(25, 3), rooms=rooms)
    await _check(path, agent, memories)
    assert _header(path) == before  # 25 rows: a tail, below FLUSH_ROWS


async def test_a_replaced_database_is_not_answered_from_the_old_file(tmp_path: Path) -> None:
    """Another database with the same revision and row count copied over the file (a
    restored backup, `cp other.db carrier.db`): the last row's id tells them apart."""
    path = tmp_path / "m.db"
    await _filled(path, seed=1)
    before = _header(path)
    other = tmp_path / "other" / "m.db"
    other.parent.mkdir()
    agent, replacement = await _filled(other, seed=2)
    shutil.rmtree(vector_file.directory_for(other))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    shutil.copy(other, path)
    await _check(path, agent, replacement)
    assert _header(path).gen != before.gen


async def test_read_only_folder_still_searches_exactly(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    agent, memories = await _filled(path)
    folder = vector_file.directory_for(path)
    shutil.rmtree(folder)
    folder.write_text("not a directory")  # nothing can be made there
    await _check(path, agent, memories)


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    import numpy as np
    from carrier_cli.memory.sqlite import vector_index
    from carrier_cli.memory.store import MemoryStore
    from carrier_cli.memory.types import Memory

    vector_index.FLUSH_ROWS = 16  # append often, to race the other writer

    async def main(url, seed):
        rng = np.random.default_rng(seed)
        store = await MemoryStore.open(url)
        agent = await store.ensure_agent("files")
        for _ in range(15):
            vectors = rng.standard_normal((20, 256)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            await store.add_many(
                [Memory(agent_id=agent, content={"text": f"w{seed} {rng.random()}"},
                        embedding=v) for v in vectors], dedupe=False)
            await store.search(vectors[0], agent_id=agent, k=3)
        await store.close()

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


@pytest.mark.slow
async def test_concurrent_writer_processes_leave_an_exact_index(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    agent, _ = await _filled(path)
    url = f"sqlite:///{path}"
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, url, str(seed)]) for seed in (21, 22, 23)
    ]
    async with await MemoryStore.open(url) as reader:  # searches while they write
        for seed in range(10):
            await reader.search(unit_vectors(1, seed)[0], agent_id=agent, k=5)
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    async with await MemoryStore.open(url) as store:
        everything = await store.list(agent_id=agent, limit=10_000, with_vectors=True)
        assert len(everything) == 120 + 3 * 15 * 20
        await assert_exact(store, agent, everything, unit_vectors(5, 99))
    header = _header(path)
    assert header.max_rowid <= 120 + 900 and header.count <= len(everything)


async def test_loads_range_by_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file is built, and the tail read, a rowid range at a time (at 1M memories one
    read of everything held ~3.9 GB): ranges smaller than the table still give it all."""
    monkeypatch.setattr(vector_index, "CHUNK_ROWIDS", 7)
    path = tmp_path / "m.db"
    agent, memories = await _filled(path, n=60)
    assert _header(path).count == 60
    async with await MemoryStore.open(f"sqlite:///{path}") as store:
        rooms = [(await store.ensure_room(agent, "discord", f"r{i}")).id for i in range(5)]
        memories += await add_random(store, agent, unit_vectors(23, 12), rooms=rooms)
    await _check(path, agent, memories)


async def test_a_process_that_keeps_searching_copies_a_small_base(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    agent, memories = await _filled(path)
    async with await MemoryStore.open(f"sqlite:///{path}") as store:
        index = store._backend.index  # type: ignore[attr-defined]
        await assert_exact(store, agent, memories, unit_vectors(2, 13))  # 6 searches
        assert not index.base.flags.writeable  # still the mapping
        await assert_exact(store, agent, memories, unit_vectors(3, 14))
        assert index.base.flags.owndata  # copied (see COPY_MAX_BYTES), still exact


ADD_ONE = textwrap.dedent(
    """
    import asyncio, sys
    import numpy as np
    from carrier_cli.memory.store import MemoryStore
    from carrier_cli.memory.types import Memory

    async def main(url, values):
        async with await MemoryStore.open(url) as store:
            agent = await store.ensure_agent("files")
            vector = np.asarray([float(v) for v in values.split(",")], np.float32)
            [memory] = await store.add_many(
                [Memory(agent_id=agent, content={"text": "from another process"},
                        embedding=vector)], dedupe=False)
            print(memory.id.hex)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def test_a_warm_search_sees_what_another_process_changed(tmp_path: Path) -> None:
    """A warm search scans the index as it stands and checks the table's state after, in
    the statement that reads its hits: rows another process added, deleted or updated
    since the last search are all seen (exact answers every time)."""
    path = tmp_path / "m.db"
    agent, memories = await _filled(path)
    url = f"sqlite:///{path}"
    async with await MemoryStore.open(url) as store:
        await assert_exact(store, agent, memories, unit_vectors(2, 30))  # warm now
        query = unit_vectors(1, 31)[0]
        added = subprocess.run(
            [sys.executable, "-c", ADD_ONE, url, ",".join(str(v) for v in query)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()[-1]
        [hit] = await store.search(query, agent_id=agent, k=1)
        assert hit.memory.id.hex == added and hit.score == pytest.approx(1.0)
        memories = await store.list(agent_id=agent, limit=1000, with_vectors=True)
        await assert_exact(store, agent, memories, unit_vectors(2, 32))
        with sqlite3.connect(path) as db:  # deleted and re-embedded behind its back
            db.execute("DELETE FROM memories WHERE id = ?", (added,))
            moved = memories[5]
            db.execute(
                "UPDATE memories SET embedding = ? WHERE id = ?",
                (np.asarray(query, np.float32).tobytes(), moved.id.hex),
            )
        [hit] = await store.search(query, agent_id=agent, k=1)
        assert hit.memory.id == moved.id and hit.score == pytest.approx(1.0)
        memories = await store.list(agent_id=agent, limit=1000, with_vectors=True)
        await assert_exact(store, agent, memories, unit_vectors(2, 33))


async def test_a_row_added_during_the_scan_is_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The state is checked after the scan: a row committed by another connection while
    the warm index was being scanned makes the search refresh and scan again."""
    path = tmp_path / "m.db"
    agent, memories = await _filled(path)
    async with await MemoryStore.open(f"sqlite:///{path}") as store:
        index = store._backend.index  # type: ignore[attr-defined]
        await assert_exact(store, agent, memories, unit_vectors(1, 40))
        query = unit_vectors(1, 41)[0]
        new_id = uuid.uuid4().hex
        scan = index.search_rows  # what every search scans through
        calls: list[int] = []

        def scan_then_write(*args: object, **kwargs: object) -> object:
            found = scan(*args, **kwargs)
            if not calls:  # another writer commits right after the first scan
                with sqlite3.connect(path) as db:
                    row = db.execute(
                        "SELECT agent_id, content, content_hash, created_at, embedding_model, "
                        '"unique", metadata FROM memories LIMIT 1'
                    ).fetchone()
                    db.execute(
                        "INSERT INTO memories (id, agent_id, kind, content, content_hash, "
                        'created_at, embedding, embedding_model, "unique", metadata) '
                        "VALUES (?, ?, 'fact', ?, ?, ?, ?, ?, ?, ?)",
                        (new_id, row[0], row[1], row[2], row[3], query.tobytes(), *row[4:]),
                    )
            calls.append(1)
            return found

        monkeypatch.setattr(index, "search_rows", scan_then_write)
        [hit] = await store.search(query, agent_id=agent, k=1)
        assert hit.memory.id.hex == new_id and len(calls) == 2


async def test_a_warm_search_does_not_refresh_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One statement per warm search (the hits and the table's state): the refresh (its
    own statement, under a lock) runs only when that state has moved (and for the next
    search, which finds it standing still again)."""
    path = tmp_path / "m.db"
    agent, memories = await _filled(path)
    async with await MemoryStore.open(f"sqlite:///{path}") as store:
        index = store._backend.index  # type: ignore[attr-defined]
        await assert_exact(store, agent, memories, unit_vectors(1, 50))
        refresh = index.refresh
        refreshes: list[str] = []

        async def counted(conn: object, model: str) -> None:
            refreshes.append(model)
            await refresh(conn, model)

        monkeypatch.setattr(index, "refresh", counted)
        await assert_exact(store, agent, memories, unit_vectors(2, 51))
        assert refreshes == []
        with sqlite3.connect(path) as db:
            db.execute("DELETE FROM memories WHERE id = ?", (memories[0].id.hex,))
        await assert_exact(store, agent, memories[1:], unit_vectors(1, 52))
        # The search that saw the delete, and the next (the table stood still since).
        assert len(refreshes) == 2
        await assert_exact(store, agent, memories[1:], unit_vectors(1, 53))
        assert len(refreshes) == 2


async def test_a_table_that_keeps_moving_is_scanned_once_a_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scanning first and checking after scans twice when the table has moved: with
    another writer between every search, only the first search after the writes began
    does; the others refresh first (one scan each), until the table stands still."""
    path = tmp_path / "m.db"
    agent, memories = await _filled(path)
    url = f"sqlite:///{path}"
    async with await MemoryStore.open(url) as store, await MemoryStore.open(url) as writer:
        index = store._backend.index  # type: ignore[attr-defined]
        await assert_exact(store, agent, memories, unit_vectors(1, 60))  # warm
        scan = index.search_rows  # what every search scans through
        scans: list[int] = []

        def counted(*args: object, **kwargs: object) -> object:
            scans.append(1)
            return scan(*args, **kwargs)

        monkeypatch.setattr(index, "search_rows", counted)
        for seed in range(61, 67):
            memories += await add_random(writer, agent, unit_vectors(1, seed), rooms=[])
            query = unit_vectors(1, seed + 100)[0]
            hits = await store.search(query, agent_id=agent, k=5, threshold=-1.0)
            assert [h.memory.id for h in hits] == numpy_top(memories, query, 5)
        assert len(scans) == 6 + 1
        scans.clear()
        for seed in range(70, 73):  # standing still: one statement a search again
            await store.search(unit_vectors(1, seed)[0], agent_id=agent, k=5)
        assert len(scans) == 3


def _table_rowids(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        return {i: r for r, i in db.execute("SELECT rowid, id FROM memories")}


def _assert_rowids(index: vector_index.SqliteVectorIndex, table: dict[str, int]) -> None:
    assert index.size > 0
    hexes, rowids = index.named(list(range(index.size)))
    assert rowids == [table[hexed] for hexed in hexes]
    assert hexes == [index._id(row).hex for row in range(index.size)]


async def test_every_row_of_the_index_knows_its_rowid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A warm search reads its hits by rowid: the rowids must be right whichever way the
    rows came in (a rebuild, the file mapped, rows this process wrote, rows another one
    wrote, a tail appended to the file)."""
    monkeypatch.setattr(vector_index, "FLUSH_ROWS", 30)
    path = tmp_path / "m.db"
    url = f"sqlite:///{path}"
    agent, memories = await _filled(path)
    with sqlite3.connect(path) as db:  # rowids no longer dense: a gap after a delete
        db.execute("DELETE FROM memories WHERE id = ?", (memories[5].id.hex,))
    memories.pop(5)
    rooms = [m.room_id for m in memories[:3] if m.room_id is not None]
    async with await MemoryStore.open(url) as store, await MemoryStore.open(url) as other:
        index = store._backend.index  # type: ignore[attr-defined]
        await assert_exact(store, agent, memories, unit_vectors(1, 80))  # rebuilt
        _assert_rowids(index, _table_rowids(path))
        memories += await add_random(store, agent, unit_vectors(10, 81), rooms=rooms)  # written
        await assert_exact(store, agent, memories, unit_vectors(1, 82))
        memories += await add_random(other, agent, unit_vectors(25, 83), rooms=rooms)  # read
        await assert_exact(store, agent, memories, unit_vectors(2, 84))  # flushed
        assert index.tail_count < 30
        _assert_rowids(index, _table_rowids(path))
    async with await MemoryStore.open(url) as store:  # the file mapped
        await assert_exact(store, agent, memories, unit_vectors(1, 85))
        _assert_rowids(store._backend.index, _table_rowids(path))  # type: ignore[attr-defined]


async def test_rowids_that_disagree_with_the_table_are_caught_and_rebuilt(
    tmp_path: Path,
) -> None:
    """Damaged rowids inside the committed part, header intact: a warm search by rowid
    finds other memories than the index names, leaves them out and searches the slow way,
    which rebuilds the file; the answers stay exact."""
    path = tmp_path / "m.db"
    agent, memories = await _filled(path)
    before = _header(path)
    rows = vector_file.directory_for(path) / f"{before.gen}.rows"
    data = np.fromfile(rows, dtype=vector_file.ROW)
    data["rowid"] = np.roll(data["rowid"], 1)
    data.tofile(rows)
    async with await MemoryStore.open(f"sqlite:///{path}") as store:
        await store.search(unit_vectors(1, 90)[0], agent_id=agent, k=1)  # maps the file
        await assert_exact(store, agent, memories, unit_vectors(4, 91))
    assert _header(path).gen != before.gen


async def test_a_format_1_file_is_rebuilt(tmp_path: Path) -> None:
    """Files written before the rowid was in the records (format 1) are rebuilt once."""
    path = tmp_path / "m.db"
    agent, memories = await _filled(path)
    before = _header(path)
    folder = vector_file.directory_for(path)
    body = (
        (folder / "header")
        .read_bytes()
        .rpartition(b"\n")[0]
        .replace(b'"format": 2', b'"format": 1')
    )
    import zlib

    (folder / "header").write_bytes(body + b"\n" + f"{zlib.crc32(body):08x}".encode())
    assert vector_file.read_header(folder) is None
    await _check(path, agent, memories)
    assert _header(path).gen != before.gen
