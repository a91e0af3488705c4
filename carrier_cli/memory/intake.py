"""Recording an incoming message's room, sender and participation: the rows every message
needs before it is stored, remembered so that the hot path usually skips them.

One bounded cache, owned by the store (MemoryStore.record_message): least recently used
entries are evicted one at a time past INTAKE_CACHE_SIZE entries of each kind, where the
runtime used to keep four dicts and empty each outright past 10,000 entries (so a busy
bot forgot every room at once and wrote them all again). When anything is missing, the
room, the entity and the participant row are written in one transaction.

This cache stays in each process with `redis_url` too (not `cluster.cache.RedisCache`):
rooms and entities have deterministic ids (`stable_id`), are never deleted, and are written
with idempotent upserts, so another process's copy cannot be wrong in a way that matters;
at worst a process writes a row that already exists. Sharing it would put a Redis round
trip on every message to save a write that happens once per room and sender.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from carrier_cli.memory.types import Arrival, Entity, Room, stable_id

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from carrier_cli.memory.backend import MemoryBackend

K = TypeVar("K")
V = TypeVar("V")

INTAKE_CACHE_SIZE = 10_000  # entries of each kind: rooms, senders, participations


class LRU(Generic[K, V]):
    """A dict of at most `cap` entries that forgets the least recently used first."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.cap:
            self._items.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)


class Intake:
    """Rooms by (agent, source, room key), senders by (source, sender key) with the name
    they were ensured with (a new name is ensured again: it is added to the entity's
    names), and the (room, entity) pairs known to be participants."""

    def __init__(self, backend: MemoryBackend, cap: int = INTAKE_CACHE_SIZE) -> None:
        self.backend = backend
        self.rooms: LRU[tuple[uuid.UUID, str, str], Room] = LRU(cap)
        self.entities: LRU[tuple[str, str], tuple[str, Entity]] = LRU(cap)
        self.participants: LRU[tuple[uuid.UUID, uuid.UUID], bool] = LRU(cap)

    async def ensure(self, agent_id: uuid.UUID, arrival: Arrival) -> tuple[Room, Entity]:
        """The arrival's room and sender, written (in one transaction) where not known."""
        room_key = (agent_id, arrival.source, arrival.room_key)
        entity_key = (arrival.source, arrival.sender_key)
        room = self.rooms.get(room_key)
        known = self.entities.get(entity_key)
        entity = known[1] if known is not None and known[0] == arrival.sender_name else None
        room_id = room.id if room else stable_id(arrival.source, "room", arrival.room_key, agent_id)
        entity_id = entity.id if entity else stable_id(arrival.source, "entity", arrival.sender_key)
        joined = (room_id, entity_id) in self.participants
        if room is not None and entity is not None and joined:
            self.participants.get((room_id, entity_id))  # most recently used
            return room, entity
        backend = self.backend
        room_work = (
            backend.room_work(
                room_id, agent_id, arrival.source, arrival.room_key, arrival.room_name
            )
            if room is None
            else None
        )
        entity_work = (
            backend.entity_work(
                entity_id, arrival.source, arrival.sender_key, arrival.sender_name, None
            )
            if entity is None
            else None
        )
        participant_work = backend.participant_work(room_id, entity_id) if not joined else None

        def write(conn: Connection) -> tuple[Any, Any]:
            new_room = room_work(conn) if room_work is not None else room
            new_entity = entity_work(conn) if entity_work is not None else entity
            if participant_work is not None:
                participant_work(conn)
            return new_room, new_entity

        room, entity = await backend.run_write(write)
        assert room is not None and entity is not None
        self.rooms.put(room_key, room)
        self.entities.put(entity_key, (arrival.sender_name, entity))
        self.participants.put((room_id, entity_id), True)
        return room, entity
