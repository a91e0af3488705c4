"""Embeddings from OpenAI or any OpenAI-compatible /v1/embeddings (Ollama, vLLM, LM Studio).

`model_id` must be stable before the first call (the memory store keys its cache on it),
so it carries the dimension only when it is known up front (the table below or an explicit
`dimensions`); otherwise `dimension` is learnt from the first answer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from carrier_cli.errors import RuntimeFailure
from carrier_cli.llm import openai_common
from carrier_cli.llm.errors import MissingApiKey
from carrier_cli.llm.recording import Attempts, openai_usage
from carrier_cli.llm.retry import Retrier, RetryPolicy, Transient
from carrier_cli.usage.records import CallObserver, TokenUsage

log = logging.getLogger(__name__)

KNOWN_DIMENSIONS: dict[str, int] = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
    "nomic-embed-text": 768,
    "mxbai-embed-large": 1024,
    "all-minilm": 384,
    "snowflake-arctic-embed": 1024,
    "bge-m3": 1024,
}
# OpenAI allows 2048 inputs and ~300k tokens per request; smaller batches keep a failed
# request cheap to retry and stay well inside compatible servers' limits.
BATCH_SIZE = 256
MAX_BATCH_CHARS = 600_000


class OpenAIEmbedder:
    """Embedder over /v1/embeddings, with the shared retry policy and batching."""

    def __init__(
        self,
        model: str = "text-embedding-3-small",
        api_key: str | None = None,
        base_url: str | None = None,
        dimensions: int | None = None,
        timeout: float = 60.0,
        *,
        provider: str | None = None,
        retry: RetryPolicy | None = None,
        batch_size: int = BATCH_SIZE,
        observers: list[CallObserver] | None = None,
        http_transport: openai_common.HttpTransport = "auto",
    ) -> None:
        self.observers: list[CallObserver] = observers if observers is not None else []
        if provider is None:
            provider = "ollama" if api_key == "ollama" else "openai"
        if not api_key:
            raise MissingApiKey(provider)
        self.provider = provider
        self.model = model
        self.base_url = base_url
        self.requested_dimensions = dimensions
        self.timeout = timeout
        self.retry = retry or RetryPolicy.from_settings(3, timeout)
        self.batch_size = max(1, batch_size)
        known = dimensions or KNOWN_DIMENSIONS.get(model.split(":")[0])
        self.dimension = known or 0
        self.model_id = f"{provider}:{model}" + (f":{known}" if known else "")
        self._client = openai_common.make_client(api_key, base_url, timeout, http_transport)

    def _classify(self, exc: BaseException) -> Transient | None:
        return openai_common.classify(exc, self.timeout, self.base_url)

    def _batches(self, texts: Sequence[str]) -> list[list[str]]:
        batches: list[list[str]] = []
        current: list[str] = []
        chars = 0
        for text in texts:
            if current and (len(current) >= self.batch_size or chars + len(text) > MAX_BATCH_CHARS):
                batches.append(current)
                current, chars = [], 0
            current.append(text)
            chars += len(text)
        if current:
            batches.append(current)
        return batches

    async def _embed_batch(self, batch: list[str]) -> list[list[float]]:
        kwargs: dict[str, object] = {"model": self.model, "input": batch}
        if self.requested_dimensions:
            kwargs["dimensions"] = self.requested_dimensions
        attempts = Attempts(self.observers, self.provider, self.model, purpose="embedding")
        retrier = Retrier(
            self.retry,
            self._classify,
            openai_common.describe(self.provider, self.base_url),
            hint=openai_common.unavailable_hint(self.provider),
            on_failure=attempts.failed if attempts.active else None,
        )

        async def attempt() -> Any:
            attempts.start()
            return await self._client.embeddings.create(**kwargs)  # type: ignore[arg-type]

        try:
            response = await retrier.call(attempt)
        except Exception as exc:
            raise (
                openai_common.translate(exc, self.provider, self.model, self.base_url) or exc
            ) from None
        if attempts.active:
            attempts.ok(self._usage(response, batch))
        rows = sorted(response.data, key=lambda item: item.index)
        if len(rows) != len(batch):
            raise RuntimeFailure(
                f"{openai_common.describe(self.provider, self.base_url)} returned "
                f"{len(rows)} embeddings for {len(batch)} texts."
            )
        return [list(row.embedding) for row in rows]

    def _usage(self, response: Any, batch: list[str]) -> TokenUsage:
        """Input tokens as reported (embeddings have no output), else counted locally."""
        reported = openai_usage(getattr(response, "usage", None))
        if reported is not None and reported.input_tokens is not None:
            return TokenUsage(input_tokens=reported.input_tokens, output_tokens=0)
        from carrier_cli.llm.tokens import count_tokens

        counted = sum(count_tokens(text, self.model) for text in batch)
        return TokenUsage(input_tokens=counted, output_tokens=0, estimated=True)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order. Empty texts are sent as a space (the API rejects
        empty strings)."""
        if not texts:
            return []
        prepared = [text if text.strip() else " " for text in texts]
        vectors: list[list[float]] = []
        for batch in self._batches(prepared):
            vectors.extend(await self._embed_batch(batch))
        width = len(vectors[0])
        if any(len(v) != width for v in vectors):
            raise RuntimeFailure(
                f"Embedding model {self.model_id} returned vectors of different lengths."
            )
        if not self.dimension:
            self.dimension = width
        elif width != self.dimension:
            raise RuntimeFailure(
                f"Embedding model {self.model_id} returned {width}-dimensional vectors, "
                f"expected {self.dimension}.",
                hint="Set embedding_dimensions to the model's real size, or leave it unset.",
            )
        return vectors

    async def aclose(self) -> None:
        await self._client.close()

    def __repr__(self) -> str:
        return f"OpenAIEmbedder(model_id={self.model_id!r}, base_url={self.base_url!r})"
