"""The records of a memory export (JSON Lines), read back and checked field by field:
what `transfer.import_jsonl` validates for every line before it writes anything."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import numpy as np

from carrier_cli.errors import InputError
from carrier_cli.memory.schema import AGENTS, ENTITIES, PARTICIPANTS, ROOMS
from carrier_cli.memory.types import Memory, MemoryKind


def read_jsonl(lines: Iterable[str], source: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{source}:{number}: not valid JSON ({exc.msg}).",
                hint="Import files are JSON Lines as written by `carrier memory export`.",
            ) from None
        if not isinstance(record, dict) or "type" not in record:
            raise InputError(f"{source}:{number}: expected a JSON object with a `type` field.")
        yield number, record


def _uuid(value: Any, where: str, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise InputError(f"{where}: `{name}` is not a UUID: {value!r}.") from None


def _uuid_or_none(value: Any, where: str, name: str) -> uuid.UUID | None:
    return None if value in (None, "") else _uuid(value, where, name)


def _time(value: Any, where: str, name: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        raise InputError(f"{where}: `{name}` is not an ISO timestamp: {value!r}.") from None


def memory_from(record: dict[str, Any], where: str) -> Memory:
    """The memory of a record, without its vector (see `vector_from`)."""
    try:
        kind = MemoryKind(record.get("kind", "message"))
    except ValueError:
        raise InputError(
            f"{where}: unknown memory kind {record.get('kind')!r}.",
            hint=f"Kinds are {', '.join(k.value for k in MemoryKind)}.",
        ) from None
    content = record.get("content")
    if not isinstance(content, dict):
        raise InputError(f"{where}: `content` must be an object with at least `text`.")
    model = record.get("embedding_model")
    return Memory(
        id=_uuid(record.get("id"), where, "id"),
        agent_id=_uuid(record.get("agent_id"), where, "agent_id"),
        room_id=_uuid_or_none(record.get("room_id"), where, "room_id"),
        entity_id=_uuid_or_none(record.get("entity_id"), where, "entity_id"),
        kind=kind,
        content=content,
        created_at=_time(record.get("created_at"), where, "created_at"),
        unique=bool(record.get("unique", True)),
        metadata=dict(record.get("metadata") or {}),
        embedding_model=str(model) if model is not None else None,
    )


_VECTOR_HINT = (
    "The file is damaged or was not written by `carrier memory export`; export it again, "
    "or delete the `embedding` field of that line to have the text embedded on import."
)


class Dimensions:
    """The dimension each embedding model's vectors must have: the store's embedder fixes
    its own; any other model's first vector in the file fixes that model's (a later vector
    of another length means a damaged file; such vectors are re-embedded anyway, but
    silently accepting them would hide the damage)."""

    def __init__(self, model: str, dimension: object) -> None:
        self.model = model
        self.known: dict[str | None, tuple[int, str]] = {}
        if isinstance(dimension, int) and dimension > 0:
            self.known[self.model] = (dimension, f"the configured embedder `{self.model}`")

    def check(self, model: str | None, size: int, where: str) -> None:
        expected = self.known.setdefault(model, (size, f"{where}'s vector of the same model"))
        if expected[0] != size:
            raise InputError(
                f"{where}: the `embedding` has {size} dimensions, but {expected[1]} has "
                f"{expected[0]} (model `{model or 'unnamed'}`).",
                hint=_VECTOR_HINT,
            )


def vector_from(record: dict[str, Any], where: str, dimensions: Dimensions) -> np.ndarray | None:
    """The record's vector as float32, checked: a flat list of finite numbers, not all
    zero, of its model's dimension. A NaN or infinite component would make every
    similarity with it NaN (search misbehaves), a wrong dimension fails at the database."""
    raw = record.get("embedding")
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        raise InputError(
            f"{where}: `embedding` must be a non-empty list of numbers.", hint=_VECTOR_HINT
        )
    try:
        array = np.asarray(raw)
    except ValueError:  # ragged nesting
        array = np.asarray([None])
    if array.ndim != 1 or array.dtype.kind not in "fi":
        raise InputError(f"{where}: `embedding` must be a flat list of numbers.", hint=_VECTOR_HINT)
    with np.errstate(over="ignore"):
        single = array.astype(np.float32)
    finite = np.isfinite(single)
    if not finite.all():
        position = int(np.flatnonzero(~finite)[0])
        value = float(array[position])
        shown = str(value) if not math.isfinite(value) else f"{value:g} (beyond float32)"
        raise InputError(
            f"{where}: `embedding` component {position} is {shown}; vectors must be finite.",
            hint=_VECTOR_HINT,
        )
    if not single.any():
        raise InputError(
            f"{where}: `embedding` is all zeros; it has no direction to search by.",
            hint=_VECTOR_HINT,
        )
    dimensions.check(record.get("embedding_model"), len(single), where)
    return single


def other_values(
    kind: str, record: dict[str, Any], where: str
) -> tuple[str, Any, dict[str, Any], list[str]]:
    """An agent, entity, room or participant record as (kind, table, row values, key
    columns), checked while the file is validated."""
    now = datetime.now().astimezone()
    if kind == "agent":
        table = AGENTS
        values: dict[str, Any] = {
            "id": _uuid(record.get("id"), where, "id"),
            "name": str(record.get("name", "")),
            "created_at": _time(record.get("created_at"), where, "created_at") or now,
            "metadata": record.get("metadata") or {},
        }
        keys = ["id"]
    elif kind == "entity":
        table = ENTITIES
        values = {
            "id": _uuid(record.get("id"), where, "id"),
            "platform": str(record.get("platform")),
            "external_id": str(record.get("external_id")),
            "names": record.get("names") or [],
            "created_at": _time(record.get("created_at"), where, "created_at") or now,
            "metadata": record.get("metadata") or {},
        }
        keys = ["id"]
    elif kind == "room":
        table = ROOMS
        values = {
            "id": _uuid(record.get("id"), where, "id"),
            "agent_id": _uuid(record.get("agent_id"), where, "agent_id"),
            "source": str(record.get("source")),
            "external_id": str(record.get("external_id")),
            "name": record.get("name"),
            "created_at": _time(record.get("created_at"), where, "created_at") or now,
            "last_active_at": _time(record.get("last_active_at"), where, "last_active_at") or now,
            "metadata": record.get("metadata") or {},
        }
        keys = ["id"]
    else:
        table = PARTICIPANTS
        values = {
            "room_id": _uuid(record.get("room_id"), where, "room_id"),
            "entity_id": _uuid(record.get("entity_id"), where, "entity_id"),
            "joined_at": _time(record.get("joined_at"), where, "joined_at") or now,
        }
        keys = ["room_id", "entity_id"]
    return kind, table, values, keys
