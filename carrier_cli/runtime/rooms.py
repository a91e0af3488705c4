"""Per-room ordering: turns in one room run one at a time, in arrival order, for every client.

This is the only place that orders turns; clients do not queue per room themselves (the
Discord bot hands every message straight to `AgentRuntime.handle_message`).

Each room has two FIFO locks. `intake` orders the storing of incoming messages; a message
takes the `turn` lock while still holding `intake`, so turns start in the order messages
were stored. Because the intake lock is released as soon as the turn lock is held, the
*next* message of a room is stored while the current reply is still being generated.

Policy for a message that arrives while a reply is being generated: the running turn
finishes and its reply is sent (ElizaOS v1 discards it, which leaves people talking to a
silent bot in busy rooms); the new message is already stored, so the next turn sees both
it and the reply in the recent messages. `TurnLog.newer_messages` counts such arrivals.
Different rooms never wait for each other.

What a client adds (`TurnHooks`, one per message): a bound on work at once (running a
turn holds a slot, and so does storing a message when its embedding is a model call: a
remote embedder, as the Discord bot's bound on model calls always covered it; the local
embedder is ~0.3 ms of CPU in this process, and a slot held for it lengthened every
turn's hold from ~60 to 65-73 ms in the Discord burst), which a message waiting behind its
room's running turn gives back, so a busy room cannot sit on the slots while other rooms
wait; a callback when the turn starts (a typing indicator, the turn's clock: time spent
queued is not the turn's); and the delivery of the result while the room is still held, so replies
in one room go out in the order of the messages, not in the order their generation
happened to finish.

Across processes (several `carrier serve` / `carrier run` on one PostgreSQL database) a
`RoomLock` holds the room against the other processes for as long as the room is busy in
this one: taken by the first message to reach intake in an idle room (before its client's
slot, so waiting for another process costs no slot), kept while further messages of the
room are stored and answered here, released when the last turn of the burst ends. So
messages are stored and answered in one order across all processes, as in one process
(a lock held only around each turn would serialise turns but let a later message's turn
run before an earlier one's). Turns of other rooms, and messages of this room waiting in
this process, hold no connection: only the gate's holder does. A room kept busy here
without a pause would keep other processes waiting for ever, so the next message stored
after a hold of `HANDOVER` seconds waits for the running turn to end (every message
stored here answered: the order holds), gives the lock up and queues for it again behind
any waiting process: another process waits at most about HANDOVER plus one turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from time import monotonic
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from carrier_cli.runtime.types import TurnResult

T = TypeVar("T")
# room key -> the room held against other processes while entered (AgentRuntime._room_lock)
RoomLock = Callable[[object], AbstractAsyncContextManager[None]]
HANDOVER = 2.0  # seconds a busy room is held before other processes get a turn at it


@dataclass
class RoomGate:
    intake: asyncio.Lock = field(default_factory=asyncio.Lock)
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0
    arrivals: int = 0  # messages stored in this room since the gate was created
    held: AbstractAsyncContextManager[None] | None = None  # the cross-process room lock
    held_since: float = 0.0


@dataclass
class TurnHooks:
    """A client's part in one turn (make a new one per message; it holds the slot state).

    `limit`: the client's bound on work at once (e.g. model calls per Discord bot): held
    while its turn runs, and while the message is stored when storing calls a model (a
    remote embedder: `RoomGates.turn(..., intake_is_model_call=True)`); not while it
    waits for the room's earlier turns, and given back as soon as the result is ready,
    before delivery, or earlier: once the reply is generated when nothing after it calls
    a model (the local embedder stores it, the chosen actions call none;
    `TurnState.release_slot`).
    `on_stored`: called once the message is stored, before the turn waits for its room and
    slot. Nothing awaits between the two when both are free, so a client that hands in the
    next message only after this one's `on_stored` has the turns queue for the slot in that
    order (the Discord catch-up: oldest first however long each took to read its files).
    `on_start`: called when the turn starts (room order and slot obtained). `deliver`:
    awaited with the result while the room is still held; what it raises is raised by
    `handle_message`.
    """

    limit: asyncio.Semaphore | None = None
    on_stored: Callable[[], None] | None = None
    on_start: Callable[[], None] | None = None
    deliver: Callable[[TurnResult], Awaitable[None]] | None = None
    _holding: bool = field(default=False, init=False, repr=False)

    async def acquire(self) -> None:
        """Take a slot unless this message already holds one."""
        if self.limit is not None and not self._holding:
            await self.limit.acquire()
            self._holding = True

    def release(self) -> None:
        """Give the slot back (idempotent): the result is ready, or the turn ended."""
        if self._holding and self.limit is not None:
            self._holding = False
            self.limit.release()

    async def begin(self) -> None:
        await self.acquire()
        if self.on_start is not None:
            self.on_start()

    async def finish(self, result: TurnResult) -> None:
        self.release()
        if self.deliver is not None:
            await self.deliver(result)


@dataclass
class RoomTurn(Generic[T]):
    """A message's turn in its room: what intake stored, and how many arrived since."""

    stored: T
    gate: RoomGate
    arrival: int

    @property
    def newer_messages(self) -> int:
        return self.gate.arrivals - self.arrival


