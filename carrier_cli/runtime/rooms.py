"""Per-room ordering: turns in one room run one at a time, in arrival order.

Each room has two FIFO locks. `intake` orders the storing of incoming messages; a message
takes the `turn` lock while still holding `intake`, so turns start in the order messages
were stored. Because the intake lock is released as soon as the turn lock is held, the
*next* message of a room is stored while the current reply is still being generated:

Policy for a message that arrives while a reply is being generated: the running turn
finishes and its reply is sent (ElizaOS v1 discards it, which leaves people talking to a
silent bot in busy rooms); the new message is already stored, so the next turn sees both
it and the reply in the recent messages. `TurnLog.newer_messages` counts such arrivals.
Different rooms never wait for each other.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass
class RoomGate:
    intake: asyncio.Lock = field(default_factory=asyncio.Lock)
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0
    arrivals: int = 0  # messages stored in this room since the gate was created


class RoomGates:
    """Gates by room key; a gate is dropped when no turn uses it (no unbounded growth)."""

    def __init__(self) -> None:
        self._gates: dict[object, RoomGate] = {}

    def __len__(self) -> int:
        return len(self._gates)

    @asynccontextmanager
    async def enter(self, key: object) -> AsyncIterator[RoomGate]:
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = RoomGate()
        gate.users += 1
        try:
            yield gate
        finally:
            gate.users -= 1
            if gate.users == 0 and self._gates.get(key) is gate:
                del self._gates[key]
