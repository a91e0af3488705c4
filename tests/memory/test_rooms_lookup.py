"""`memory.rooms_lookup`: `--room` by id, external id or name (formerly in cli/memory.py)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from carrier_cli.errors import InputError
from carrier_cli.memory.rooms_lookup import resolve_room, room_names
from carrier_cli.memory.types import Room

AGENT = uuid.uuid4()


class Rooms:
    def __init__(self, *rooms: Room) -> None:
        self.rooms = list(rooms)

    async def list_rooms(self, agent_id: uuid.UUID, source: str | None = None) -> list[Room]:
        assert agent_id == AGENT
        return self.rooms


def room(external_id: str, name: str | None = None) -> Room:
    return Room(
        id=uuid.uuid4(), agent_id=AGENT, source="terminal", external_id=external_id, name=name
    )


def resolve(store: Rooms, value: str | None) -> uuid.UUID | None:
    return asyncio.run(resolve_room(store, AGENT, "Ada", value))


def test_an_id_a_name_or_an_external_id_finds_the_room() -> None:
    lobby, other = room("ext-1", "lobby"), room("ext-2")
    store = Rooms(lobby, other)
    assert resolve(store, None) is None
    assert resolve(store, "lobby") == lobby.id
    assert resolve(store, "ext-2") == other.id
    given = uuid.uuid4()
    assert resolve(store, str(given)) == given  # an id is taken as it is, unlooked-up
    assert asyncio.run(room_names(store, AGENT)) == {lobby.id: "lobby", other.id: "ext-2"}


def test_no_match_and_several_matches_are_refused() -> None:
    store = Rooms(room("a", "same"), room("b", "same"))
    with pytest.raises(InputError) as info:
        resolve(store, "nowhere")
    assert info.value.message == (
        "--room 'nowhere': no room of Ada has that id, external id or name."
    )
    assert info.value.hint == (
        "`carrier memory stats` and `carrier memory list --json` show room ids."
    )
    with pytest.raises(InputError) as info:
        resolve(store, "same")
    assert info.value.message == "--room 'same' matches 2 rooms; pass the room id."
