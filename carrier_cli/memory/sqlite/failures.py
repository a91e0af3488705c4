"""SQLite's failures in the operator's words (see `memory.failures`)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from carrier_cli.memory.failures import NotADatabase, StorageFailure, chain, first_line
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


def storage_failure(exc: BaseException, url: str) -> StorageFailure | None:
    """What `exc` (or the driver error it wraps) means for the operator, or None when it
    is none of the failures below (then it stays what it was)."""
    for error in chain(exc):
        if isinstance(error, StorageFailure):
            return error
        if isinstance(error, sqlite3.Error):
            return sqlite_failure(error, url)
    return None


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
            "damaged", f"The database file {name} is damaged ({first_line(error)}).", hint=check
        )
    if primary == SQLITE_FULL or "disk is full" in text:
        return StorageFailure(
            "disk_full",
            f"The disk is full: the database {name} cannot grow ({first_line(error)}).",
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
            f"Cannot open the database file {name} ({first_line(error)}).",
            hint="Check that its directory exists and is accessible, or fix DATABASE_URL "
            "(or database_url in config.yaml).",
        )
    if primary == SQLITE_IOERR:
        return StorageFailure(
            "io_error",
            f"Reading or writing the database file {name} failed: {first_line(error)}.",
            hint=f"Check the disk (full, failing, or a network mount gone). {check}",
        )
    return None
