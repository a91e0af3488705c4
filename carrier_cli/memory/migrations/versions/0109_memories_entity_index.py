"""An index for a person's memories of one kind (their facts), newest first.

Every first turn of a sender (the fact cache misses) and every fact evaluation read
"facts about this person": agent_id = ? AND entity_id = ? AND kind = 'fact' ORDER BY
created_at DESC. The only index that applied was (agent_id, kind, created_at), so each read
walked all of the agent's facts: 80 ms at 100k memories with 10k facts (the runtime bench's
database, 2-core machine at load 13), 0.8 ms with this index.

Revision ID: 0109_memories_entity_index
Revises: 0108_instagram_schedule
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0109_memories_entity_index"
down_revision: str | Sequence[str] | None = "0108_instagram_schedule"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_memories_agent_entity_kind_created",
        "memories",
        ["agent_id", "entity_id", "kind", "created_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_memories_agent_entity_kind_created", table_name="memories")
