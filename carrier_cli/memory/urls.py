"""Database URLs as operators write them, turned into what SQLAlchemy's async drivers need."""

from __future__ import annotations

import re
from pathlib import Path

from carrier_cli.errors import InputError
from carrier_cli.paths import carrier_paths


def default_sqlite_path() -> Path:
    return carrier_paths().default_database


def normalise_url(url: str | None) -> str:
    """Accept postgres://, postgresql://, postgresql+asyncpg://, sqlite:///file or a path."""
    if not url:
        path = default_sqlite_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{path}"
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        path = Path(url).expanduser().resolve()
        return f"sqlite+aiosqlite:///{path}"
    base = scheme.split("+", 1)[0].lower()
    if base in ("postgres", "postgresql"):
        # libpq spells TLS `sslmode=require` (hosted PostgreSQL URLs do); asyncpg: `ssl=`.
        rest = re.sub(r"([?&])sslmode=", r"\1ssl=", rest)
        return f"postgresql+asyncpg://{rest}"
    if base == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    raise InputError(
        f"Database URL scheme `{scheme}://` is not supported (from DATABASE_URL or database_url).",
        hint="Use postgresql://user:password@host:5432/dbname for PostgreSQL + pgvector, or "
        "leave it unset for the built-in SQLite database.",
    )


def backend_of(url: str) -> str:
    return "postgresql" if url.startswith("postgresql") else "sqlite"


def mask_url(url: str) -> str:
    """Hide the password: postgresql://carrier:***@db/carrier."""
    return re.sub(
        r"(://[^:/@]*):([^@]*)@",
        lambda m: f"{m.group(1)}:***@" if m.group(2) else f"{m.group(1)}@",
        url,
    )


def sqlite_file(url: str) -> Path | None:
    if backend_of(url) != "sqlite":
        return None
    rest = url.split("://", 1)[1]
    if rest.startswith("/") and rest not in ("/", "/:memory:"):
        return Path(rest[1:])
    return None
