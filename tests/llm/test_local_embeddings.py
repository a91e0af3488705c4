"""The offline embedder (wordllama's bundled weights): bounded input."""

from __future__ import annotations

import numpy as np

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
