"""pgvector search over PostgreSQL's two HNSW indexes (main + bulk segment)."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Float, Integer, bindparam, literal_column, select

from carrier_cli.memory.rows import IndexFilters, M, columns
from carrier_cli.memory.schema import BULK_SEGMENT, EmbeddingVector


def search_params(vector: Any, k: int, filters: IndexFilters) -> dict[str, Any]:
    """The bound parameters of a search: the query vector, k and the filters given."""
    params: dict[str, Any] = {"q": vector, "k": k}
    for name in ("agent_id", "room_id", "entity_id", "since", "until"):
        if getattr(filters, name) is not None:
            params[name] = getattr(filters, name)
    if filters.kinds:
        params["kinds"] = list(filters.kinds)
    return params


@functools.cache
def search_statements(full: bool, given: frozenset[str], unique_only: bool) -> tuple[Any, Any]:
    """The top-k statements for the main index and the bulk segment, for one combination
    of filters, built once: building and keying them took about a millisecond a search."""
    distance = M.c.embedding.op("<=>", return_type=Float())(bindparam("q", type_=EmbeddingVector()))
    selected = columns(False) if full else [M.c.id]
    conditions: list[Any] = [M.c.embedding.is_not(None)]
    for name in ("agent_id", "room_id", "entity_id"):
        if name in given:
            conditions.append(M.c[name] == bindparam(name))
    if "kinds" in given:
        conditions.append(M.c.kind.in_(bindparam("kinds", expanding=True)))
    if "since" in given:
        conditions.append(M.c.created_at >= bindparam("since", type_=M.c.created_at.type))
    if "until" in given:
        conditions.append(M.c.created_at <= bindparam("until", type_=M.c.created_at.type))
    if unique_only:
        conditions.append(M.c.unique.is_(True))

    def top(segment: Any) -> Any:
        arm = select(*selected, distance.label("distance")).where(*conditions, segment)
        return arm.order_by(distance).limit(bindparam("k", type_=Integer()))

    return (
        top(M.c.vector_segment.is_(None)),
        # A literal, not a parameter: only then does the planner use the partial index.
        top(M.c.vector_segment == literal_column(str(BULK_SEGMENT))),
    )
