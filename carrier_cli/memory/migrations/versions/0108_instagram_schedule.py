"""Instagram schedule: when a journaled post goes out, its approval, and who claimed it.

Revision ID: 0108_instagram_schedule
Revises: 0107_instagram_comment_replies
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from carrier_cli.memory.schema import UTCDateTime

revision: str = "0108_instagram_schedule"
down_revision: str | Sequence[str] | None = "0107_instagram_comment_replies"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "instagram_schedule",
        sa.Column(
            "post_id",
            sa.Integer(),
            sa.ForeignKey("instagram_posts.id", ondelete="CASCADE"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("scheduled_at", UTCDateTime(), nullable=True),
        sa.Column("tz", sa.String(64), nullable=True),
        sa.Column("prompt", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("claim_owner", sa.String(200), nullable=True),
        sa.Column("claimed_at", sa.Float(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_instagram_schedule_due", "instagram_schedule", ["state", "scheduled_at"])


def downgrade() -> None:
    op.drop_index("ix_instagram_schedule_due", table_name="instagram_schedule")
    op.drop_table("instagram_schedule")
