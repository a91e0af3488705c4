"""Instagram comment replies: one row per comment, so each is answered exactly once.

Revision ID: 0107_instagram_comment_replies
Revises: 0106_webhook_deliveries
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from carrier_cli.memory.schema import UTCDateTime

revision: str = "0107_instagram_comment_replies"
down_revision: str | Sequence[str] | None = "0106_webhook_deliveries"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "instagram_comment_replies",
        sa.Column("comment_id", sa.String(64), primary_key=True),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("media_id", sa.String(64), nullable=False),
        sa.Column("parent_id", sa.String(64), nullable=True),
        sa.Column("character", sa.String(200), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("reply_text", sa.Text(), nullable=True),
        sa.Column("reply_id", sa.String(64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claim_owner", sa.String(200), nullable=True),
        sa.Column("claimed_until", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("replied_at", UTCDateTime(), nullable=True),
    )
    op.create_index(
        "ix_instagram_comment_replies_replied",
        "instagram_comment_replies",
        ["character", "replied_at"],
    )
    op.create_index("ix_instagram_comment_replies_status", "instagram_comment_replies", ["status"])


def downgrade() -> None:
    op.drop_index("ix_instagram_comment_replies_status", table_name="instagram_comment_replies")
    op.drop_index("ix_instagram_comment_replies_replied", table_name="instagram_comment_replies")
    op.drop_table("instagram_comment_replies")
