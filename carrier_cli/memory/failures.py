"""Database failures that are not bugs: what they are, in the operator's words.

A damaged SQLite file, a read-only database, a full disk or a PostgreSQL server that went
away used to reach the command line as a raw driver error, reported as "Unexpected error
... This is a bug in Carrier", or with advice about hosts and ports for a local file. The
engines the backends make send every driver error through their backend's classifier
(`memory.sqlite.failures`, `memory.postgres.failures`, from SQLAlchemy's `handle_error`
hook), so each of these is named once, for every command and the runtime alike, and
everything else keeps its SQLAlchemy type (the code that catches IntegrityError or a
missing table still sees it). `memory.backends.storage_failure(exc, url)` asks the right
one for a URL.
"""

from __future__ import annotations

from collections.abc import Iterator

from carrier_cli.errors import InputError, RuntimeFailure


class StorageFailure(RuntimeFailure):
    """The database cannot do its job for a reason outside Carrier. `kind` is one of
    `not_a_database`, `damaged`, `disk_full`, `read_only`, `cannot_open`, `io_error`,
    `server_gone`, `lock_timeout` (import adds how far it got to the message)."""

    unavailable = True  # the HTTP API answers 503 (try again later), not 502

    def __init__(self, kind: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.kind = kind


class NotADatabase(StorageFailure, InputError):
    """DATABASE_URL points at a file that is not an SQLite database: bad input, exit 2."""

    exit_code = 2


def chain(exc: BaseException) -> Iterator[BaseException]:
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


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
