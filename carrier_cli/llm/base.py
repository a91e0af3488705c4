"""Provider protocols shared by the runtime, the memory layer and the tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable


@dataclass(frozen=True)
class ImagePart:
    """An image sent with a message: the bytes and their media type (one of
    `IMAGE_TYPES`, the formats both OpenAI and Anthropic accept). Providers send it inline
    (OpenAI: a `data:` URL in an `image_url` part; Anthropic: a base64 `image` block), so
    the model's servers never fetch anything themselves."""

    data: bytes = field(repr=False)
    mime: str
    name: str = ""  # the file name, for logs and the prompt's description

    def base64(self) -> str:
        import base64

        return base64.b64encode(self.data).decode("ascii")

    def data_url(self) -> str:
        return f"data:{self.mime};base64,{self.base64()}"

    def __repr__(self) -> str:  # never the bytes (prompt logs, debug output)
        return f"ImagePart({self.name or 'image'!r}, {self.mime}, {len(self.data)} bytes)"


# Media types both providers take inline (OpenAI and Anthropic document the same four).
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


@dataclass
class ChatMessage:
    """One message of a prompt. `images` go with the text to models that accept images
    (see `llm.vision`); a provider given images for a text-only model gets a 400 back."""

    role: Literal["system", "user", "assistant"]
    content: str
    images: tuple[ImagePart, ...] = ()


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
    "local:wordllama-l2-supercat-256" or "openai:text-embedding-3-small:1536". An embedder
    that runs in this process (no model call) says so with a true `in_process` attribute
    (optional; absent: remote), and storing a message with it holds no client slot."""

    model_id: str
    dimension: int

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...
