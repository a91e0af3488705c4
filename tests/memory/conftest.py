"""Fixtures for memory tests: every storage test runs on SQLite and on real PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pytest


class HashEmbedder:
    """A second, deliberately different embedding model: deterministic vectors from
    hashing words, so tests can switch models and see the store refuse to mix them."""

    def __init__(self, model_id: str = "test:hash-64", dimension: int = 64) -> None:
        self.model_id = model_id
        self.dimension = dimension
        self.calls: list[list[str]] = []

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        out = []
        for value in texts:
            vector = np.zeros(self.dimension, dtype=np.float32)
            for word in value.lower().split():
                digest = hashlib.sha256(word.encode()).digest()
                vector[digest[0] % self.dimension] += 1.0
            out.append(vector.tolist())
        return out


@pytest.fixture
def hash_embedder() -> HashEmbedder:
    return HashEmbedder()
