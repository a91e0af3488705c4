"""Finding an agent's room the way an operator names it: by id, external id or name.

`carrier memory search|list|add --room` accept any of the three, and the memory tables
show a room by its name. This lived in the CLI module; it is a question about the stored
rooms, so it belongs to the memory layer, where any front end can ask it. It needs only
`list_rooms`, so it works with any store that has it.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Protocol

from carrier_cli.errors import InputError

if TYPE_CHECKING:
    from carrier_cli.memory.types import Room


class ListsRooms(Protocol):
    async def list_rooms(self, agent_id: uuid.UUID, source: str | None = None) -> list[Room]: ...


async def resolve_room(
    store: ListsRooms, agent_id: uuid.UUID, agent_name: str, room: str | None
) -> uuid.UUID | None:
    """The id of the room `room` names (None for no room): a room id is taken as it is;
    otherwise exactly one of the agent's rooms must have it as external id or name."""
    if room is None:
        return None
    try:
        return uuid.UUID(room)
    except ValueError:
        pass
    matches = [r for r in await store.list_rooms(agent_id) if room in (r.external_id, r.name)]
    if len(matches) == 1:
        return matches[0].id
    if not matches:
        raise InputError(
            f"--room {room!r}: no room of {agent_name} has that id, external id or name.",
            hint="`carrier memory stats` and `carrier memory list --json` show room ids.",
        )
    raise InputError(f"--room {room!r} matches {len(matches)} rooms; pass the room id.")


async def room_names(store: ListsRooms, agent_id: uuid.UUID) -> dict[uuid.UUID, str]:
    """Each of the agent's rooms by id -> how to show it: its name, else its external id."""
    return {r.id: r.name or r.external_id for r in await store.list_rooms(agent_id)}
