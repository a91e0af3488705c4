"""The one place that picks a backend from a database URL.

Everything else asks the backend it was given (MemoryStore._backend, or the class this
module returns) rather than looking at the URL's scheme or the SQL dialect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from carrier_cli.memory.urls import backend_of

if TYPE_CHECKING:
    from carrier_cli.memory.async_engine import AsyncEngine
    from carrier_cli.memory.failures import StorageFailure
    from carrier_cli.memory.migrate import SchemaState
    from carrier_cli.memory.postgres.backend import PostgresBackend
    from carrier_cli.memory.sqlite.backend import SqliteBackend

    BackendClass = type[SqliteBackend] | type[PostgresBackend]
    Backend = SqliteBackend | PostgresBackend


def backend_class(url: str) -> BackendClass:
    """The backend for a normalised URL (`urls.normalise_url`). Imported on demand: a
    command that uses one database never loads the other's code."""
    if backend_of(url) == "postgresql":
        from carrier_cli.memory.postgres.backend import PostgresBackend

        return PostgresBackend
    from carrier_cli.memory.sqlite.backend import SqliteBackend

    return SqliteBackend


def make_engine(url: str) -> AsyncEngine:
    """An async engine for the URL, set up as its backend needs (see memory.engine)."""
    return backend_class(url).make_engine(url)


def open_backend(url: str, engine: AsyncEngine | None = None) -> Backend:
    """The backend on `engine` (made here when None), owning its connections from now on."""
    cls = backend_class(url)
    return cls(engine if engine is not None else cls.make_engine(url), url)


def storage_failure(exc: BaseException, url: str) -> StorageFailure | None:
    """What `exc` means for the operator (a damaged file, a server gone...), or None."""
    return backend_class(url).storage_failure(exc, url)


def escaped_failure(exc: BaseException) -> StorageFailure | None:
    """What a driver error that got past the engines' hook means, or None. Most reach the
    operator through `storage_failure` above; a few are raised outside a statement (a
    rollback or a pool check-in after the server went away, seen as "Unexpected error:
    ConnectionDoesNotExistError" when every backend of an import was killed) and reached
    the command line raw. Asked only when a PostgreSQL driver is loaded, so nothing is
    imported for it; the URL is not known here."""
    import sys

    if "asyncpg" in sys.modules or "psycopg" in sys.modules:
        from carrier_cli.memory.postgres.failures import storage_failure as postgres

        return postgres(exc, "the PostgreSQL database")
    return None  # SQLite raises inside statements only: its errors are named there


async def connect_check(engine: AsyncEngine, url: str) -> SchemaState:
    """The schema state, with a failure to connect said in the operator's words."""
    from carrier_cli.memory.checks import connect_check as check

    cls = backend_class(url)
    return await check(engine, url, explain=cls.storage_failure, hint=cls.connect_hint)


async def open_database(full_url: str, *, create: bool) -> Backend:
    """The backend for a normalised URL, its schema checked: an empty database is
    initialised (create=True); an older schema is never upgraded implicitly (that is
    `carrier db upgrade`, run on purpose)."""
    from carrier_cli.errors import InputError
    from carrier_cli.memory.migrate import upgrade
    from carrier_cli.memory.urls import mask_url

    backend = open_backend(full_url)
    engine = backend.engine
    try:
        state = await connect_check(engine, full_url)
        if state.status == "empty":
            if not create:
                raise InputError(
                    f"The database {mask_url(full_url)} has not been initialised.",
                    hint="Run `carrier db init`.",
                )
            await upgrade(engine)
            await engine.dispose()  # reconnect: the vector type exists only now
        elif state.status == "behind":
            raise InputError(
                f"The database {mask_url(full_url)} has an older schema "
                f"(revision {state.revision or 'none'}; this Carrier needs "
                f"{', '.join(state.heads)}).",
                hint="Run `carrier db upgrade` to migrate it (back up the database first).",
            )
        elif state.status == "unknown":
            raise InputError(
                f"The database {mask_url(full_url)} is at schema revision "
                f"{state.revision}, which this version of Carrier does not know; it was "
                "probably written by a newer Carrier.",
                hint="Upgrade Carrier, or point DATABASE_URL at another database.",
            )
    except BaseException:
        await engine.dispose()
        raise
    return backend
