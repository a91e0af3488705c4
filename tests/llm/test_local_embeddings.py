"""The offline embedder (wordllama's bundled weights): bounded input, and the same vectors
as wordllama's own loader and embed, bit for bit."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

from carrier_cli.llm.embeddings import MAX_EMBED_CHARS, LocalEmbedder


@functools.cache
def wordllamas_own() -> Any:
    """The model as `WordLlama.load` gives it (Carrier reads the same files without
    importing wordllama: llm/wordllama_files.py); the reference for every comparison."""
    from carrier_cli.llm.embeddings import load_through_wordllama

    return load_through_wordllama()


def test_a_huge_text_is_embedded_from_its_first_16000_characters() -> None:
    """A pasted 2 MB text must not cost seconds and most of a gigabyte: only its start is
    read, so its vector is the vector of that start."""
    start = " ".join(f"word{i % 500}" for i in range(4_000))[:MAX_EMBED_CHARS]
    huge = start + " tail" * 400_000
    embedder = LocalEmbedder()
    whole, head = embedder.embed_sync([huge, start])
    assert np.allclose(whole, head)
    short = embedder.embed_sync(["hello there"])[0]
    assert not np.allclose(short, head)  # a different text still gets its own vector


def _varied_texts() -> list[str]:
    """Prose, runs of spaces, tabs and newlines, accents, CJK, emoji (byte fallback), the
    sentencepiece space mark itself, empty-ish and long texts, in batches of mixed length
    (so padding differs from batch to batch)."""
    import random

    rnd = random.Random(15)
    alphabet = [*"abc xyz\t\n.,!?éü中文🙂", "  ", "   ", "\u00a0", "\u2581", "\u2581\u2581"]
    words = ["lantern", "harbor", "signal", "copper", "the", "a", "naïve", "straße"]
    texts = ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 80))) for _ in range(600)]
    texts += [" ".join(rnd.choices(words, k=rnd.randint(1, 40))) for _ in range(600)]
    texts += [" lead", "trail ", "  two  spaces  ", "x" * 3000, "a  " * 300, "🙂" * 50, "."]
    return texts


def test_the_fast_path_gives_wordllamas_own_vectors_bit_for_bit() -> None:
    """embed_sync pools without wordllama's padding (llm/embeddings.py `_embed_fast`) but
    must store exactly the vectors wordllama's own `embed` gives, or stored vectors and a
    new query's would drift apart between versions."""
    from carrier_cli.llm.embeddings import _pools_like_wordllama, load_wordllama

    assert _pools_like_wordllama(load_wordllama())  # else the fast path is never taken here
    model = wordllamas_own()
    texts = _varied_texts()
    ours = LocalEmbedder().embed_sync(texts)
    theirs = np.asarray(model.embed(texts, norm=False), dtype=np.float32)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    assert np.array_equal(ours.view(np.uint32), theirs.view(np.uint32))
    # Batches of one length and of one text each, and a text with no tokens at all.
    for batch in (texts[:1], ["same length"] * 70, ["", "after an empty text"]):
        ours, theirs = LocalEmbedder().embed_sync(batch), model.embed(batch, norm=False)
        assert np.array_equal(ours, theirs)


def test_each_text_alone_gives_wordllamas_own_vector_bit_for_bit() -> None:
    """One text at a time is how a turn embeds (its message, its reply, a query): that
    path sums the text's token rows in one reduce, and must give wordllama's bits too."""
    model = wordllamas_own()
    embedder = LocalEmbedder()
    for text in _varied_texts():
        ours = embedder.embed_sync([text])
        theirs = np.asarray(model.embed([text], norm=False), dtype=np.float32)
        assert np.array_equal(ours.view(np.uint32), theirs.view(np.uint32)), repr(text[:40])


