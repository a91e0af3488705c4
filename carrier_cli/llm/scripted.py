"""An in-process ChatModel that answers from a script.

Used by fast pipeline tests and by bench/runtime_bench.py, where the point is to measure
everything except the model: with `latency=0` a call costs one dict append and no I/O.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from carrier_cli.llm.base import ChatMessage, GenerationParams
from carrier_cli.llm.recording import Attempts
from carrier_cli.usage.records import CallObserver

Script = list[str] | Callable[[list[ChatMessage]], str]


@dataclass
class ScriptedCall:
    messages: list[ChatMessage]
    params: GenerationParams
    streamed: bool


class ScriptExhausted(AssertionError):
    """The script ran out of replies: the code under test called the model more than expected."""


class ScriptedChatModel:
    """Replies come from a list (consumed in order) or a function of the prompt messages.

    `calls` records every request so tests can assert on prompts and call counts.
    `chunk_size` splits streamed replies into pieces of that many characters.
    """

    name = "scripted"

    def __init__(
        self,
        replies: Script,
        *,
        latency: float = 0.0,
        chunk_size: int = 7,
        record: bool = True,
        observers: list[CallObserver] | None = None,
    ) -> None:
        # Records carry estimated tokens (a script reports none), like a real provider's.
        self.observers: list[CallObserver] = observers if observers is not None else []
        self._replies = replies if callable(replies) else list(replies)
        self.latency = latency
        self.chunk_size = max(1, chunk_size)
        self.record = record
        self.calls: list[ScriptedCall] = []
        self.closed = False

    def _next(
        self, messages: Sequence[ChatMessage], params: GenerationParams, streamed: bool
    ) -> str:
        listed = list(messages)
        if self.record:
            self.calls.append(ScriptedCall(listed, params, streamed))
        if callable(self._replies):
            return self._replies(listed)
        if not self._replies:
            raise ScriptExhausted(f"ScriptedChatModel has no reply left for call {len(self.calls)}")
        return self._replies.pop(0)

    async def complete(self, messages: Sequence[ChatMessage], params: GenerationParams) -> str:
        attempts = Attempts(self.observers, self.name, params.model, messages)
        attempts.start()
        try:
            reply = self._next(messages, params, streamed=False)
        except Exception as exc:
            attempts.failed(exc, retried=False)
            raise
        if self.latency:
            await asyncio.sleep(self.latency)
        attempts.ok(None, reply)
        return reply

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[str]:
        attempts = Attempts(self.observers, self.name, params.model, messages)
        attempts.start()
        try:
            reply = self._next(messages, params, streamed=True)
        except Exception as exc:
            attempts.failed(exc, retried=False)
            raise
        if self.latency:
            await asyncio.sleep(self.latency)
        for start in range(0, len(reply), self.chunk_size):
            if not start:
                attempts.first_token()
            yield reply[start : start + self.chunk_size]
            await asyncio.sleep(0)
        attempts.ok(None, reply)

    async def aclose(self) -> None:
        self.closed = True
