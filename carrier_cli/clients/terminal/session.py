"""One terminal conversation: which room it writes to, who is typing, and the runtime.

Each session is a memory room (source "terminal"), so history is simply memory: a new
session gets a fresh `session-<timestamp>` room, `--room NAME` names one that later runs
can reopen, and `--continue` reopens the newest terminal room of this agent.
"""

from __future__ import annotations

import getpass
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from carrier_cli.errors import InputError
from carrier_cli.runtime.types import Addressing, IncomingMessage

if TYPE_CHECKING:
    from carrier_cli.memory.types import Room

SOURCE = "terminal"


@dataclass
class ChatOptions:
    """What `carrier chat` was asked for; every field maps to one flag."""

    character: str | None = None
    room: str | None = None
    resume: bool = False  # -c/--continue
    stream: bool = True
    provider: str | None = None
    model: str | None = None
    json_lines: bool = False  # --json, piped mode only
    verbose: bool = False  # --verbose: each turn's tokens and cost after the reply

    def validate(self) -> None:
        if self.room is not None and self.resume:
            raise InputError(
                "--room and --continue were both given.",
                hint="Use --room NAME to open a named room, or --continue for the newest one.",
            )
        if self.room is not None and not self.room.strip():
            raise InputError("--room is empty.", hint="Give the room a name, e.g. --room notes.")


def new_session_name(now: datetime | None = None) -> str:
    """`session-20261124-040512-3fa2`: sortable, and unique even for runs in one second."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"session-{stamp}-{secrets.token_hex(2)}"


def current_user() -> str:
    try:
        return getpass.getuser() or "user"
    except (KeyError, OSError):  # no passwd entry (containers)
        return "user"


@dataclass
class ChatSession:
    """The state a terminal client keeps between turns. `runtime` follows the runtime contract
    (carrier_cli.runtime.agent.AgentRuntime); it is typed loosely so stand-ins fit too."""

    runtime: Any
    room_key: str
    user: str = field(default_factory=current_user)
    resumed: bool = False
    turns: int = 0
    room: Room | None = None  # the stored room when resuming one

    async def history(self, n: int = 6) -> list[tuple[str, str]]:
        """(speaker, text) of the resumed room's last messages, oldest first."""
        if self.room is None:
            return []
        try:
            memories = await self.runtime.store.recent(self.room.id, n)
        except Exception:  # showing history is a courtesy; never block the chat on it
            return []
        return [(str(m.content.get("name") or "?"), m.text) for m in memories]

    def message(self, text: str) -> IncomingMessage:
        self.turns += 1
        return IncomingMessage(
            text=text,
            source=SOURCE,
            room_key=self.room_key,
            sender_key=self.user,
            sender_name=self.user,
            room_name=self.room_key,
            is_direct=True,  # the terminal is always one to one
            addressed=Addressing.DIRECT,
        )

    def reset(self) -> str:
        """Start a new room; the old one stays in memory and can be reopened by name."""
        self.room_key = new_session_name()
        self.resumed = False
        self.room = None
        self.turns = 0
        return self.room_key

    @property
    def character_name(self) -> str:
        return str(getattr(self.runtime.character, "name", "agent"))

    @property
    def model_label(self) -> str:
        """`gpt-4o-mini (openai)` as far as the runtime tells."""
        config = getattr(self.runtime, "model_config", None)
        model = getattr(config, "large", None) or "?"
        provider = getattr(config, "provider", None) or getattr(
            getattr(self.runtime, "model", None), "name", None
        )
        return f"{model} ({provider})" if provider else str(model)


async def choose_room(runtime: Any, options: ChatOptions) -> tuple[str, bool, Room | None]:
    """(room key, resumed?, the stored room when resuming) for the session's first turn."""
    if options.room is not None:
        name = options.room.strip()
        found = await _find_room(runtime, name)
        return name, found is not None, found
    if options.resume:
        rooms = await runtime.store.list_rooms(runtime.agent_id, source=SOURCE)
        if rooms:
            return str(rooms[0].external_id), True, rooms[0]
    return new_session_name(), False, None


async def _find_room(runtime: Any, name: str) -> Room | None:
    store = runtime.store
    try:
        if hasattr(store, "find_room"):
            found: Room | None = await store.find_room(runtime.agent_id, SOURCE, name)
            return found
        rooms = await store.list_rooms(runtime.agent_id, source=SOURCE)
    except Exception:  # a room lookup problem must not stop a chat from starting
        return None
    return next((r for r in rooms if r.external_id == name), None)
