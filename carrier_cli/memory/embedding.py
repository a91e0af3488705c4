"""The vectors' side of MemoryStore, the same on every backend: embedding texts (each
distinct text once, cached), and which model the database's vectors come from.

Vectors are stored unit-length, with the id of the model that made them. A database holds
vectors of one model at a time: adding or searching with another model is refused with a
message that names both and points at `carrier memory reembed`, instead of silently
comparing incompatible vectors (ElizaOS's "384 vs 1536" failure).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from carrier_cli.cache import LocalCache
from carrier_cli.errors import InputError, RuntimeFailure
from carrier_cli.memory.rows import content_hash, unit_rows

if TYPE_CHECKING:
    from carrier_cli.llm.base import Embedder
    from carrier_cli.memory.backend import MemoryBackend

EMBED_BATCH = 512
VECTOR_CACHE_SIZE = 20_000  # (model, content hash) -> unit vector, least recently used out


class EmbeddingModelMismatch(InputError):
    """The database's vectors come from another model than the configured embedder."""


class Vectors:
    """The embedder, its cache of vectors by text, and the stored model (cached until a
    delete or reembed may have changed it)."""

    def __init__(self, backend: MemoryBackend, embedder: Embedder) -> None:
        self.backend = backend
        self.embedder = embedder
        self.db_model: tuple[str, int] | None = None
        self.claimed: tuple[str, int] | None = None  # model chosen by this process's first write
        self._asking: asyncio.Future[tuple[str, int] | None] | None = None  # the read under way
        # In-process only, even with redis_url: the database's vectors (by content hash,
        # `stored_vectors`) are already the tier every process shares, vectors never go
        # stale (the key names the model), and a local embedding costs less than a Redis
        # round trip, so Redis would add latency and invalidate nothing.
        self.cache: LocalCache[tuple[str, str], np.ndarray] = LocalCache(capacity=VECTOR_CACHE_SIZE)

    # ------------------------------------------------------------------ the stored model
    async def stored_model(self, *, refresh: bool = False) -> tuple[str, int] | None:
        """(model id, dimension) of the vectors in the database, None when there are none.

        Callers that ask while a query is under way share it: on a database without
        vectors yet nothing is cached, and the Discord burst's first messages (100 rooms
        stored at once before the first commit) sent 263 of these reads, each an
        aiosqlite thread hop."""
        if self.db_model is not None and not refresh:
            return self.db_model
        if refresh:
            self.db_model = await self.backend.stored_model()
            return self.db_model
        pending = self._asking
        if pending is None:
            pending = self._asking = asyncio.ensure_future(self.backend.stored_model())

            def done(future: asyncio.Future[tuple[str, int] | None]) -> None:
                if self._asking is future:
                    self._asking = None

            pending.add_done_callback(done)
        found = await asyncio.shield(pending)  # one caller's cancellation is not the others'
        self.db_model = found
        return found

    async def model_or_claimed(self) -> tuple[str, int] | None:
        """The stored model, or the one this process's first write is storing."""
        return await self.stored_model() or self.claimed

    def forget_model(self) -> None:
        """Vectors were deleted or cleared: the stored model is to be read again."""
        self.db_model = None
        self.claimed = None
        self._asking = None  # a read under way may predate the change: ask again

    def mismatch(self, stored: tuple[str, int], model: str, dim: int) -> EmbeddingModelMismatch:
        return EmbeddingModelMismatch(
            f"The memory database holds vectors from embedding model `{stored[0]}` "
            f"({stored[1]} dimensions), but the configured embedder is `{model}` "
            f"({dim} dimensions); they cannot be compared.",
            hint="Run `carrier memory reembed` to re-embed every memory with the new model, "
            "or switch embedding_provider/embedding_model back.",
        )

    async def check_model(self, model: str, dim: int, *, writing: bool) -> bool:
        """True when vectors of `model` can be compared with the stored ones. Raises on a
        mismatch; on an empty database, writing lets the backend prepare its vector
        column for the dimension (PostgreSQL: vector(N))."""
        stored = await self.model_or_claimed()
        if stored is None:
            if writing:
                await self.backend.prepare_vectors(dim, force=True)
                self.claimed = (model, dim)
            return writing
        if stored != (model, dim):
            raise self.mismatch(stored, model, dim)
        if writing:
            await self.backend.prepare_vectors(dim, force=False)
        return True

    # ------------------------------------------------------------------ embedding
    async def embed_texts(
        self, texts: Sequence[str], digests: Sequence[str] | None = None
    ) -> list[np.ndarray | None]:
        """Unit vectors for texts, None for empty ones. Each distinct text is embedded once:
        first an in-process cache, then vectors already stored for the same text (by content
        hash), and only then the embedder, in batches. `digests`: the texts' content
        hashes when the caller has them already (MemoryStore stores them in each row)."""
        model = self.embedder.model_id
        results: list[np.ndarray | None] = [None] * len(texts)
        # Each distinct text hashed once (a hash per lookup made it six per text: a tenth
        # of an ingest's CPU time, profiled on 10,000 short texts).
        wanted: dict[str, list[int]] = {}
        hashes: dict[str, str] = {}
        for i, value in enumerate(texts):
            if not value or not value.strip():
                continue
            positions = wanted.get(value)
            if positions is not None:
                positions.append(i)
                continue
            digest = content_hash(value) if digests is None else digests[i]
            cached = self.cache.peek((model, digest))
            if cached is not None:
                results[i] = cached
            else:
                wanted[value] = [i]
                hashes[value] = digest
        if not wanted:
            return results
        inline: Callable[[Sequence[str]], bool] | None = getattr(
            self.embedder, "embeds_inline", None
        )
        if inline is not None and inline(list(wanted)):
            # The local model on a message or two: embedding it again is cheaper than the
            # stored-vector lookup (~0.3 ms against ~1 ms of a turn's CPU in the Discord
            # burst, both per message) and gives the same vector.
            found: dict[str, np.ndarray] = {}
        else:
            found = await self.backend.stored_vectors(model, list(hashes.values()))
        todo = [t for t in wanted if hashes[t] not in found]
        fresh: dict[str, np.ndarray | None] = {}
        for start in range(0, len(todo), EMBED_BATCH):
            batch = todo[start : start + EMBED_BATCH]
            array = await self._embed_batch(batch)
            fresh.update(zip(batch, unit_rows(array), strict=True))
        for value, positions in wanted.items():
            digest = hashes[value]
            vector = found.get(digest)
            if vector is None:
                vector = fresh.get(value)
            if vector is not None:
                self._remember((model, digest), vector)
            for i in positions:
                results[i] = vector
        return results

    async def _embed_batch(self, batch: Sequence[str]) -> np.ndarray:
        embed_array: Callable[..., Any] | None = getattr(self.embedder, "embed_array", None)
        try:
            if embed_array is not None:
                array = np.asarray(await embed_array(batch), dtype=np.float32)
            else:
                array = np.asarray(await self.embedder.embed(batch), dtype=np.float32)
        except (InputError, RuntimeFailure):
            raise
        except Exception as exc:
            raise RuntimeFailure(
                f"Embedding with `{self.embedder.model_id}` failed: {type(exc).__name__}: {exc}",
                hint="Check embedding_provider, embedding_base_url and the API key, or use "
                "embedding_provider=local.",
            ) from exc
        if array.ndim != 2 or array.shape[0] != len(batch):
            raise RuntimeFailure(
                f"Embedder `{self.embedder.model_id}` returned an array of shape "
                f"{array.shape} for {len(batch)} texts."
            )
        return array

    def _remember(self, key: tuple[str, str], vector: np.ndarray) -> None:
        self.cache.put(key, vector)

    # ------------------------------------------------------------------ re-embedding
    async def reembed_rows(
        self,
        model: str,
        batch_size: int,
        total: int,
        progress: Callable[[int, int], None] | None,
    ) -> int:
        """Embed every memory's text again, in id order, `batch_size` at a time (the
        vectors were cleared first: MemoryStore.reembed)."""
        done = 0
        last_id: uuid.UUID | None = None
        while True:
            rows = await self.backend.id_page(last_id, batch_size)
            if not rows:
                break
            last_id = rows[-1][0]
            vectors = await self.embed_texts([str((r[1] or {}).get("text", "")) for r in rows])
            first = next((v for v in vectors if v is not None), None)
            if first is not None:
                await self.check_model(model, len(first), writing=True)
            changes = [
                {"mid": memory_id, "vec": vector}
                for (memory_id, _), vector in zip(rows, vectors, strict=True)
                if vector is not None
            ]
            if changes:
                await self.backend.update_vectors(changes, model)
            done += len(rows)
            if progress is not None:
                progress(done, total)
        return done
