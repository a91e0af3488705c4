"""Database URLs as operators write them."""

from __future__ import annotations

from pathlib import Path

import pytest

from carrier_cli.errors import InputError
from carrier_cli.memory.urls import (
    backend_of,
    check_database_url,
    mask_url,
    normalise_url,
    url_password_forms,
)


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


def test_refused_urls_are_input_errors_not_guesses(tmp_path: Path) -> None:
    # Library callers that pass a URL in get the same checks as the settings layer.
    for bad in ("notaurl", "postgresql://u:SECRETPW@[::1/db", "postgresql://u:p@ss@h/db"):
        with pytest.raises(InputError) as info:
            normalise_url(bad)
        assert "SECRETPW" not in info.value.message
        assert "sqlite:///" in (info.value.hint or "")
    assert not (tmp_path / "notaurl").exists()


def test_check_database_url() -> None:
    for good in (
        "sqlite:///rel.db",
        "sqlite+aiosqlite:////abs.db",
        "/abs/carrier.db",
        "~/carrier.db",
        "../carrier.db",
        "postgresql://u:p%40ss@[::1]:5432/db",
        "postgres://h/db",
    ):
        check_database_url(good)
    for bad, why in (
        ("notaurl", "neither a URL nor a file path"),
        ("carrier.db", "neither a URL nor a file path"),
        ("postgresql://u:p@[::1/db", "not a valid URL"),
        ("postgresql://u:p@h:port/db", "not a valid URL"),
        ("postgresql://u:p@h:0/db", "outside 1-65535"),
        ("postgresql://u:p@ss@h/db", "unencoded `@`"),
        ("sqlite://x.db", "third slash"),
        ("mysql://h/db", "`mysql://`"),
        ("", "empty"),
    ):
        with pytest.raises(ValueError, match=why):
            check_database_url(bad)


def test_url_password_forms_for_the_scrubber() -> None:
    assert url_password_forms("postgresql://u:p%40ss@h/db") == {"p%40ss", "p@ss"}
    assert url_password_forms("postgresql://u@h/db") == set()
    assert url_password_forms("postgresql://h:5432/db") == set()
    assert url_password_forms("http://user:tok/en@proxy:3128/v1") == {"tok/en"}
    assert mask_url("http://user:tok/en@proxy:3128/v1") == "http://user:***@proxy:3128/v1"
