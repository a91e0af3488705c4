"""Database URLs as operators write them."""

from __future__ import annotations

from pathlib import Path

import pytest

from carrier_cli.errors import InputError
from carrier_cli.memory.urls import backend_of, mask_url, normalise_url


def test_postgres_spellings_all_use_asyncpg() -> None:
    for scheme in ("postgres", "postgresql", "postgresql+asyncpg", "postgresql+psycopg2"):
        url = normalise_url(f"{scheme}://u:p@db.example:5432/carrier")
        assert url == "postgresql+asyncpg://u:p@db.example:5432/carrier"
        assert backend_of(url) == "postgresql"
    hosted = normalise_url("postgres://u:p@h/db?sslmode=require&application_name=x")
    assert hosted.endswith("/db?ssl=require&application_name=x")


def test_sqlite_default_and_paths(carrier_home: Path, tmp_path: Path) -> None:
    assert normalise_url(None) == f"sqlite+aiosqlite:///{carrier_home / 'data' / 'carrier.db'}"
    assert normalise_url(str(tmp_path / "x.db")) == f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    assert normalise_url("sqlite:///rel.db") == "sqlite+aiosqlite:///rel.db"
    assert backend_of(normalise_url(None)) == "sqlite"


def test_unknown_schemes_are_input_errors() -> None:
    with pytest.raises(InputError, match="mysql://"):
        normalise_url("mysql://u:p@h/db")


def test_passwords_are_masked() -> None:
    assert mask_url("postgresql+asyncpg://carrier:s3cr3t@db:5432/c") == (
        "postgresql+asyncpg://carrier:***@db:5432/c"
    )
    assert mask_url("postgresql+asyncpg://postgres:@/c?host=/tmp/s") == (
        "postgresql+asyncpg://postgres@/c?host=/tmp/s"
    )
    assert mask_url("postgresql+asyncpg://db/c") == "postgresql+asyncpg://db/c"
