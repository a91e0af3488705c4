"""`carrier api-keys` end to end, in a subprocess as an operator runs it: the key is
printed by `create` only; `list` (table and --json) never shows it or its hash."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from sqlalchemy import select

from carrier_cli.auth.keys import ApiKeys, verify_key
from carrier_cli.memory.apikeys import KEYS
from carrier_cli.memory.store import MemoryStore
from tests.helpers import run_carrier

WIDE = {"COLUMNS": "160"}


def _stored(db: Path) -> list[tuple[str, str]]:
    async def read() -> list[tuple[str, str]]:
        store = await MemoryStore.open(f"sqlite:///{db}")
        try:
            async with store.engine.connect() as conn:
                rows = (await conn.execute(select(KEYS.c.name, KEYS.c.hash))).all()
        finally:
            await store.close()
        return [(r.name, r.hash) for r in rows]

    return asyncio.run(read())


def _db_path(home: Path) -> Path:
    found = list(home.rglob("*.db"))
    assert len(found) == 1, found
    return found[0]


def test_create_prints_the_key_once_and_list_never_shows_it(carrier_home: Path) -> None:
    created = run_carrier(["api-keys", "create", "ci-bot", "--scope", "read"], env=WIDE)
    assert created.returncode == 0, created.stderr
    raw = created.stdout.strip()
    assert re.fullmatch(r"crr_[A-Za-z0-9_-]{43}", raw), created.stdout
    assert "cannot be shown again" in created.stderr
    assert f'curl -H "Authorization: Bearer {raw}" http://127.0.0.1:8000/v1/agents' in (
        created.stderr
    )

    db = _db_path(carrier_home)
    ((name, stored),) = _stored(db)
    assert name == "ci-bot" and stored != raw and raw not in stored
    assert verify_key(raw, stored)

    listed = run_carrier(["api-keys", "list"], env=WIDE)
    assert listed.returncode == 0, listed.stderr
    assert "ci-bot" in listed.stdout and "read" in listed.stdout and "never" in listed.stdout
    assert raw[4:12] in listed.stdout  # the prefix, to tell keys apart
    as_json = run_carrier(["api-keys", "list", "--json"])
    assert as_json.returncode == 0, as_json.stderr
    (entry,) = json.loads(as_json.stdout)
    assert entry["name"] == "ci-bot" and entry["scope"] == "read"
    assert entry["prefix"] == raw[4:12] and entry["last_used_at"] is None
    assert set(entry) == {"name", "scope", "prefix", "created_at", "last_used_at", "revoked_at"}
    for output in (listed, as_json):
        text = output.stdout + output.stderr
        assert raw not in text and raw[12:] not in text
        assert stored not in text and stored.split("$")[-1] not in text

    revoked = run_carrier(["api-keys", "revoke", "ci-bot"])
    assert revoked.returncode == 0, revoked.stderr
    assert "Revoked API key 'ci-bot'" in revoked.stderr
    (after,) = json.loads(run_carrier(["api-keys", "list", "--json"]).stdout)
    assert after["revoked_at"] is not None

    async def refused() -> object:
        async with await MemoryStore.open(f"sqlite:///{db}") as store:
            return await ApiKeys(store).authenticate(raw)

    assert asyncio.run(refused()) is None


def test_errors_exit_2_naming_the_argument() -> None:
    assert run_carrier(["api-keys", "create", "ada"]).returncode == 0
    duplicate = run_carrier(["api-keys", "create", "ada"])
    assert duplicate.returncode == 2 and "'ada' already exists" in duplicate.stderr
    assert "crr_" not in duplicate.stdout
    bad_name = run_carrier(["api-keys", "create", "two words"])
    assert bad_name.returncode == 2 and "NAME 'two words'" in bad_name.stderr
    bad_scope = run_carrier(["api-keys", "create", "bob", "--scope", "owner"])
    assert bad_scope.returncode == 2 and "--scope 'owner'" in bad_scope.stderr
    assert "read" in bad_scope.stderr and "admin" in bad_scope.stderr
    unknown = run_carrier(["api-keys", "revoke", "nobody"])
    assert unknown.returncode == 2 and "No API key is named 'nobody'" in unknown.stderr
    (only,) = json.loads(run_carrier(["api-keys", "list", "--json"]).stdout)
    assert only["name"] == "ada"


def test_list_without_keys_says_how_to_make_one() -> None:
    empty = run_carrier(["api-keys", "list"])
    assert empty.returncode == 0 and "carrier api-keys create NAME" in empty.stderr
    assert json.loads(run_carrier(["api-keys", "list", "--json"]).stdout) == []
