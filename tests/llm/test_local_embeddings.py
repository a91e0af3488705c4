"""The offline embedder (wordllama's bundled weights): bounded input."""

from __future__ import annotations

import numpy as np
import pytest

from carrier_cli.llm.embeddings import MAX_EMBED_CHARS, LocalEmbedder


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

    model = load_wordllama()
    assert _pools_like_wordllama(model)  # else the fast path is never taken here
    texts = _varied_texts()
    ours = LocalEmbedder().embed_sync(texts)
    theirs = np.asarray(model.embed(texts, norm=False), dtype=np.float32)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    assert np.array_equal(ours.view(np.uint32), theirs.view(np.uint32))
    # Batches of one length and of one text each, and a text with no tokens at all.
    for batch in (texts[:1], ["same length"] * 70, ["", "after an empty text"]):
        ours, theirs = LocalEmbedder().embed_sync(batch), model.embed(batch, norm=False)
        assert np.array_equal(ours, theirs)


async def test_warm_up_makes_short_texts_inline_only_once_everything_is_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """LocalEmbedder.warm loads the model and the tokenizer copy in a worker thread; short
    texts are embedded inline only after both, so a message arriving during the warm-up
    never builds the tokenizer copy on the event loop."""
    import asyncio
    import threading

    from carrier_cli.llm import embeddings

    embedder = LocalEmbedder()
    embeddings.load_wordllama()  # the model itself may be loaded already (other tests)
    monkeypatch.setattr(embeddings, "_inline_ready", False)
    monkeypatch.setattr(embeddings, "_unpadded", {})
    building, release = threading.Event(), threading.Event()
    copy = embeddings._unpadded_tokenizer

    def slow_copy(model: object) -> object:
        building.set()
        release.wait(10)
        return copy(model)

    monkeypatch.setattr(embeddings, "_unpadded_tokenizer", slow_copy)
    assert not embedder.embeds_inline(["hello"])
    warming = asyncio.create_task(embedder.warm())
    assert await asyncio.to_thread(building.wait, 10)
    assert not embedder.embeds_inline(["hello"]), "the model is loaded, the copy is not"
    release.set()
    await asyncio.wait_for(warming, 10)
    assert embedder.embeds_inline(["hello"])
    assert embeddings._unpadded, "the tokenizer copy is made"
