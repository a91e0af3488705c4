"""Instagram publishing journal: one row per post, with its step, ids and lease.

Revision ID: 0101_instagram
Revises: 0001_memory
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from carrier_cli.memory.schema import JSONType, UTCDateTime

revision: str = "0101_instagram"
down_revision: str | Sequence[str] | None = "0001_memory"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "instagram_posts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("idempotency_key", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("last_step", sa.String(30), nullable=False),
        sa.Column("caption", sa.Text(), nullable=False),
        sa.Column("character", sa.String(200), nullable=True),
        sa.Column("items", JSONType, nullable=False),
        sa.Column("options", JSONType, nullable=False),
        sa.Column("container_id", sa.String(64), nullable=True),
        sa.Column("media_id", sa.String(64), nullable=True),
        sa.Column("permalink", sa.String(500), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_expires", sa.Float(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("published_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_instagram_posts_idempotency_key")),
    )
    op.create_index(op.f("ix_instagram_posts_status"), "instagram_posts", ["status"])


def downgrade() -> None:
    op.drop_index(op.f("ix_instagram_posts_status"), table_name="instagram_posts")
    op.drop_table("instagram_posts")
