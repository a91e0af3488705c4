"""`api_keys`: the rows behind `carrier api-keys` and the API's authentication.

Only what the service in `carrier_cli.auth.keys` needs, as plain statements both SQLite
and PostgreSQL run as written. A key's row holds its non-secret prefix (for lookup and
display) and a salted scrypt hash; the key itself is never stored. Revoking keeps the row
(with `revoked_at`), so `list` still shows the key ever existed and its name stays taken.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Index, String, Table, Text, Uuid, func, select, update

from carrier_cli.memory.schema import METADATA, UTCDateTime

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from carrier_cli.memory.backend import MemoryBackend
    from carrier_cli.memory.store import MemoryStore


KEYS = Table(
    "api_keys",
    METADATA,
    Column("id", Uuid, primary_key=True),
    Column("name", String(64), unique=True, nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("hash", Text, nullable=False),
    Column("scope", String(10), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    Index("ix_api_keys_prefix", "prefix"),
)


@dataclass(frozen=True)
class StoredKey:
    """One row. `hash` never leaves the auth layer (KeyInfo has no such field)."""

    id: uuid.UUID
    name: str
    scope: str
    prefix: str
    hash: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def _stored(row: Any) -> StoredKey:
    return StoredKey(
        id=row.id,
        name=row.name,
        scope=row.scope,
        prefix=row.prefix,
        hash=row.hash,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def _backend(store: MemoryStore) -> MemoryBackend:
    # The store keeps its backend private to code outside memory/; this module is inside.
    return store._backend


async def insert_key(store: MemoryStore, key: StoredKey) -> bool:
    """Add the row; False (and nothing written) when the name is taken."""
    stmt = (
        _backend(store)
        .insert(KEYS)
        .values(
            id=key.id,
            name=key.name,
            prefix=key.prefix,
            hash=key.hash,
            scope=key.scope,
            created_at=key.created_at,
            last_used_at=None,
            revoked_at=None,
        )
        .on_conflict_do_nothing(index_elements=["name"])
    )

    def write(conn: Connection) -> bool:
        return bool(conn.execute(stmt).rowcount)

    return await _backend(store).run_write(write)


async def list_keys(store: MemoryStore) -> list[StoredKey]:
    """Every key, revoked ones too, oldest first."""
    async with _backend(store).read() as conn:
        rows = (await conn.execute(select(KEYS).order_by(KEYS.c.created_at, KEYS.c.name))).all()
    return [_stored(r) for r in rows]


async def keys_with_prefix(store: MemoryStore, prefix: str) -> list[StoredKey]:
    """The keys whose prefix is this (almost always one; a collision is possible)."""
    async with _backend(store).read() as conn:
        rows = (await conn.execute(select(KEYS).where(KEYS.c.prefix == prefix))).all()
    return [_stored(r) for r in rows]


async def revoke_key(store: MemoryStore, name: str, moment: datetime) -> StoredKey | None:
    """Mark the key revoked (a key revoked before keeps its first moment); None if no
    key has this name."""

    def write(conn: Connection) -> StoredKey | None:
        conn.execute(
            update(KEYS)
            .where(KEYS.c.name == name, KEYS.c.revoked_at.is_(None))
            .values(revoked_at=moment)
        )
        row = conn.execute(select(KEYS).where(KEYS.c.name == name)).first()
        return _stored(row) if row is not None else None

    return await _backend(store).run_write(write)


async def touch_key(store: MemoryStore, key_id: uuid.UUID, moment: datetime) -> None:
    """Record a use. Only moves forward, so two processes racing keep the later one."""
    stmt = (
        update(KEYS)
        .where(
            KEYS.c.id == key_id,
            (KEYS.c.last_used_at.is_(None)) | (KEYS.c.last_used_at < moment),
        )
        .values(last_used_at=moment)
    )
    await _backend(store).run_write(lambda conn: conn.execute(stmt))


async def count_active(store: MemoryStore) -> int:
    query = select(func.count()).select_from(KEYS).where(KEYS.c.revoked_at.is_(None))
    async with _backend(store).read() as conn:
        return int((await conn.execute(query)).scalar_one())
