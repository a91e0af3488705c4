"""Long-term memory: storage, schema, vector search, embeddings and migrations.

The names below are memory's library surface (also re-exported by `carrier_cli`); they
are imported on first use, because `MemoryStore` brings SQLAlchemy and NumPy and
`import carrier_cli.memory.types` must not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from carrier_cli._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "MemoryStore": "carrier_cli.memory.store",
    "EmbeddingModelMismatch": "carrier_cli.memory.store",
    "Memory": "carrier_cli.memory.types",
    "MemoryKind": "carrier_cli.memory.types",
    "Room": "carrier_cli.memory.types",
    "Entity": "carrier_cli.memory.types",
    "SearchHit": "carrier_cli.memory.types",
    "stable_id": "carrier_cli.memory.types",
}

__all__ = [
    "EmbeddingModelMismatch",
    "Entity",
    "Memory",
    "MemoryKind",
    "MemoryStore",
    "Room",
    "SearchHit",
    "stable_id",
]

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)

if TYPE_CHECKING:
    from carrier_cli.memory.store import EmbeddingModelMismatch, MemoryStore
    from carrier_cli.memory.types import Entity, Memory, MemoryKind, Room, SearchHit, stable_id
