"""Alembic environment. Carrier always hands in a live connection (see
carrier_cli.memory.migrate), so there is no alembic.ini and no offline mode."""

from __future__ import annotations

from alembic import context

from carrier_cli.memory.schema import METADATA

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=METADATA,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
