"""Long-term memory: agents, entities, rooms, participants, memories, relationships, cache.

Revision ID: 0001_memory
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from carrier_cli.memory.schema import EmbeddingVector, JSONType, UTCDateTime

revision: str = "0001_memory"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table(
        "agents",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("metadata", JSONType, nullable=False),
    )
    op.create_table(
        "entities",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("platform", sa.String(50), nullable=False),
        sa.Column("external_id", sa.String(200), nullable=False),
        sa.Column("names", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("metadata", JSONType, nullable=False),
    )
    op.create_index("ix_entities_platform_external", "entities", ["platform", "external_id"])
    op.create_table(
        "rooms",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "agent_id", sa.Uuid(), sa.ForeignKey("agents.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("source", sa.String(50), nullable=False),
        sa.Column("external_id", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_active_at", UTCDateTime(), nullable=False),
        sa.Column("metadata", JSONType, nullable=False),
    )
    op.create_index("ix_rooms_agent_source", "rooms", ["agent_id", "source", "last_active_at"])
    op.create_table(
        "participants",
        sa.Column(
            "room_id", sa.Uuid(), sa.ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column(
            "entity_id",
            sa.Uuid(),
            sa.ForeignKey("entities.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("joined_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "memories",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("room_id", sa.Uuid(), nullable=True),
        sa.Column("entity_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("content", JSONType, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("embedding", EmbeddingVector(), nullable=True),
        sa.Column("embedding_model", sa.String(200), nullable=True),
        sa.Column("unique", sa.Boolean(), nullable=False),
        sa.Column("metadata", JSONType, nullable=False),
    )
    op.create_index(
        "ix_memories_agent_kind_created", "memories", ["agent_id", "kind", "created_at"]
    )
    op.create_index("ix_memories_room_created", "memories", ["room_id", "created_at"])
    op.create_index("ix_memories_content_hash", "memories", ["content_hash"])
    op.create_index("ix_memories_embedding_model", "memories", ["embedding_model"])
    op.create_table(
        "relationships",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("entity_a", sa.Uuid(), nullable=False),
        sa.Column("entity_b", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("strength", sa.Float(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("metadata", JSONType, nullable=False),
    )
    op.create_index("ix_relationships_agent_a", "relationships", ["agent_id", "entity_a"])
    op.create_table(
        "cache",
        sa.Column("key", sa.String(500), primary_key=True),
        sa.Column("value", JSONType, nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
    )
    op.create_table(
        "store_state",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.Integer(), nullable=False),
    )
    op.execute("INSERT INTO store_state (key, value) VALUES ('memories_rev', 0)")
    if op.get_bind().dialect.name == "sqlite":
        # The SQLite vector cache appends new rows by rowid; anything else invalidates it.
        bump = "UPDATE store_state SET value = value + 1 WHERE key = 'memories_rev';"
        op.execute(f"CREATE TRIGGER memories_rev_delete AFTER DELETE ON memories BEGIN {bump} END")
        op.execute(f"CREATE TRIGGER memories_rev_update AFTER UPDATE ON memories BEGIN {bump} END")


def downgrade() -> None:
    for table in (
        "store_state",
        "cache",
        "relationships",
        "memories",
        "participants",
        "rooms",
        "entities",
        "agents",
    ):
        op.drop_table(table)
