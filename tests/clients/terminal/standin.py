"""A small stand-in for AgentRuntime, so the front end's own logic (room choice, slash
commands, piped output, errors) can be tested in-process and fast. The end-to-end tests in
test_chat_e2e.py and test_chat_pty.py drive the real `carrier chat` against the fake model
server instead."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from carrier_cli.errors import RuntimeFailure
from carrier_cli.memory.types import Memory, MemoryKind, Room, SearchHit
from carrier_cli.runtime.types import IncomingMessage, TurnEvent, TurnResult


@dataclass
class StandInCharacter:
    name: str = "Ada"
    bio: list[str] = field(default_factory=lambda: ["Counts things.", "Likes engines."])


@dataclass
class StandInModelConfig:
    large: str = "big-model"
    provider: str = "openai"


class StandInStore:
    def __init__(self, agent_id: uuid.UUID) -> None:
        self.agent_id = agent_id
        self.rooms: list[Room] = []
        self.memories: list[Memory] = []

    async def list_rooms(self, agent_id: uuid.UUID, source: str | None = None) -> list[Room]:
        return [r for r in reversed(self.rooms) if source is None or r.source == source]

    async def search(self, query: str, agent_id: uuid.UUID, k: int = 8) -> list[SearchHit]:
        if "fail" in query:
            raise RuntimeFailure("The memory database is locked.")
        words = set(query.lower().split())
        hits = [SearchHit(m, 0.9) for m in self.memories if words & set(m.text.lower().split())]
        return hits[:k]

    async def list(
        self, agent_id: uuid.UUID, kinds: list[MemoryKind] | None = None
    ) -> list[Memory]:
        return [m for m in self.memories if kinds is None or m.kind in kinds]


class StandInRuntime:
    """Replies `You said: TEXT` in word deltas; `fail` / `slow` in the text trigger errors."""

    def __init__(self) -> None:
        self.agent_id = uuid.uuid4()
        self.character = StandInCharacter()
        self.model_config = StandInModelConfig()
        self.store = StandInStore(self.agent_id)
        self.received: list[IncomingMessage] = []
        self.last_turn_log: dict[str, Any] | None = None
        self.closed = False

    def set_model(self, name: str) -> None:
        self.model_config.large = name

    def _remember(self, message: IncomingMessage) -> None:
        self.received.append(message)
        if not any(r.external_id == message.room_key for r in self.store.rooms):
            self.store.rooms.append(
                Room(uuid.uuid4(), self.agent_id, message.source, message.room_key)
            )
        self.store.memories.append(Memory(self.agent_id, {"text": message.text}))

    async def handle_message(self, message: IncomingMessage) -> TurnResult:
        result: TurnResult | None = None
        async for event in self.stream_message(message):
            result = event.result or result
        assert result is not None
        return result

    async def stream_message(self, message: IncomingMessage) -> AsyncIterator[TurnEvent]:
        self._remember(message)
        if "fail" in message.text:
            raise RuntimeFailure("The model server kept answering 503.")
        if "crash" in message.text:
            raise ValueError("kaboom")
        reply = f"You said: {message.text}"
        if "slow" in message.text:
            # Long enough that a test's Ctrl-C lands mid-reply even when the machine is slow
            # to deliver it (5 words, ~1 s, was not always); tests cancel it, never wait.
            reply += " and" + " more" * 40
        if "slow start" in message.text:
            # A model that takes its time before the first token (tests cancel the wait).
            await asyncio.sleep(15)
        for index, word in enumerate(reply.split(" ")):
            if "slow" in message.text:
                await asyncio.sleep(0.2)
            if "break" in message.text and index == 2:
                raise RuntimeFailure("The connection dropped mid-reply.")
            yield TurnEvent("delta", word + " ")
        self.last_turn_log = {
            "prompt": f"PROMPT[{message.text}]",
            "raw_output": reply,
            "timings": {"model": 0.25},
        }
        yield TurnEvent("done", result=TurnResult("DIRECT", uuid.uuid4(), text=reply.strip()))

    async def aclose(self) -> None:
        self.closed = True


def main() -> None:
    """`python -m tests.clients.terminal.standin [--no-stream]`: the interactive front end on
    a pseudo-terminal without a model server (for pexpect tests of the UI alone)."""
    import sys

    from carrier_cli.clients.terminal import ChatOptions, run_chat

    async def factory(_: ChatOptions) -> StandInRuntime:
        return StandInRuntime()

    options = ChatOptions(stream="--no-stream" not in sys.argv)
    sys.exit(run_chat(options, runtime_factory=factory))


if __name__ == "__main__":
    main()
