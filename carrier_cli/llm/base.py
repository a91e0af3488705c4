"""Provider protocols shared by the runtime, the memory layer and the tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable


@dataclass
class ChatMessage:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass
class GenerationParams:
    model: str
    temperature: float = 0.7
    max_tokens: int = 1024
    stop: Sequence[str] | None = None


@runtime_checkable
class ChatModel(Protocol):
    """A chat model provider (OpenAI, Anthropic, OpenAI-compatible, scripted fake)."""

    name: str  # provider name, e.g. "openai"

    async def complete(self, messages: Sequence[ChatMessage], params: GenerationParams) -> str: ...

    def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[str]: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Embedder(Protocol):
    """Turns text into vectors. `model_id` is recorded with every stored vector, e.g.
    "local:wordllama-l2-supercat-256" or "openai:text-embedding-3-small:1536"."""

    model_id: str
    dimension: int

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...
