"""The tables behind long-term memory, shared by SQLite and PostgreSQL.

One declarative `Base` (with a naming convention, so Alembic can name and later drop
constraints on both backends) is the anchor other areas use for their own tables in the
same database: subclass `Base`, then add an Alembic revision under
`carrier_cli/memory/migrations/versions/` whose `down_revision` is the current head.

The embedding column is the one place where the backends differ: PostgreSQL keeps a
pgvector `vector` (given its dimension and HNSW cosine indexes once the first model is
known), SQLite keeps unit-length float32 blobs that the store scores with numpy.

PostgreSQL splits the vectors between two HNSW indexes by `memories.vector_segment`:
NULL rows (added one at a time, as a conversation adds them) are in the main index,
which PostgreSQL maintains row by row; rows of a large load (ingest, import) get
`BULK_SEGMENT` and go to a second index that the load builds once at its end. Maintaining
HNSW row by row costs 1.5-2 ms a row at 100k rows, building it ~0.25 ms, so a load into
a big table no longer pays for the whole table's index (see MemoryStore.bulk_load).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    Uuid,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine, UserDefinedType

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


MAIN_VECTOR_INDEX = "ix_memories_embedding_hnsw"
BULK_VECTOR_INDEX = "ix_memories_embedding_hnsw_bulk"
BULK_SEGMENT = 1
# ef_construction 128 (pgvector default 64) with hnsw.ef_search 300 (see store.HNSW_EF_SEARCH)
# measured recall@10 >= 0.95 on the benchmark's clustered 256-d vectors, where the
# defaults gave under 0.7. The bulk segment, rebuilt by every large load and never larger
# than the main index, is built with the default 64: 30% faster to build, and its recall
# at ef_search 300 measured 0.998 even at 100k rows.
HNSW_OPTIONS = "m = 16, ef_construction = 128"
HNSW_BULK_OPTIONS = "m = 16, ef_construction = 64"


def hnsw_index_ddl(*, bulk: bool) -> str:
    """CREATE INDEX for the main or the bulk HNSW index. The predicates are literals, as
    PostgreSQL only uses a partial index for queries whose WHERE names the same literal."""
    name, options, where = (
        (BULK_VECTOR_INDEX, HNSW_BULK_OPTIONS, f"vector_segment = {BULK_SEGMENT}")
        if bulk
        else (MAIN_VECTOR_INDEX, HNSW_OPTIONS, "vector_segment IS NULL")
    )
    return (
        f"CREATE INDEX IF NOT EXISTS {name} ON memories "
        f"USING hnsw (embedding vector_cosine_ops) WITH ({options}) WHERE {where}"
    )


class UTCDateTime(TypeDecorator[datetime]):
    """Always UTC-aware in Python. SQLite has no time zones, so it stores naive UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class PgVector(UserDefinedType[Any]):
    """pgvector's `vector`, sent in binary: connections get pgvector's asyncpg codec (see
    memory.engine), so numpy arrays go over the wire as-is. pgvector's own SQLAlchemy type
    formats every float as text, which made bulk inserts CPU-bound."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "VECTOR"

    def bind_processor(self, dialect: Dialect) -> None:
        return None

    def result_processor(self, dialect: Dialect, coltype: object) -> None:
        return None


def register_reflection() -> None:
    """Reflection (alembic autogenerate, `inspect`) on PostgreSQL should know the column
    type too. Called by the PostgreSQL engine module rather than here: importing
    SQLAlchemy's PostgreSQL dialect costs ~30 ms (~85 ms of CPU on a loaded machine) that
    an SQLite process (`carrier chat` before its first reply) never needs."""
    from sqlalchemy.dialects.postgresql.base import ischema_names

    ischema_names.setdefault("vector", PgVector)


class EmbeddingVector(TypeDecorator[Any]):
    """pgvector `vector` on PostgreSQL, a float32 blob elsewhere. Python side: ndarray."""

    impl = LargeBinary
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(PgVector())
        return dialect.type_descriptor(LargeBinary())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        array = np.asarray(value, dtype=np.float32)
        return array if dialect.name == "postgresql" else array.tobytes()

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, bytes | memoryview):
            return np.frombuffer(value, dtype=np.float32)
        if hasattr(value, "to_numpy"):  # pgvector.Vector from the binary codec
            return np.asarray(value.to_numpy(), dtype=np.float32)
        if isinstance(value, str):  # text format: a connection without the codec
            return np.asarray(json.loads(value), dtype=np.float32)
        return np.asarray(value, dtype=np.float32)


class _JSONValue(TypeDecorator[Any]):
    """JSON, as JSONB on PostgreSQL: what `JSON().with_variant(JSONB(), "postgresql")`
    was, without importing the PostgreSQL dialect for a process that never uses it."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())


JSONType = _JSONValue()


class AgentRow(Base):
    __tablename__ = "agents"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)