class RoomGates:
    """Gates by room key; a gate is dropped when no turn uses it (no unbounded growth)."""

    def __init__(self, lock: RoomLock | None = None) -> None:
        self._gates: dict[object, RoomGate] = {}
        self._lock = lock

    async def _hold(self, key: object, gate: RoomGate) -> None:
        """With the intake lock: hold the room against other processes (see the module
        docstring); a hold older than HANDOVER is queued for again first, once the turn
        running here ends (every message stored here answered, so the order holds)."""
        if self._lock is None:
            return
        if gate.held is not None and monotonic() - gate.held_since >= HANDOVER:
            async with gate.turn:  # no other turn can start meanwhile: we hold intake
                pass
            await self._unhold(gate)
        if gate.held is None:
            held = self._lock(key)
            await held.__aenter__()
            gate.held, gate.held_since = held, monotonic()

    @staticmethod
    async def _unhold(gate: RoomGate) -> None:
        held, gate.held = gate.held, None
        if held is not None:
            await held.__aexit__(None, None, None)

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
            if gate.users == 0:
                if self._gates.get(key) is gate:
                    del self._gates[key]
                await self._unhold(gate)

    @asynccontextmanager
    async def turn(
        self,
        key: object,
        intake: Callable[[], Awaitable[T]],
        hooks: TurnHooks | None = None,
        *,
        intake_is_model_call: bool = True,
    ) -> AsyncIterator[RoomTurn[T]]:
        """Store the message (`intake`) in arrival order, wait for the room's earlier turns
        and the client's slot; the body is this message's turn. No await comes before the
        intake lock is asked for, so messages handed in order are stored in that order.
        `intake_is_model_call`: storing embeds with a remote model, so it takes the slot
        too (False: the local embedder, and storing holds none)."""
        async with self.enter(key) as gate:
            try:
                await gate.intake.acquire()
                try:
                    await self._hold(key, gate)
                    if hooks is not None and intake_is_model_call:
                        await hooks.acquire()  # a remote embedding counts against the bound
                    stored = await intake()
                    gate.arrivals += 1
                    arrival = gate.arrivals
                    if hooks is not None and hooks.on_stored is not None:
                        hooks.on_stored()
                    # Only this message can be waiting for the turn lock (it holds intake), so
                    # a free lock is taken at once and the slot is kept for the turn; behind a
                    # running turn the slot goes back while it waits.
                    if gate.turn.locked() and hooks is not None:
                        hooks.release()
                    await gate.turn.acquire()
                finally:
                    gate.intake.release()
                try:
                    if hooks is not None:
                        await hooks.begin()
                    yield RoomTurn(stored, gate, arrival)
                finally:
                    gate.turn.release()
            finally:
                if hooks is not None:
                    hooks.release()
