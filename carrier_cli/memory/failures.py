"""Database failures that are not bugs: what they are, in the operator's words.

A damaged SQLite file, a read-only database, a full disk or a PostgreSQL server that went
away used to reach the command line as a raw driver error, reported as "Unexpected error
... This is a bug in Carrier", or with advice about hosts and ports for a local file. The
engines made by `carrier_cli.memory.engine` send every driver error through
`storage_failure` (SQLAlchemy's `handle_error` hook), so each of these is named once, for
every command and the runtime alike, and everything else keeps its SQLAlchemy type (the
code that catches IntegrityError or a missing table still sees it).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from carrier_cli.errors import InputError, RuntimeFailure
from carrier_cli.memory.urls import mask_url, sqlite_file

# SQLite primary result codes (sqlite3.Error.sqlite_errorcode & 0xFF).
SQLITE_READONLY, SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_NOTADB = (
    8,
    10,
    11,
    13,
    14,
    26,
)

# PostgreSQL SQLSTATEs of a connection lost or ended by the server (not "cannot connect",
# 08001/08004/57P03: _connect_check words those, with host and port advice).
PG_GONE_STATES = ("08000", "08003", "08006", "57P01", "57P02")
PG_DISK_FULL, PG_READ_ONLY = "53100", "25006"
PG_CORRUPT = ("XX001", "XX002")


class StorageFailure(RuntimeFailure):
    """The database cannot do its job for a reason outside Carrier. `kind` is one of
    `not_a_database`, `damaged`, `disk_full`, `read_only`, `cannot_open`, `io_error`,
    `server_gone` (import adds how far it got to the message)."""

    def __init__(self, kind: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.kind = kind


class NotADatabase(StorageFailure, InputError):
    """DATABASE_URL points at a file that is not an SQLite database: bad input, exit 2."""

    exit_code = 2


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what it wraps (SQLAlchemy's `.orig`) and its causes, each once."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen or len(seen) > 12:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        wrapped = orig if isinstance(orig, BaseException) else None
        todo.extend([wrapped, current.__cause__, current.__context__])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _writable(path: Path) -> bool:
    """access(2) says EROFS even to root, so this also catches a read-only mount."""
    target = path if path.exists() else path.parent
    return os.access(target, os.W_OK) and os.access(path.parent, os.W_OK)


def sqlite_failure(error: sqlite3.Error, url: str) -> StorageFailure | None:
    path = sqlite_file(url)
    name = str(path) if path is not None else mask_url(url)
    code = getattr(error, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(error).lower()
    check = f"Run `carrier db check` to see what is damaged; restore {name} from a backup, or "
    check += "move it aside to start a new, empty database."
    if primary == SQLITE_NOTADB or "file is not a database" in text:
        return NotADatabase(
            "not_a_database",
            f"The database file {name} is not an SQLite database (or its header is damaged).",
            hint="Point DATABASE_URL (or database_url in config.yaml) at Carrier's database "
            f"file, or unset it to use the default. {check}",
        )
    if primary == SQLITE_CORRUPT or "malformed" in text:
        return StorageFailure(
            "damaged", f"The database file {name} is damaged ({_first_line(error)}).", hint=check
        )
    if primary == SQLITE_FULL or "disk is full" in text:
        return StorageFailure(
            "disk_full",
            f"The disk is full: the database {name} cannot grow ({_first_line(error)}).",
            hint="Free some space on that disk (or move the database to another one and "
            "point DATABASE_URL at it), then run the command again (the transaction that "
            "failed was rolled back).",
        )
    readonly = primary == SQLITE_READONLY or "readonly database" in text
    cannot_open = primary == SQLITE_CANTOPEN or "unable to open database file" in text
    if cannot_open and path is not None and path.parent.exists() and not _writable(path):
        readonly = True  # WAL cannot create its -shm file next to a read-only database
    if readonly:
        return StorageFailure(
            "read_only",
            f"The database {name} is read-only: Carrier needs to write the file and its "
            "-wal and -shm files next to it.",
            hint=f"Make {name} and its directory writable by this user (or remount the disk "
            "read-write), or point DATABASE_URL at a writable copy.",
        )
    if cannot_open:
        return StorageFailure(
            "cannot_open",
            f"Cannot open the database file {name} ({_first_line(error)}).",
            hint="Check that its directory exists and is accessible, or fix DATABASE_URL "
            "(or database_url in config.yaml).",
        )
    if primary == SQLITE_IOERR:
        return StorageFailure(
            "io_error",
            f"Reading or writing the database file {name} failed: {_first_line(error)}.",
            hint=f"Check the disk (full, failing, or a network mount gone). {check}",
        )
    return None


def server_gone(url: str, error: BaseException, detail: str | None = None) -> StorageFailure:
    """The server ended the connection: shut down, restarted, or the backend terminated."""
    return StorageFailure(
        "server_gone",
        f"The PostgreSQL server closed the connection ({mask_url(url)}: "
        f"{detail or _first_line(error)}).",
        hint="Check that the server is running (and was not restarted or out of memory), "
        "then run the command again.",
    )


def _postgres_failure(error: BaseException, url: str) -> StorageFailure | None:
    shown = mask_url(url)
    state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    name = type(error).__name__
    gone = state in PG_GONE_STATES or name in (
        "ConnectionDoesNotExistError",
        "ConnectionFailureError",
        "AdminShutdownError",
        "CrashShutdownError",
    )
    if not gone and name == "InterfaceError" and "connection" in str(error).lower():
        gone = "closed" in str(error).lower()
    if not gone and state is None:
        gone = isinstance(error, ConnectionResetError | BrokenPipeError | ConnectionAbortedError)
    if gone:
        return server_gone(url, error)
    if state == PG_DISK_FULL:
        return StorageFailure(
            "disk_full",
            f"The disk of the PostgreSQL server is full ({shown}: {_first_line(error)}).",
            hint="Free space on the database server, then run the command again.",
        )
    if state == PG_READ_ONLY:
        return StorageFailure(
            "read_only",
            f"The PostgreSQL database {shown} is read-only ({_first_line(error)}).",
            hint="Point DATABASE_URL at the primary server, not a read-only replica.",
        )
    if state in PG_CORRUPT:
        return StorageFailure(
            "damaged",
            f"The PostgreSQL database {shown} reports damaged data ({_first_line(error)}).",
            hint="Run `carrier db check`, and restore from a backup.",
        )
    return None


def storage_failure(exc: BaseException, url: str) -> StorageFailure | None:
    """What `exc` (or the driver error it wraps) means for the operator, or None when it
    is none of the failures above (then it stays what it was)."""
    for error in _chain(exc):
        if isinstance(error, StorageFailure):
            return error
        if isinstance(error, sqlite3.Error):
            return sqlite_failure(error, url)
        if url.startswith("postgresql"):
            found = _postgres_failure(error, url)
            if found is not None:
                return found
    return None
