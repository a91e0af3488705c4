"""`SqlBase`: a backend's connections, and the agents, rooms, entities, participants,
relationships and cache rows, the same on SQLite and PostgreSQL. `sql.SqlBackend` adds
the memories; each backend subclasses that with how its transactions are opened and its
dialect's INSERT ... ON CONFLICT. Nothing here asks which database it is.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, ClassVar, TypeVar

from sqlalchemy import Connection, delete, select, update

from carrier_cli.memory.async_engine import AsyncConnection, AsyncEngine
from carrier_cli.memory.engine import IMMEDIATE
from carrier_cli.memory.rows import QUICK_ROWS, to_entity, to_room, utcnow
from carrier_cli.memory.schema import AGENTS, CACHE, ENTITIES, PARTICIPANTS, RELATIONSHIPS, ROOMS
from carrier_cli.memory.types import Entity, Room

T = TypeVar("T")
Work = Callable[[Connection], Any]


class SqlBase:
    """Connections and the rows around memories. Subclasses set `name` and
    `read_options` and implement `insert`."""

    name: ClassVar[str]
    read_options: ClassVar[dict[str, Any]] = {}

    def __init__(self, engine: AsyncEngine, url: str) -> None:
        self.engine = engine
        self.url = url

    def insert(self, target: Any) -> Any:
        """The dialect's INSERT (with on_conflict_do_nothing / on_conflict_do_update)."""
        raise NotImplementedError

    async def close(self) -> None:
        await self.engine.dispose()

    # ------------------------------------------------------------------ connections
    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            await conn.execution_options(**{IMMEDIATE: True})
            async with conn.begin():
                yield conn

    async def run_write(self, work: Callable[[Connection], T]) -> T:
        """One write transaction as a synchronous function of a Connection."""
        async with self.write() as conn:
            return await conn.run_sync(work)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Any]:
        async with self.engine.connect() as conn:
            await conn.execution_options(**self.read_options)
            async with conn.begin():
                yield conn

    def quick_read(self) -> Any:
        """For small indexed reads on the hot path; a backend may run them inline."""
        return self.read()

    def _reading(self, rows: int) -> Any:
        return self.quick_read() if rows <= QUICK_ROWS else self.read()

    # ------------------------------------------------------------------ agents, entities, rooms
    async def ensure_agent(self, agent_id: uuid.UUID, name: str) -> None:
        stmt = self.insert(AGENTS).values(id=agent_id, name=name, created_at=utcnow(), metadata={})
        upsert = stmt.on_conflict_do_update(index_elements=["id"], set_={"name": name})
        await self.run_write(lambda conn: conn.execute(upsert))

    def entity_work(
        self,
        entity_id: uuid.UUID,
        platform: str,
        external_id: str,
        name: str,
        metadata: dict[str, Any] | None,
    ) -> Callable[[Connection], Entity]:
        """The write that ensures an entity (adding a new name, merging metadata)."""
        insert = self.insert(ENTITIES)

        def write(conn: Connection) -> Entity:
            row = conn.execute(select(ENTITIES).where(ENTITIES.c.id == entity_id)).first()
            if row is None:
                names = [name] if name else []
                meta = dict(metadata or {})
                conn.execute(
                    insert.values(
                        id=entity_id,
                        platform=platform,
                        external_id=external_id,
                        names=names,
                        created_at=utcnow(),
                        metadata=meta,
                    ).on_conflict_do_nothing(index_elements=["id"])
                )
            else:
                names = list(row.names or [])
                meta = dict(row.metadata or {})
                changed = False
                if name and name not in names:
                    names.append(name)
                    changed = True
                if metadata:
                    meta.update(metadata)
                    changed = True
                if changed:
                    conn.execute(
                        update(ENTITIES)
                        .where(ENTITIES.c.id == entity_id)
                        .values(names=names, metadata=meta)
                    )
            return Entity(
                id=entity_id, names=names, platform=platform, external_id=external_id, metadata=meta
            )

        return write

    def room_work(
        self,
        room_id: uuid.UUID,
        agent_id: uuid.UUID,
        source: str,
        external_id: str,
        name: str | None,
    ) -> Callable[[Connection], Room]:
        """The write that ensures a room (and a placeholder row for its agent)."""
        now = utcnow()
        agent = (
            self.insert(AGENTS)
            .values(id=agent_id, name=f"agent-{str(agent_id)[:8]}", created_at=now, metadata={})
            .on_conflict_do_nothing(index_elements=["id"])
        )
        stmt = self.insert(ROOMS).values(
            id=room_id,
            agent_id=agent_id,
            source=source,
            external_id=external_id,
            name=name,
            created_at=now,
            last_active_at=now,
            metadata={},
        )
        if name is not None:
            stmt = stmt.on_conflict_do_update(index_elements=["id"], set_={"name": name})
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=["id"])

        def write(conn: Connection) -> Room:
            conn.execute(agent)
            conn.execute(stmt)
            return to_room(conn.execute(select(ROOMS).where(ROOMS.c.id == room_id)).one())

        return write

    def participant_work(self, room_id: uuid.UUID, entity_id: uuid.UUID) -> Work:
        stmt = (
            self.insert(PARTICIPANTS)
            .values(room_id=room_id, entity_id=entity_id, joined_at=utcnow())
            .on_conflict_do_nothing(index_elements=["room_id", "entity_id"])
        )
        return lambda conn: conn.execute(stmt)

    async def get_entity(self, entity_id: uuid.UUID) -> Entity | None:
        async with self.read() as conn:
            row = (await conn.execute(select(ENTITIES).where(ENTITIES.c.id == entity_id))).first()
        return to_entity(row) if row is not None else None

    async def participants(self, room_id: uuid.UUID) -> list[Entity]:
        part = PARTICIPANTS
        async with self.read() as conn:
            rows = (
                await conn.execute(
                    select(ENTITIES)
                    .join(part, part.c.entity_id == ENTITIES.c.id)
                    .where(part.c.room_id == room_id)
                    .order_by(part.c.joined_at)
                )
            ).all()
        return [to_entity(r) for r in rows]

    async def get_room(self, room_id: uuid.UUID) -> Room | None:
        async with self.read() as conn:
            row = (await conn.execute(select(ROOMS).where(ROOMS.c.id == room_id))).first()
        return to_room(row) if row is not None else None

    async def list_rooms(self, agent_id: uuid.UUID, source: str | None) -> list[Room]:
        query = select(ROOMS).where(ROOMS.c.agent_id == agent_id)
        if source is not None:
            query = query.where(ROOMS.c.source == source)
        query = query.order_by(ROOMS.c.last_active_at.desc())
        async with self.read() as conn:
            rows = (await conn.execute(query)).all()
        return [to_room(r) for r in rows]

    async def add_relationship(
        self,
        rel_id: uuid.UUID,
        agent_id: uuid.UUID,
        entity_a: uuid.UUID,
        entity_b: uuid.UUID,
        kind: str,
        metadata: dict[str, Any] | None,
    ) -> None:
        """Insert the relationship, or strengthen it (+1) and replace its metadata."""
        rels = RELATIONSHIPS
        stmt = self.insert(rels).values(
            id=rel_id,
            agent_id=agent_id,
            entity_a=entity_a,
            entity_b=entity_b,
            kind=kind,
            strength=1.0,
            created_at=utcnow(),
            metadata=dict(metadata or {}),
        )
        async with self.write() as conn:
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["id"],
                    set_={"strength": rels.c.strength + 1.0, "metadata": stmt.excluded.metadata},
                )
            )

    async def relationships(
        self, agent_id: uuid.UUID, entity_id: uuid.UUID
    ) -> list[dict[str, Any]]:
        rels = RELATIONSHIPS
        async with self.read() as conn:
            rows = (
                await conn.execute(
                    select(rels)
                    .where(rels.c.agent_id == agent_id)
                    .where((rels.c.entity_a == entity_id) | (rels.c.entity_b == entity_id))
                )
            ).all()
        return [
            {
                "entity_a": r.entity_a,
                "entity_b": r.entity_b,
                "kind": r.kind,
                "strength": r.strength,
                "metadata": r.metadata,
            }
            for r in rows
        ]

    async def insert_ignore(self, target: Any, values: dict[str, Any], keys: list[str]) -> None:
        """Insert one row unless its key is taken (import: never overwrite)."""
        async with self.write() as conn:
            await conn.execute(
                self.insert(target).values(**values).on_conflict_do_nothing(index_elements=keys)
            )

    # ------------------------------------------------------------------ cache
    async def cache_get(self, key: str) -> Any | None:
        cache = CACHE
        async with self.read() as conn:
            row = (await conn.execute(select(cache).where(cache.c.key == key))).first()
        if row is None:
            return None
        if row.expires_at is not None and row.expires_at <= utcnow():
            async with self.write() as conn:
                await conn.execute(
                    delete(cache).where(cache.c.key == key).where(cache.c.expires_at <= utcnow())
                )
            return None
        return row.value

    async def cache_set(self, key: str, value: Any, ttl: float | None) -> None:
        expires = utcnow() + timedelta(seconds=ttl) if ttl is not None else None
        upsert = self._cache_upsert()
        params = {"key": key, "value": value, "expires_at": expires}
        # run_write: on an SQLite file one hop to the writer thread; the Discord bot marks
        # every answered message here, once per turn.
        await self.run_write(lambda conn: conn.execute(upsert, params))

    async def cache_set_many(self, entries: Sequence[tuple[str, Any, float | None]]) -> None:
        """(key, value, ttl) entries upserted in one transaction: all or none."""
        if not entries:
            return
        now = utcnow()
        upsert = self._cache_upsert()
        params = [
            {
                "key": key,
                "value": value,
                "expires_at": now + timedelta(seconds=ttl) if ttl is not None else None,
            }
            for key, value, ttl in entries
        ]
        await self.run_write(lambda conn: conn.execute(upsert, params))

    def _cache_upsert(self) -> Any:
        """The cache's upsert, built once per backend (values bound at execution): built
        per call, its construction cost more CPU than running it."""
        upsert = getattr(self, "_cache_upsert_stmt", None)
        if upsert is None:
            stmt = self.insert(CACHE)
            upsert = stmt.on_conflict_do_update(
                index_elements=["key"],
                set_={"value": stmt.excluded.value, "expires_at": stmt.excluded.expires_at},
            )
            self._cache_upsert_stmt = upsert
        return upsert

    async def cache_delete(self, key: str) -> None:
        cache = CACHE
        async with self.write() as conn:
            await conn.execute(delete(cache).where(cache.c.key == key))
