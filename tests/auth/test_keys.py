"""API keys: the hash and its verification, and the ApiKeys service on SQLite and
PostgreSQL (create, list, revoke, authenticate, scopes, last_used throttling)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from carrier_cli.auth import keys as keys_module
from carrier_cli.auth.keys import (
    ApiKeys,
    allows,
    generate_key,
    hash_key,
    key_prefix,
    verify_key,
)
from carrier_cli.errors import InputError
from carrier_cli.memory.apikeys import KEYS
from carrier_cli.memory.store import MemoryStore
from carrier_cli.redact import scrub


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _same_prefix_as(raw: str) -> str:
    """Another well-formed key sharing `raw`'s prefix (a collision, made on purpose)."""
    tail = raw[-1]
    return raw[:-1] + ("A" if tail != "A" else "B")


# ---------------------------------------------------------------------- hashing
def test_generated_keys_have_the_marker_and_32_random_bytes() -> None:
    raw = generate_key()
    assert raw.startswith("crr_") and len(raw) == 4 + 43
    assert key_prefix(raw) == raw[4:12]
    assert generate_key() != raw


def test_the_hash_verifies_its_key_and_nothing_else() -> None:
    raw = generate_key()
    stored = hash_key(raw)
    assert raw not in stored and raw[4:] not in stored
    algorithm, params, salt, digest = stored.split("$")
    assert algorithm == "scrypt" and params == "n=16384,r=8,p=1" and salt and digest
    assert verify_key(raw, stored)
    assert not verify_key(generate_key(), stored)
    assert not verify_key(_same_prefix_as(raw), stored)
    assert not verify_key(raw + "x", stored)
    assert hash_key(raw) != stored  # salted: the same key never hashes the same twice


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "plain",
        "bcrypt$n=1$a$b",
        "scrypt$n=16384,r=8$AAAA$AAAA",
        "scrypt$x$y$z",
        "scrypt$n=16384,r=8,p=1$!!$!!",
    ],
)
def test_a_stored_value_of_an_unknown_form_verifies_nothing(stored: str) -> None:
    assert not verify_key(generate_key(), stored)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "crr_",
        "crr_short",
        "sk-" + "a" * 43,
        "CRR_" + "a" * 43,
        "crr_" + "a" * 300,
        "crr_" + "é" * 43,
        "crr_" + "a" * 20 + " " + "b" * 20,
        "crr_" + "a/b+c=" * 8,
    ],
)
def test_malformed_keys_have_no_prefix(raw: str) -> None:
    assert key_prefix(raw) is None


def test_scopes_are_ordered_read_chat_admin() -> None:
    assert allows("admin", "admin") and allows("admin", "chat") and allows("admin", "read")
    assert allows("chat", "chat") and allows("chat", "read") and not allows("chat", "admin")
    assert allows("read", "read") and not allows("read", "chat")
    assert not allows("owner", "read") and not allows("admin", "owner")


# ---------------------------------------------------------------------- the service
async def test_create_list_revoke_and_authenticate(store: MemoryStore) -> None:
    keys = ApiKeys(store)
    assert not await keys.any_active()
    raw, info = await keys.create("ci-bot", "read")
    assert info.name == "ci-bot" and info.scope == "read" and info.prefix == raw[4:12]
    assert info.last_used_at is None and info.revoked_at is None
    assert scrub(f"key {raw}") != f"key {raw}"  # registered: never printed in logs
    assert await keys.any_active()

    listed = await keys.list()
    assert [k.name for k in listed] == ["ci-bot"]
    assert raw not in repr(listed)

    # A fresh service (another process) verifies through scrypt, not a remembered match.
    other = ApiKeys(store)
    found = await other.authenticate(raw)
    assert found is not None and found.name == "ci-bot" and found.scope == "read"
    assert await other.authenticate(generate_key()) is None
    assert await other.authenticate(_same_prefix_as(raw)) is None

    revoked = await keys.revoke("ci-bot")
    assert revoked.revoked_at is not None
    assert await other.authenticate(raw) is None  # refused at once, by every process
    assert await keys.authenticate(raw) is None
    assert not await keys.any_active()
    again = await keys.revoke("ci-bot")  # revoking twice keeps the first moment
    assert again.revoked_at == revoked.revoked_at
    assert [k.revoked_at is not None for k in await keys.list()] == [True]


