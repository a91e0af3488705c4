"""MemoryStore.ping: the one cheap round trip /readyz makes, on both backends, and on
SQLite a file that disappeared under an open store (SELECT 1 alone would still pass)."""

from __future__ import annotations

from pathlib import Path

import pytest

from carrier_cli.memory.failures import StorageFailure
from carrier_cli.memory.store import MemoryStore


async def test_ping_answers_on_a_working_database(store: MemoryStore) -> None:
    await store.ping()


async def test_ping_fails_when_the_sqlite_file_is_gone(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    async with await MemoryStore.open(f"sqlite:///{db}") as store:
        await store.ping()
        for path in tmp_path.glob("memory.db*"):
            path.unlink()
        with pytest.raises(StorageFailure) as failed:
            await store.ping()
        assert str(db) in failed.value.message
