"""The tables behind long-term memory, shared by SQLite and PostgreSQL.

One `METADATA` (with a naming convention, so Alembic can name and later drop
constraints on both backends) holds every table of the database. The memory tables here
are SQLAlchemy Core tables (`MEMORIES`, `ROOMS`, ...): the store and its backends use
statements only, and this module is imported by every command that opens the database,
so it must not import the ORM (sqlalchemy.orm, ~15% of a `carrier chat` start's CPU).
Other areas add their tables to the same METADATA, as Core tables or as ORM classes on
`memory.declarative.Base`, then add an Alembic revision under
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
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    TypeDecorator,
    Uuid,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine, UserDefinedType

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# Every table of Carrier's database, Core and ORM (memory.declarative.Base uses it too):
# what Alembic and the schema checks compare the database with.
METADATA = MetaData(naming_convention=NAMING_CONVENTION)


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


def _metadata_column() -> Column[Any]:
    """The `metadata` JSON column several tables have (`metadata_` on the old ORM rows)."""
    return Column("metadata", JSONType, nullable=False, default=dict)


AGENTS = Table(
    "agents",
    METADATA,
    Column("id", Uuid, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    _metadata_column(),
)

ENTITIES = Table(
    "entities",
    METADATA,
    Column("id", Uuid, primary_key=True),
    Column("platform", String(50), nullable=False),
    Column("external_id", String(200), nullable=False),
    Column("names", JSONType, nullable=False, default=list),
    Column("created_at", UTCDateTime, nullable=False),
    _metadata_column(),
    Index("ix_entities_platform_external", "platform", "external_id"),
)

ROOMS = Table(
    "rooms",
    METADATA,
    Column("id", Uuid, primary_key=True),
    Column("agent_id", Uuid, ForeignKey("agents.id", ondelete="CASCADE"), nullable=False),
    Column("source", String(50), nullable=False),
    Column("external_id", String(200), nullable=False),
    Column("name", String(200), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_active_at", UTCDateTime, nullable=False),
    _metadata_column(),
    Index("ix_rooms_agent_source", "agent_id", "source", "last_active_at"),
)

PARTICIPANTS = Table(
    "participants",
    METADATA,
    Column("room_id", Uuid, ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True),
    Column("entity_id", Uuid, ForeignKey("entities.id", ondelete="CASCADE"), primary_key=True),
    Column("joined_at", UTCDateTime, nullable=False),
)

# `room_id`/`entity_id` carry no foreign keys on purpose: an import may bring memories
# whose rooms were never exported, and a lossless round trip matters more here.
MEMORIES = Table(
    "memories",
    METADATA,
    Column("id", Uuid, primary_key=True),
    Column("agent_id", Uuid, nullable=False),
    Column("room_id", Uuid, nullable=True),
    Column("entity_id", Uuid, nullable=True),
    Column("kind", String(20), nullable=False),
    Column("content", JSONType, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("embedding", EmbeddingVector, nullable=True),
    Column("embedding_model", String(200), nullable=True),
    Column("unique", Boolean, nullable=False, default=True),
    _metadata_column(),
    # PostgreSQL: which HNSW index holds the vector (NULL the main one, BULK_SEGMENT the
    # one large loads build); unused on SQLite.
    Column("vector_segment", SmallInteger, nullable=True),
    Index("ix_memories_agent_kind_created", "agent_id", "kind", "created_at"),
    # A person's facts (migration 0109): 80 -> 0.8 ms at 10k facts.
    Index("ix_memories_agent_entity_kind_created", "agent_id", "entity_id", "kind", "created_at"),
    Index("ix_memories_room_created", "room_id", "created_at"),
    Index("ix_memories_content_hash", "content_hash"),
    Index("ix_memories_embedding_model", "embedding_model"),
)

RELATIONSHIPS = Table(
    "relationships",
    METADATA,
    Column("id", Uuid, primary_key=True),
    Column("agent_id", Uuid, nullable=False),
    Column("entity_a", Uuid, nullable=False),
    Column("entity_b", Uuid, nullable=False),
    Column("kind", String(50), nullable=False),
    Column("strength", Float, nullable=False, default=1.0),
    Column("created_at", UTCDateTime, nullable=False),
    _metadata_column(),
    Index("ix_relationships_agent_a", "agent_id", "entity_a"),
)

CACHE = Table(
    "cache",
    METADATA,
    Column("key", String(500), primary_key=True),
    Column("value", JSONType, nullable=True),
    Column("expires_at", UTCDateTime, nullable=True),
)

# Counters the SQLite vector cache watches (bumped by triggers on update/delete).
STORE_STATE = Table(
    "store_state",
    METADATA,
    Column("key", String(100), primary_key=True),
    Column("value", Integer, nullable=False, default=0),
)

# One model call attempt (usage.records.CallRecord): tokens, latency, outcome, cost.
# `cost_usd` NULL means no price was known for the model (never a guess); `prompt` and
# `output` stay NULL unless `log_prompts` is on, and retention clears them again
# (MemoryStore.prune_calls) while the token and cost columns stay. The ids carry no
# foreign keys: a record outlives a deleted room or agent, as the bill does.
MODEL_CALLS = Table(
    "model_calls",
    METADATA,
    Column("id", Uuid, primary_key=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("agent_id", Uuid, nullable=True),
    Column("character", String(200), nullable=True),
    Column("room_id", Uuid, nullable=True),
    Column("client", String(50), nullable=True),
    Column("purpose", String(30), nullable=False),
    Column("provider", String(50), nullable=False),
    Column("model", String(200), nullable=False),
    Column("attempt", Integer, nullable=False, default=1),
    Column("outcome", String(20), nullable=False),
    Column("error_code", String(50), nullable=True),
    Column("input_tokens", Integer, nullable=True),
    Column("output_tokens", Integer, nullable=True),
    Column("cached_tokens", Integer, nullable=True),
    Column("tokens_estimated", Boolean, nullable=False, default=False),
    Column("first_token_ms", Float, nullable=True),
    Column("total_ms", Float, nullable=False, default=0.0),
    Column("cost_usd", Float, nullable=True),
    Column("prompt", Text, nullable=True),
    Column("output", Text, nullable=True),
    Column("turn_id", Uuid, nullable=True),
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
