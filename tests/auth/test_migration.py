"""Migration 0105: a database at 0104 is told to upgrade and then gets `api_keys`; a fresh
one has it from the start (both backends)."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import inspect

from carrier_cli.auth.keys import ApiKeys
from carrier_cli.errors import InputError
from carrier_cli.memory.backends import make_engine
from carrier_cli.memory.migrate import alembic_config, schema_state, upgrade
from carrier_cli.memory.store import MemoryStore
from carrier_cli.memory.urls import normalise_url


async def _at_revision(url: str, revision: str) -> None:
    engine = make_engine(normalise_url(url))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), revision))
    finally:
        await engine.dispose()


async def _indexes_and_uniques(url: str) -> tuple[set[str], set[str]]:
    engine = make_engine(normalise_url(url))
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda c: (
                    {i["name"] for i in inspect(c).get_indexes("api_keys")},
                    {u["name"] for u in inspect(c).get_unique_constraints("api_keys")},
                )
            )
    finally:
        await engine.dispose()


async def test_a_database_at_0104_is_told_to_upgrade_and_then_has_api_keys(db_url: str) -> None:
    await _at_revision(db_url, "0104_usage_counters")
    with pytest.raises(InputError, match="older schema"):
        await MemoryStore.open(db_url)
    engine = make_engine(normalise_url(db_url))
    try:
        assert (await schema_state(engine)).status == "behind"
        await upgrade(engine)
        state = await schema_state(engine)
        assert state.status == "current" and state.current == state.heads
    finally:
        await engine.dispose()
    indexes, uniques = await _indexes_and_uniques(db_url)
    assert "ix_api_keys_prefix" in indexes and "uq_api_keys_name" in uniques
    async with await MemoryStore.open(db_url) as store:
        raw, _ = await ApiKeys(store).create("after-upgrade")
        assert await ApiKeys(store).authenticate(raw) is not None


async def test_a_fresh_database_has_api_keys(store: MemoryStore) -> None:
    indexes, uniques = await _indexes_and_uniques(store.url)
    assert "ix_api_keys_prefix" in indexes and "uq_api_keys_name" in uniques
    assert await ApiKeys(store).list() == []