class EntityRow(Base):
    __tablename__ = "entities"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    platform: Mapped[str] = mapped_column(String(50))
    external_id: Mapped[str] = mapped_column(String(200))
    names: Mapped[list[str]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    __table_args__ = (Index("ix_entities_platform_external", "platform", "external_id"),)


class RoomRow(Base):
    __tablename__ = "rooms"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    agent_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("agents.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(50))
    external_id: Mapped[str] = mapped_column(String(200))
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_active_at: Mapped[datetime] = mapped_column(UTCDateTime)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    __table_args__ = (Index("ix_rooms_agent_source", "agent_id", "source", "last_active_at"),)


class ParticipantRow(Base):
    __tablename__ = "participants"
    room_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True
    )
    entity_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("entities.id", ondelete="CASCADE"), primary_key=True
    )
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MemoryRow(Base):
    """`room_id`/`entity_id` carry no foreign keys on purpose: an import may bring memories
    whose rooms were never exported, and a lossless round trip matters more here."""

    __tablename__ = "memories"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    agent_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    room_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    entity_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    kind: Mapped[str] = mapped_column(String(20))
    content: Mapped[dict[str, Any]] = mapped_column(JSONType)
    content_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    embedding: Mapped[Any] = mapped_column(EmbeddingVector, nullable=True)
    embedding_model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    unique: Mapped[bool] = mapped_column(Boolean, default=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    # PostgreSQL: which HNSW index holds the vector (NULL the main one, BULK_SEGMENT the
    # one large loads build); unused on SQLite.
    vector_segment: Mapped[int | None] = mapped_column(SmallInteger, nullable=True)
    __table_args__ = (
        Index("ix_memories_agent_kind_created", "agent_id", "kind", "created_at"),
        # A person's facts (migration 0109): 80 -> 0.8 ms at 10k facts.
        Index(
            "ix_memories_agent_entity_kind_created", "agent_id", "entity_id", "kind", "created_at"
        ),
        Index("ix_memories_room_created", "room_id", "created_at"),
        Index("ix_memories_content_hash", "content_hash"),
        Index("ix_memories_embedding_model", "embedding_model"),
    )


class RelationshipRow(Base):
    __tablename__ = "relationships"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    agent_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    entity_a: Mapped[uuid.UUID] = mapped_column(Uuid)
    entity_b: Mapped[uuid.UUID] = mapped_column(Uuid)
    kind: Mapped[str] = mapped_column(String(50))
    strength: Mapped[float] = mapped_column(Float, default=1.0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    __table_args__ = (Index("ix_relationships_agent_a", "agent_id", "entity_a"),)


class CacheRow(Base):
    __tablename__ = "cache"
    key: Mapped[str] = mapped_column(String(500), primary_key=True)
    value: Mapped[Any] = mapped_column(JSONType, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class StoreStateRow(Base):
    """Counters the SQLite vector cache watches (bumped by triggers on update/delete)."""

    __tablename__ = "store_state"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class ModelCallRow(Base):
    """One model call attempt (usage.records.CallRecord): tokens, latency, outcome, cost.

    `cost_usd` NULL means no price was known for the model (never a guess); `prompt` and
    `output` stay NULL unless `log_prompts` is on, and retention clears them again
    (MemoryStore.prune_calls) while the token and cost columns stay. The ids carry no
    foreign keys: a record outlives a deleted room or agent, as the bill does.
    """

    __tablename__ = "model_calls"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    agent_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    character: Mapped[str | None] = mapped_column(String(200), nullable=True)
    room_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    client: Mapped[str | None] = mapped_column(String(50), nullable=True)
    purpose: Mapped[str] = mapped_column(String(30))
    provider: Mapped[str] = mapped_column(String(50))
    model: Mapped[str] = mapped_column(String(200))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    outcome: Mapped[str] = mapped_column(String(20))
    error_code: Mapped[str | None] = mapped_column(String(50), nullable=True)
    input_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    output_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cached_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tokens_estimated: Mapped[bool] = mapped_column(Boolean, default=False)
    first_token_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    total_ms: Mapped[float] = mapped_column(Float, default=0.0)
    cost_usd: Mapped[float | None] = mapped_column(Float, nullable=True)
    prompt: Mapped[str | None] = mapped_column(Text, nullable=True)
    output: Mapped[str | None] = mapped_column(Text, nullable=True)
    turn_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    __table_args__ = (
        # `carrier logs` lists newest first, filtered by character or purpose; `carrier
        # usage` sums a time window.
        Index("ix_model_calls_created_at", "created_at"),
        Index("ix_model_calls_character_created", "character", "created_at"),
        Index("ix_model_calls_purpose", "purpose"),
    )


MEMORY_TABLES = (
    "agents",
    "entities",
    "rooms",
    "participants",
    "memories",
    "relationships",
    "cache",
)
