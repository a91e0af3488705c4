"""The ORM's declarative `Base`, on the database's one `schema.METADATA`.

For tables used through ORM sessions (the Instagram journal and schedule) or written as
ORM classes. Kept out of `memory.schema`: importing it imports `sqlalchemy.orm`, which a
command that only talks to memory (`carrier chat` before its first reply, a memory
search) never needs. Alembic and the schema checks see its tables through METADATA once
their modules are imported.
"""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from carrier_cli.memory.schema import METADATA


class Base(DeclarativeBase):
    metadata = METADATA
