"""The data that crosses the memory boundary. Plain dataclasses: no SQLAlchemy here, so the
runtime and clients can import them cheaply and tests can build them by hand."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, cast, overload

from carrier_cli.memory.ids import new_id

# Namespace for deterministic ids (uuid5) of external objects: platform messages, rooms,
# entities. Replaying an event then maps to the same row instead of a duplicate.
CARRIER_NAMESPACE = uuid.UUID("6f1c2d3e-8a4b-5c6d-9e0f-a1b2c3d4e5f6")


def stable_id(*parts: object) -> uuid.UUID:
    """uuid5 over the parts, e.g. stable_id("discord", "message", message_id, agent_id)."""
    return uuid.uuid5(CARRIER_NAMESPACE, "\x1f".join(str(p) for p in parts))


class MemoryKind(StrEnum):
    MESSAGE = "message"
    FACT = "fact"
    DOCUMENT = "document"
    FRAGMENT = "fragment"
    LORE = "lore"
    # A person's reaction to one of the agent's replies (memory/feedback.py).
    FEEDBACK = "feedback"


class _Array:
    """A vector held as the store computed it (a numpy array), for `_Embedding`."""

    __slots__ = ("array",)

    def __init__(self, array: Any) -> None:
        self.array = array


class _Embedding:
    """`Memory.embedding`: a list of floats or None, as ever, but the store may hand it the
    numpy vector it stored (`keep_vector`), made into the list on first read. The list
    is 256 Python floats a memory, 10.7 us to build, and an ingest or import returns
    memories whose vectors nobody reads: that was a tenth of Carrier's own CPU time
    on an ingest with local embeddings (measured on 20,000 memories). Equality, repr,
    `dataclasses.asdict` and `replace` all read the attribute, so they see the list."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = f"_{name}_value"

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> None: ...
    @overload
    def __get__(self, obj: Memory, owner: type | None = None) -> list[float] | None: ...
    def __get__(self, obj: Memory | None, owner: type | None = None) -> list[float] | None:
        if obj is None:
            return None  # the field's default
        value = obj.__dict__[self.slot]
        if type(value) is _Array:
            value = value.array.tolist()
            obj.__dict__[self.slot] = value
        return cast("list[float] | None", value)

    def __set__(self, obj: Memory, value: list[float] | None) -> None:
        obj.__dict__[self.slot] = value


def keep_vector(memory: Memory, vector: Any) -> None:
    """Set `memory.embedding` from a numpy vector, converted to the list only if read."""
    memory.__dict__["_embedding_value"] = _Array(vector)


@dataclass
class Memory:
    """One memory. `content` is JSON with at least `text`; messages may add `actions`,
    `source`, `attachments`, `in_reply_to`, `thought`."""

    agent_id: uuid.UUID
    content: dict[str, Any]
    kind: MemoryKind = MemoryKind.MESSAGE
    room_id: uuid.UUID | None = None
    entity_id: uuid.UUID | None = None
    # A time-ordered UUIDv7 (memory.ids): a load's ids are consecutive in the index.
    id: uuid.UUID = field(default_factory=new_id)
    created_at: datetime | None = None  # set by the store (UTC) when None
    unique: bool = True
    metadata: dict[str, Any] = field(default_factory=dict)
    embedding: _Embedding = _Embedding()
    embedding_model: str | None = None

    @property
    def text(self) -> str:
        return str(self.content.get("text", ""))


@dataclass
class SearchHit:
    memory: Memory
    score: float  # cosine similarity in [-1, 1]


@dataclass
class Entity:
    id: uuid.UUID
    names: list[str]
    platform: str
    external_id: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Room:
    id: uuid.UUID
    agent_id: uuid.UUID
    source: str  # terminal | discord | instagram | api
    external_id: str
    name: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # When the room's newest memory was stored, as read from the database (None for a
    # Room built by hand); the API's room list shows it. Not part of equality: the same
    # room read before and after a message is still the same room.
    last_active_at: datetime | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Arrival:
    """An incoming message as MemoryStore.record_message stores it: where it came from
    (`source`, the platform's room and sender keys and names) and the memory to store."""

    source: str
    room_key: str
    room_name: str | None
    sender_key: str
    sender_name: str
    memory_id: uuid.UUID
    content: dict[str, Any]
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Recorded:
    """What record_message stored: the room, the sender, the message memory, and whether
    that memory was there already (a replayed message id)."""

    room: Room
    entity: Entity
    memory: Memory
    seen_before: bool
