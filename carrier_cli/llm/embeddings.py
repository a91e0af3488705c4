"""Embedders: the offline default (wordllama) and the factory that picks one from settings.

The local model is loaded once per process and runs in a worker thread, so a chat turn
never blocks the event loop on it for long: only a few short texts (a chat message: ~0.1
ms) are embedded inline, where the hop to a thread and back would cost more. Remote
embedders live in `openai_embeddings` and are imported only when chosen.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence
from itertools import chain
from typing import TYPE_CHECKING, Any

from carrier_cli.errors import ConfigError, RuntimeFailure

if TYPE_CHECKING:
    from carrier_cli.config import Settings
    from carrier_cli.llm.base import Embedder

LOCAL_MODEL_ID = "local:wordllama-l2-supercat-256"
LOCAL_DIMENSION = 256
LOCAL_ALIASES = {
    "local",
    "wordllama",
    "wordllama-256",
    "l2_supercat",
    LOCAL_MODEL_ID,
    LOCAL_MODEL_ID.removeprefix("local:"),
}
DEFAULT_MODELS = {"openai": "text-embedding-3-small", "ollama": "nomic-embed-text"}

# Batches up to this size are embedded on the calling thread (see embed_array); the first
# call, which loads the model (~1 s), always goes to a worker thread.
INLINE_TEXTS = 4
INLINE_CHARS = 2000

# The local model reads at most this much of each text. wordllama tokenizes without
# truncation and mean-pools, so a 2 MB text took 3.6 s and about 850 MB of memory (measured
# here) for a vector that says little more than its first pages: a chat message is well
# under this, and documents are chunked before they are embedded (memory/knowledge.py).
MAX_EMBED_CHARS = 16_000

_model: Any = None
_model_lock = threading.Lock()
# The model is loaded: from then on short texts are embedded inline. Set only after the
# load, so that a message arriving while a warm-up (LocalEmbedder.warm) runs in its thread
# never loads the model on the event loop but waits in a worker thread. An inline
# embedding (at most INLINE_TEXTS texts, fewer than PADDED_TEXTS) uses the model's own
# tokenizer, so it never builds the unpadded copy (~0.15 s, 37 MB) either.
_inline_ready = False


def load_wordllama() -> Any:
    """The bundled 256-d weights, offline: read from wordllama's files directly
    (llm/wordllama_files.py), else through wordllama, whose own lookup of its bundled
    tokenizer is broken, hence the explicit cache_dir pointing into the installed package."""
    global _model
    if _model is None:
        with _model_lock:
            if _model is None:
                _model = _load_bundled_or_none()
            if _model is None:
                try:
                    _model = load_through_wordllama()
                except Exception as exc:  # pragma: no cover - broken installation
                    raise RuntimeFailure(
                        f"Could not load the local embedding model (wordllama): {exc}.",
                        hint="Reinstall Carrier's dependencies (pip install --force-reinstall "
                        "wordllama), or set embedding_provider to openai or ollama.",
                    ) from exc
    return _model


def load_through_wordllama() -> Any:
    """The bundled model as wordllama itself loads it (`WordLlama.load`, offline): the
    fallback of `load_wordllama`, and the reference the tests and the ingest bench's peer
    compare with."""
    import os

    import wordllama
    from wordllama import WordLlama

    return WordLlama.load(
        cache_dir=os.path.dirname(wordllama.__file__),
        disable_download=True,
        dim=LOCAL_DIMENSION,
    )


class LocalEmbedder:
    """wordllama l2_supercat, 256 dimensions, no network."""

    model_id = LOCAL_MODEL_ID
    dimension = LOCAL_DIMENSION
    # Runs in this process, no model call: storing a message with it takes none of a
    # client's slots (runtime/rooms.py). Every LocalEmbedder shares the one loaded model.
    in_process = True

    def embed_sync(self, texts: Sequence[str]) -> Any:
        """float32 array (len(texts), 256); not normalised (the store normalises)."""
        import numpy as np

        if not texts:
            return np.zeros((0, LOCAL_DIMENSION), dtype=np.float32)
        clipped = [text[:MAX_EMBED_CHARS] for text in texts]
        model = load_wordllama()
        if _pools_like_wordllama(model):
            pooled = _embed_fast(model, clipped)
        else:
            pooled = np.asarray(model.embed(clipped, norm=False), dtype=np.float32)
        _set_inline_ready()
        return pooled

    def warm_sync(self) -> None:
        """Load what a message's first embedding would: the tokenizer (~0.1 s of CPU) and
        the token table (llm/wordllama_files.py); in the Discord burst the first turns
        otherwise waited 0.95-1.4 s for the load (measured when it still went through
        wordllama's import, ~0.36 s of CPU). Not the unpadded tokenizer copy: only
        batches of more than PADDED_TEXTS texts (ingest) use it, and it is 37 MB of a
        bot's resident memory (measured alone) that messages never need."""
        load_wordllama()
        _set_inline_ready()

    async def warm(self) -> None:
        """`warm_sync` in a worker thread (a client calls it at start, while it logs in)."""
        await asyncio.to_thread(self.warm_sync)

    def prewarm(self) -> threading.Thread | None:
        """Load the model on a daemon thread now, if it is not loaded: for a caller with
        idle time before its first embedding (the terminal chat while the operator types
        the first message). A chat's first new message otherwise waited for the load before
        its first reply: ~150 ms of CPU (the tokenizer ~100 ms of it; measured here). A
        failed load is left to the embedding that needs it, which raises the same error;
        None when there is nothing to do."""
        if _model is not None:
            return None

        def load() -> None:
            with contextlib.suppress(Exception):
                self.warm_sync()  # the one warm-up: the model, then inline embedding

        thread = threading.Thread(target=load, name="carrier-embedder-load", daemon=True)
        thread.start()
        return thread

    def embeds_inline(self, texts: Sequence[str]) -> bool:
        """Whether `embed_array` embeds `texts` right here, on the caller's thread: a chat
        message or two, with the model loaded. Such an embedding (~0.1-0.5 ms) costs less
        than looking its vector up in the database (`Vectors.embed_texts` skips that)."""
        return _inline_ready and len(texts) <= INLINE_TEXTS and sum(map(len, texts)) <= INLINE_CHARS

    async def embed_array(self, texts: Sequence[str]) -> Any:
        if self.embeds_inline(texts):
            # A chat message or two: embedding takes ~0.1-0.5 ms, less than the hop to a
            # worker thread and back (which costs several ms on a loaded machine).
            return self.embed_sync(texts)
        return await asyncio.to_thread(self.embed_sync, texts)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        array = await self.embed_array(texts)
        return [row.tolist() for row in array]


def _set_inline_ready() -> None:
    global _inline_ready
    _inline_ready = True


def _pools_like_wordllama(model: Any) -> bool:
    """Whether `_embed_fast` can stand in for `model.embed(texts, norm=False)`: the plain
    model (not binarised) with a tokenizer that has `encode_batch_fast`, its table float32
    (wordllama's) or float16 (the bundled file's, llm/wordllama_files.py: each gathered
    row is converted to float32 exactly, so the sums are the same)."""
    tokenizer = getattr(model, "tokenizer", None)
    return (
        not getattr(model, "binary", True)
        and hasattr(tokenizer, "encode_batch_fast")
        and hasattr(tokenizer, "to_str")
        and getattr(getattr(model, "embedding", None), "dtype", None) in ("float32", "float16")
    )


_unpadded: dict[int, Any] = {}  # id(model) -> a copy of its tokenizer without padding

# Up to this many texts are tokenized by the model's own (padded) tokenizer and the padding
# cut off; larger batches use the unpadded copy. The copy costs 250 ms of CPU to make
# (to_str 44 ms + from_str 205 ms, measured here), and a chat's first message paid it
# before its first reply; padding a few texts to the longest of them costs next to
# nothing, while a batch of thousands padded to its longest would not.
PADDED_TEXTS = 8


def _token_ids(model: Any, texts: list[str]) -> list[list[int]]:
    """Each text's token ids, unpadded: what `_unpadded_tokenizer` gives (the same
    tokenizer, the same ids; padding only appends)."""
    tokenizer = model.tokenizer
    padding = getattr(tokenizer, "padding", None)
    if len(texts) <= PADDED_TEXTS and (padding is None or padding.get("direction") == "right"):
        encoded = tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        if padding is None:
            return [e.ids for e in encoded]
        # Right padding: the text's own tokens are the first sum(attention_mask) ids (no
        # special tokens are added, so every one of them is attended).
        return [e.ids[: sum(e.attention_mask)] for e in encoded]
    return [
        e.ids for e in _unpadded_tokenizer(model).encode_batch_fast(texts, add_special_tokens=False)
    ]


def _load_bundled_or_none() -> Any:
    """The model read from wordllama's files without importing wordllama (~150 ms of CPU
    where wordllama's import and load took ~360: llm/wordllama_files.py), or None to load
    it through wordllama."""
    from carrier_cli.llm.wordllama_files import load_bundled

    try:
        return load_bundled()
    except Exception:  # an unexpected file: wordllama's own loader says what is wrong
        return None


def _unpadded_tokenizer(model: Any) -> Any:
    tokenizer = _unpadded.get(id(model))
    if tokenizer is None and hasattr(model, "unpadded_tokenizer"):
        tokenizer = _unpadded[id(model)] = model.unpadded_tokenizer()
    if tokenizer is None:
        from tokenizers import Tokenizer

        # A copy: wordllama's own embed needs its tokenizer's padding.
        tokenizer = Tokenizer.from_str(model.tokenizer.to_str())
        tokenizer.no_padding()
        _unpadded[id(model)] = tokenizer
    return tokenizer


def _embed_fast(model: Any, texts: list[str]) -> Any:
    """`model.embed(texts, norm=False)`, bit for bit, at about half the CPU.

    wordllama (0.4, WordLlamaInference.embed) tokenizes 64 texts at a time, pads them to
    the longest, gathers a (64, longest, 256) array of token vectors, multiplies it by
    the attention mask and sums over the tokens in float32, one position after the other
    (numpy reduces that axis in order), then divides by the token count. The padding
    adds +-0.0 to each sum, which changes no sum. Here the same sums are made without
    the padding: every text tokenized in one call (`encode_batch_fast`: no character
    offsets, which nothing reads; the same ids), the texts sorted by length, and for
    each position p the vectors of the texts longer than p gathered and added to their
    sums, so each sum gets the same float32 additions in the same order. Same clamp of
    ids into the vocabulary, same division.

    tests/llm/test_local_embeddings.py compares the result with wordllama's own embed bit
    for bit on prose, runs of spaces, tabs, emoji (byte fallback), CJK and long texts.
    (A text with no tokens, only the empty string, which the store never embeds, is a
    zero vector both ways, wordllama's with the sign bits of its padding row.)
    Measured on the ingest bench's 20,000 short texts, CPU a text, median of 5
    alternating rounds: wordllama.embed 46.9 us -> encode_batch_fast alone 36.0 us;
    on a busier machine encode_batch_fast 46.5 us -> this 24.2 us."""
    import numpy as np

    # float32, or the bundled file's float16: numpy converts float16 rows to float32
    # (exactly) as it assigns or adds them to the float32 sums.
    table = model.embedding
    ids = _token_ids(model, texts)
    lengths = np.fromiter(map(len, ids), dtype=np.intp, count=len(ids))
    flat = np.fromiter(chain.from_iterable(ids), dtype=np.intp, count=int(lengths.sum()))
    np.clip(flat, 0, table.shape[0] - 1, out=flat)
    if len(texts) == 1:
        # One text (a message, a reply, a query): its token rows summed in one reduce
        # over the token axis, which numpy adds row after row in float32 (the rows are
        # contiguous and the sum runs across them, so no pairwise summation): the same
        # additions in the same order as the loop below, without its numpy call per token
        # (tests/llm/test_local_embeddings.py checks every varied text alone, bit for bit).
        total = np.add.reduce(table[flat], axis=0, dtype=np.float32)
        return (total / np.float32(max(len(flat), 1)))[None, :]
    if table.dtype != np.float32 and len(texts) > PADDED_TEXTS:
        # A batch (ingest): its distinct tokens' rows converted once, and gathered from
        # that float32 copy (the same values), instead of a conversion per gathered row
        # (+15-30% CPU a text on 2,000 short texts, measured here).
        used, flat = np.unique(flat, return_inverse=True)
        table = table[used].astype(np.float32)
    order = np.argsort(-lengths, kind="stable")  # longest first
    longest_first = lengths[order]
    starts = np.zeros(len(ids), dtype=np.intp)
    np.cumsum(lengths[:-1], out=starts[1:])
    first_token = starts[order]
    sums = np.zeros((len(texts), table.shape[1]), dtype=np.float32)
    if len(texts) and longest_first[0] > 0:
        # How many texts are longer than each position (a prefix of the sorted texts).
        longer = np.searchsorted(-longest_first, -np.arange(longest_first[0]), side="left")
        sums[: longer[0]] = table[flat[first_token[: longer[0]]]]
        for position in range(1, int(longest_first[0])):
            count = int(longer[position])
            sums[:count] += table[flat[first_token[:count] + position]]
    pooled = np.empty_like(sums)
    pooled[order] = sums / np.maximum(longest_first, 1).astype(np.float32)[:, None]
    return pooled


def _split_model(model: str | None, provider: str) -> tuple[str, str | None]:
    """`openai:text-embedding-3-large` or `ollama:mxbai-embed-large` choose the provider."""
    if model and model in LOCAL_ALIASES:
        return "local", None
    if model and ":" in model:
        prefix, _, rest = model.partition(":")
        if prefix in ("local", "openai", "ollama"):
            return prefix, rest or None
    return provider, model


def create_embedder(settings: Settings, *, model: str | None = None) -> Embedder:
    """The embedder for these settings; `model` (a character's model.embedding) wins."""
    provider, chosen = _split_model(model or settings.embedding_model, settings.embedding_provider)
    if provider == "local":
        if chosen and chosen not in LOCAL_ALIASES:
            raise ConfigError(
                f"Embedding model `{chosen}` is not available with embedding_provider=local "
                "(only the bundled wordllama model is).",
                hint="Unset embedding_model, or set embedding_provider to openai or ollama.",
            )
        return LocalEmbedder()
    from carrier_cli.llm.openai_embeddings import OpenAIEmbedder

    if provider == "openai":
        return OpenAIEmbedder(
            model=chosen or DEFAULT_MODELS["openai"],
            api_key=settings.secret("openai_api_key"),
            base_url=settings.embedding_base_url or settings.openai_base_url,
            dimensions=settings.embedding_dimensions,
            timeout=settings.request_timeout,
            http_transport=settings.openai_http_transport,
        )
    return OpenAIEmbedder(
        model=chosen or DEFAULT_MODELS["ollama"],
        api_key="ollama",
        base_url=settings.embedding_base_url or settings.ollama_base_url,
        dimensions=settings.embedding_dimensions,
        timeout=settings.request_timeout,
        http_transport=settings.openai_http_transport,
    )