async def test_warm_up_makes_short_texts_inline_only_once_the_model_is_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """LocalEmbedder.warm loads the model in a worker thread; short texts are embedded
    inline only after that, so a message arriving during the warm-up never loads the model
    on the event loop. Neither the warm-up nor an inline embedding builds the unpadded
    tokenizer copy (37 MB that only ingest's large batches need)."""
    import asyncio
    import threading

    from carrier_cli.llm import embeddings

    assert embeddings.INLINE_TEXTS <= embeddings.PADDED_TEXTS  # inline never needs the copy
    embedder = LocalEmbedder()
    model = embeddings.load_wordllama()  # loaded for real once (other tests may have)
    monkeypatch.setattr(embeddings, "_inline_ready", False)
    monkeypatch.setattr(embeddings, "_unpadded", {})
    loading, release = threading.Event(), threading.Event()

    def slow_load() -> object:
        loading.set()
        release.wait(10)
        return model

    monkeypatch.setattr(embeddings, "load_wordllama", slow_load)
    assert not embedder.embeds_inline(["hello"])
    warming = asyncio.create_task(embedder.warm())
    assert await asyncio.to_thread(loading.wait, 10)
    assert not embedder.embeds_inline(["hello"]), "the model is still loading"
    release.set()
    await asyncio.wait_for(warming, 10)
    assert embedder.embeds_inline(["hello"])
    await embedder.embed_array(["hello"])
    assert embeddings._unpadded == {}, "no tokenizer copy for the warm-up or a message"


def test_a_few_texts_need_no_unpadded_tokenizer_copy_and_get_the_same_vectors() -> None:
    """A chat message is tokenized by the model's own tokenizer with its padding cut off:
    copying the tokenizer without padding cost 250 ms of CPU before a chat's first reply.
    Same ids, so the same vectors bit for bit as through the copy and wordllama's embed."""
    from carrier_cli.llm import embeddings

    embeddings.load_wordllama()
    model = wordllamas_own()
    embeddings._unpadded.clear()
    texts = _varied_texts()
    few = [texts[3], "x" * 3000, "🙂" * 50, "  two  spaces  ", texts[700], "", "."]
    assert len(few) <= embeddings.PADDED_TEXTS
    small = LocalEmbedder().embed_sync(few)
    one = LocalEmbedder().embed_sync(["hello there"])
    assert embeddings._unpadded == {}  # no copy made
    theirs = np.asarray(model.embed(few, norm=False), dtype=np.float32)
    assert np.array_equal(small.view(np.uint32), theirs.view(np.uint32))
    # Through the unpadded copy (a large batch), the same texts give the same bits.
    batch = [*few, "hello there", *texts[: embeddings.PADDED_TEXTS]]
    large = LocalEmbedder().embed_sync(batch)
    assert embeddings._unpadded != {}
    assert np.array_equal(large[: len(few)].view(np.uint32), small.view(np.uint32))
    assert np.array_equal(large[len(few)].view(np.uint32), one[0].view(np.uint32))


def test_prewarm_loads_the_model_on_a_thread_once_and_leaves_failures_to_the_embedding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    from carrier_cli.llm import embeddings

    monkeypatch.setattr(embeddings, "_model", None)
    monkeypatch.setattr(embeddings, "_inline_ready", False)
    where: list[str] = []

    def load() -> object:
        where.append(threading.current_thread().name)
        embeddings._model = object()  # what the real load leaves behind
        return embeddings._model

    monkeypatch.setattr(embeddings, "load_wordllama", load)
    thread = LocalEmbedder().prewarm()
    assert thread is not None and thread.daemon
    thread.join(10)
    assert where == ["carrier-embedder-load"]
    assert LocalEmbedder().prewarm() is None  # loaded: nothing to do

    monkeypatch.setattr(embeddings, "_model", None)

    def broken() -> object:
        raise RuntimeError("no weights")

    monkeypatch.setattr(embeddings, "load_wordllama", broken)
    failed: list[object] = []
    monkeypatch.setattr(threading, "excepthook", failed.append)
    thread = LocalEmbedder().prewarm()
    assert thread is not None
    thread.join(10)
    assert failed == []  # nothing printed from the thread; the embedding will raise it
