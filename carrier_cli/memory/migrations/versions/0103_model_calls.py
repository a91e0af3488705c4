"""Model call records: one row per provider attempt (`carrier logs`, `carrier usage`).

Revision ID: 0103_model_calls
Revises: 0102_memory_segments
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from carrier_cli.memory.schema import UTCDateTime

revision: str = "0103_model_calls"
down_revision: str | Sequence[str] | None = "0102_memory_segments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "model_calls",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("agent_id", sa.Uuid(), nullable=True),
        sa.Column("character", sa.String(200), nullable=True),
        sa.Column("room_id", sa.Uuid(), nullable=True),
        sa.Column("client", sa.String(50), nullable=True),
        sa.Column("purpose", sa.String(30), nullable=False),
        sa.Column("provider", sa.String(50), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("error_code", sa.String(50), nullable=True),
        sa.Column("input_tokens", sa.Integer(), nullable=True),
        sa.Column("output_tokens", sa.Integer(), nullable=True),
        sa.Column("cached_tokens", sa.Integer(), nullable=True),
        sa.Column("tokens_estimated", sa.Boolean(), nullable=False),
        sa.Column("first_token_ms", sa.Float(), nullable=True),
        sa.Column("total_ms", sa.Float(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column("prompt", sa.Text(), nullable=True),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("turn_id", sa.Uuid(), nullable=True),
    )
    op.create_index("ix_model_calls_created_at", "model_calls", ["created_at"])
    op.create_index("ix_model_calls_character_created", "model_calls", ["character", "created_at"])
    op.create_index("ix_model_calls_purpose", "model_calls", ["purpose"])


def downgrade() -> None:
    op.drop_index("ix_model_calls_purpose", table_name="model_calls")
    op.drop_index("ix_model_calls_character_created", table_name="model_calls")
    op.drop_index("ix_model_calls_created_at", table_name="model_calls")
    op.drop_table("model_calls")