async def test_the_database_holds_the_hash_never_the_key(store: MemoryStore) -> None:
    raw, _ = await ApiKeys(store).create("stored", "admin")
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(KEYS))).all()
    assert len(rows) == 1
    values = " ".join(str(v) for v in rows[0])
    assert raw not in values and raw[12:] not in values
    assert rows[0].hash.startswith("scrypt$") and verify_key(raw, rows[0].hash)


async def test_bad_names_scopes_and_duplicates_are_input_errors(store: MemoryStore) -> None:
    keys = ApiKeys(store)
    await keys.create("ada")
    with pytest.raises(InputError, match="'ada' already exists"):
        await keys.create("ada", "admin")
    with pytest.raises(InputError, match="not valid") as bad_name:
        await keys.create("two words")
    assert "letters, digits" in (bad_name.value.hint or "")
    with pytest.raises(InputError, match="not valid"):
        await keys.create("x" * 65)
    with pytest.raises(InputError, match="'owner' is not a scope") as bad_scope:
        await keys.create("bob", "owner")
    assert "read" in (bad_scope.value.hint or "") and "admin" in (bad_scope.value.hint or "")
    with pytest.raises(InputError, match="No API key is named 'nobody'"):
        await keys.revoke("nobody")
    assert [k.name for k in await keys.list()] == ["ada"]


async def test_two_keys_with_the_same_prefix_each_authenticate_as_themselves(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = generate_key()
    second = _same_prefix_as(first)
    made = iter([first, second])
    monkeypatch.setattr(keys_module, "generate_key", lambda: next(made))
    keys = ApiKeys(store)
    await keys.create("one", "read")
    await keys.create("two", "admin")
    fresh = ApiKeys(store)
    one = await fresh.authenticate(first)
    two = await fresh.authenticate(second)
    assert one is not None and one.name == "one"
    assert two is not None and two.name == "two"
    await keys.revoke("one")
    assert await fresh.authenticate(first) is None
    found = await fresh.authenticate(second)
    assert found is not None and found.name == "two"


async def test_malformed_keys_are_refused_without_the_database(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = ApiKeys(store)
    raw, _ = await keys.create("ada")

    async def no_database(*args: object) -> None:
        raise AssertionError("malformed input reached the database")

    monkeypatch.setattr("carrier_cli.memory.apikeys.keys_with_prefix", no_database)
    for bad in ["", "Bearer " + raw, raw.replace("crr_", "crx_"), raw + "a" * 200, raw + "é"]:
        assert await keys.authenticate(bad) is None


async def test_last_used_is_written_at_most_once_a_minute(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from carrier_cli.memory import apikeys

    clock = Clock()
    keys = ApiKeys(store, clock=clock)
    raw, _ = await keys.create("busy")
    writes: list[datetime] = []
    touch = apikeys.touch_key

    async def counting(store_: MemoryStore, key_id: object, moment: datetime) -> None:
        writes.append(moment)
        await touch(store_, key_id, moment)  # type: ignore[arg-type]

    monkeypatch.setattr(apikeys, "touch_key", counting)
    start = clock.now
    first = await keys.authenticate(raw)
    assert first is not None and first.last_used_at == start
    for _ in range(5):
        clock.advance(10)
        seen = await keys.authenticate(raw)
        assert seen is not None and seen.last_used_at == start  # 50 s: not written again
    clock.advance(10)  # a minute after the first use
    later = await keys.authenticate(raw)
    assert later is not None and later.last_used_at == clock.now
    assert writes == [start, clock.now]
    # Another process sees the stored moment and does not write it again within the minute.
    clock.advance(5)
    assert (await ApiKeys(store, clock=clock).authenticate(raw)) is not None
    assert len(writes) == 2
    (listed,) = await keys.list()
    assert listed.last_used_at == later.last_used_at


async def test_many_requests_at_once_verify_and_stay_consistent(store: MemoryStore) -> None:
    keys = ApiKeys(store)
    raw, _ = await keys.create("burst", "chat")
    results = await asyncio.gather(*(keys.authenticate(raw) for _ in range(8)))
    assert all(r is not None and r.name == "burst" for r in results)


async def test_a_revoked_key_is_refused_without_hashing(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = ApiKeys(store)
    raw, _ = await keys.create("old")
    await keys.revoke("old")

    def no_scrypt(*args: object) -> bool:
        raise AssertionError("a revoked key was hashed")

    monkeypatch.setattr(keys_module, "verify_key", no_scrypt)
    assert await ApiKeys(store).authenticate(raw) is None
