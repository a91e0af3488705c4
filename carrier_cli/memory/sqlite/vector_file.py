"""The vector file: what the SQLite vector index maps in a new process instead of reading
every vector back out of SQLite (issue 15: 0.74 s of a 1.32 s `carrier memory search` at
100k memories, ~6 s at 1M, went into that read).

Beside `carrier.db` sits a directory `carrier.db-vectors/` holding one *generation* of
three append-only files and a header that says how much of them counts:

* `<gen>.vec`: float32 vectors, `count x dim`, row-major (what search multiplies by);
* `<gen>.rows`: one 48-byte record per vector (`ROW`: memory id, agent/room/entity codes,
  kind, unique, created_at, rowid) for the filters and for naming the hits (a warm search
  reads its hit rows by rowid, each row's id checked against the record's);
* `<gen>.codes`: the 16-byte uuids the codes stand for, in code order;
* `header`: JSON with a CRC32, replaced atomically (write, fsync, rename): the model,
  dimension, `count` and `codes` (the committed lengths), and where the file stands
  against the database: `store_state.memories_rev` (bumped by triggers on every update
  or delete of a memory), the largest rowid the file has seen, and the rowid and id of
  the last vector it holds.

Crash safety comes from the order of writes: data is appended past the committed lengths
and fsync'd before the header that commits it is renamed into place, so a torn append is
a tail no header counts (the next writer truncates it), and a torn header fails its CRC.
A file that is shorter than its header says, a header that does not parse, a revision or
a last row that does not match the database: the file is rebuilt, never trusted. Writers
(a rebuild, or an append of the rows added since) take an flock on `lock`; readers need
none: they map only the committed prefix, which no writer changes, and a rebuild writes
a new generation and unlinks the old one, which stays readable through open mappings.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import mmap
import os
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

# 2: the rowid in each record (format 1 files are rebuilt once, on open).
FORMAT = 2
ROW = np.dtype(
    [
        ("id", "V16"),
        ("agent", "<i4"),
        ("room", "<i4"),
        ("entity", "<i4"),
        ("kind", "i1"),
        ("unique", "u1"),
        ("pad", "V2"),
        ("created", "<i8"),
        ("rowid", "<i8"),
    ]
)
CODE_BYTES = 16
# How long a process waits for another one's rebuild before loading in memory on its
# own (a rebuild at 1M memories takes ~10 s on the 2-core development machine).
LOCK_WAIT_S = 120.0


def directory_for(database: Path) -> Path:
    return database.with_name(database.name + "-vectors")


@dataclass(frozen=True)
class Header:
    gen: str  # names this generation's files
    model: str
    dim: int  # 0 while the file holds no vector
    rev: int  # store_state.memories_rev the file was written at
    max_rowid: int  # every memory up to this rowid is in the file (or has no vector)
    last_rowid: int  # rowid of the last vector in the file (0: none)
    last_id: str  # its memory id, hex: tells a replaced database from this one
    count: int  # vectors committed
    codes: int  # uuid codes committed


def read_header(folder: Path) -> Header | None:
    """The committed header, None when missing or damaged (then the file is rebuilt)."""
    try:
        raw = (folder / "header").read_bytes()
        body, _, crc = raw.rpartition(b"\n")
        if int(crc, 16) != zlib.crc32(body):
            return None
        fields = json.loads(body)
        if fields.pop("format", None) != FORMAT:
            return None
        return Header(**fields)
    except (OSError, ValueError, TypeError):
        return None


def write_header(folder: Path, header: Header) -> None:
    body = json.dumps({"format": FORMAT, **asdict(header)}, sort_keys=True).encode()
    temporary = folder / f"header.{os.getpid()}.tmp"
    with open(temporary, "wb") as out:
        out.write(body + b"\n" + f"{zlib.crc32(body):08x}".encode())
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, folder / "header")
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Mapped:
    """A header's committed prefix of the three files, mapped read-only."""

    def __init__(self, folder: Path, header: Header) -> None:
        self.header = header
        dim, count = header.dim, header.count
        self.vectors = _map(folder / f"{header.gen}.vec", count * dim * 4, np.float32)
        self.vectors = self.vectors.reshape(count, dim) if dim else self.vectors.reshape(0, 0)
        self.rows = _map(folder / f"{header.gen}.rows", count * ROW.itemsize, ROW)
        codes = _map(folder / f"{header.gen}.codes", header.codes * CODE_BYTES, np.uint8)
        self.codes = [bytes(codes[i : i + CODE_BYTES]) for i in range(0, len(codes), CODE_BYTES)]


