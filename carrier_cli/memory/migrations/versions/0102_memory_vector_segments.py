"""Memories: `vector_segment`, and PostgreSQL's HNSW index split into main + bulk.

On PostgreSQL an existing HNSW index is rebuilt as the partial main index (rows whose
vector_segment is NULL, i.e. all of them): about 25 s per 100k memories, once. The bulk
segment's index starts empty.

Revision ID: 0102_memory_segments
Revises: 0101_instagram
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from carrier_cli.memory.schema import (
    BULK_VECTOR_INDEX,
    HNSW_OPTIONS,
    MAIN_VECTOR_INDEX,
    hnsw_index_ddl,
)

revision: str = "0102_memory_segments"
down_revision: str | Sequence[str] | None = "0101_instagram"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _has_index(name: str) -> bool:
    found = op.get_bind().execute(
        sa.text("SELECT 1 FROM pg_indexes WHERE indexname = :name"), {"name": name}
    )
    return found.first() is not None


def upgrade() -> None:
    op.add_column("memories", sa.Column("vector_segment", sa.SmallInteger(), nullable=True))
    if op.get_bind().dialect.name == "postgresql" and _has_index(MAIN_VECTOR_INDEX):
        op.execute(f"DROP INDEX {MAIN_VECTOR_INDEX}")
        op.execute("SET LOCAL maintenance_work_mem = '512MB'")
        op.execute(hnsw_index_ddl(bulk=False))
        op.execute(hnsw_index_ddl(bulk=True))


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    indexed = postgres and _has_index(MAIN_VECTOR_INDEX)
    if postgres:
        op.execute(f"DROP INDEX IF EXISTS {MAIN_VECTOR_INDEX}")
        op.execute(f"DROP INDEX IF EXISTS {BULK_VECTOR_INDEX}")
    op.drop_column("memories", "vector_segment")
    if indexed:
        op.execute("SET LOCAL maintenance_work_mem = '512MB'")
        op.execute(
            f"CREATE INDEX {MAIN_VECTOR_INDEX} ON memories "
            f"USING hnsw (embedding vector_cosine_ops) WITH ({HNSW_OPTIONS})"
        )
