"""What every engine of Carrier's database shares, whatever the backend: the execution
options its transactions are started with and the hook that turns driver errors into
operator-facing `StorageFailure`s. The engines themselves are made by the backends
(`memory.sqlite.engine`, `memory.postgres.engine`), chosen by `memory.backends`."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, ExceptionContext, event

# Execution options. IMMEDIATE: a write transaction (SQLite: BEGIN IMMEDIATE, so a
# deferred transaction cannot fail with "database is locked" when it starts to write).
# AUTOCOMMIT_READ: a read without BEGIN/COMMIT round trips. MIGRATION_LOCK: set on an
# engine whose migrations must be serialised by a statement (PostgreSQL's advisory lock),
# run first in the migration's transaction (`migrate.upgrade`).
IMMEDIATE = "carrier_immediate"
AUTOCOMMIT_READ = "carrier_autocommit_read"
MIGRATION_LOCK = "carrier_migration_lock"

ErrorHook = Callable[[ExceptionContext], BaseException | None]


def explain_errors(engine: Engine, explain: ErrorHook) -> None:
    """Every driver error of this engine passes through `explain` (the backend's): a
    damaged or read-only file, a full disk, a server that went away become one clear
    StorageFailure (SQLAlchemy still invalidates a dead connection first); any other
    error is left as SQLAlchemy raised it (`explain` returns None)."""
    event.listen(engine, "handle_error", explain)