def _map(path: Path, length: int, dtype: Any) -> np.ndarray:
    """The first `length` bytes of `path` as an array; ValueError when it is shorter."""
    if length == 0:
        return np.zeros(0, dtype=dtype)
    with open(path, "rb") as source:
        if os.fstat(source.fileno()).st_size < length:
            raise ValueError(f"{path} is shorter than its header says")
        mapping = mmap.mmap(source.fileno(), length, access=mmap.ACCESS_READ)
    return np.frombuffer(mapping, dtype=dtype)


def try_map(folder: Path, header: Header) -> Mapped | None:
    try:
        return Mapped(folder, header)
    except (OSError, ValueError):
        return None


class Appender:
    """Appends to one generation's files past the committed lengths, then commits."""

    def __init__(self, folder: Path, header: Header, *, new: bool) -> None:
        self.folder = folder
        self.header = header
        mode = "wb" if new else "r+b"
        self.files = {}
        for suffix, committed in (
            ("vec", header.count * header.dim * 4),
            ("rows", header.count * ROW.itemsize),
            ("codes", header.codes * CODE_BYTES),
        ):
            handle = open(folder / f"{header.gen}.{suffix}", mode)  # noqa: SIM115 (closed in commit)
            handle.truncate(committed)  # drop a torn tail no header counts
            handle.seek(committed)
            self.files[suffix] = handle

    def append(self, vectors: np.ndarray, rows: np.ndarray, codes: list[bytes]) -> None:
        self.files["vec"].write(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
        self.files["rows"].write(np.ascontiguousarray(rows, dtype=ROW).tobytes())
        self.files["codes"].write(b"".join(codes))

    def write_raw(self, vectors: bytes, rows: np.ndarray, codes: list[bytes]) -> None:
        self.files["vec"].write(vectors)
        self.files["rows"].write(rows.tobytes())
        self.files["codes"].write(b"".join(codes))

    def commit(self, header: Header) -> None:
        for handle in self.files.values():
            handle.flush()
            os.fsync(handle.fileno())
        self.close()
        write_header(self.folder, header)

    def close(self) -> None:
        for handle in self.files.values():
            handle.close()
        self.files = {}


def remove_other_generations(folder: Path, keep: str) -> None:
    """Unlink the files of older generations (a process that maps one keeps reading it)."""
    for path in folder.iterdir():
        stem, _, suffix = path.name.partition(".")
        if suffix in ("vec", "rows", "codes") and stem != keep:
            with contextlib.suppress(OSError):
                path.unlink()
        elif path.name.endswith(".tmp") and time.time() - _mtime(path) > 60:
            with contextlib.suppress(OSError):
                path.unlink()  # a header a crashed writer never renamed


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()


@contextlib.contextmanager
def try_lock(folder: Path) -> Iterator[bool]:
    """The writers' lock without waiting: yields whether it was taken."""
    with open(folder / "lock", "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.asynccontextmanager
async def wait_lock(folder: Path, wait_s: float = LOCK_WAIT_S) -> AsyncIterator[bool]:
    """The writers' lock, polled so the event loop keeps running while another process
    rebuilds; yields False when it did not come within `wait_s`."""
    deadline = time.monotonic() + wait_s
    while True:
        with try_lock(folder) as taken:
            if taken or time.monotonic() > deadline:
                yield taken
                return
        await asyncio.sleep(0.05)


def folder_beside(database: Path) -> Path | None:
    """The vector directory beside `database`, created if need be; None when it neither
    exists nor can be made (a read-only directory): the index then lives in memory only.
    Writes into a folder that exists but is read-only fail with OSError, which the index
    takes the same way."""
    folder = directory_for(database)
    try:
        folder.mkdir(exist_ok=True)
    except OSError:
        return None
    return folder
