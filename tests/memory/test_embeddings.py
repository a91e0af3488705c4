"""Embedder factory and the store with a remote embedder: the real openai SDK against the
fake OpenAI-compatible server (tests/support/model_server.py) on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from carrier_cli.config import Settings
from carrier_cli.errors import CarrierError, ConfigError, InputError
from carrier_cli.llm.embeddings import LOCAL_MODEL_ID, LocalEmbedder, create_embedder
from carrier_cli.memory.store import MemoryStore
from carrier_cli.memory.types import Memory, MemoryKind
from tests.support.model_server import FakeModelServer


def test_local_embedder_is_the_default_and_offline() -> None:
    embedder = create_embedder(Settings())
    assert isinstance(embedder, LocalEmbedder)
    assert embedder.model_id == LOCAL_MODEL_ID and embedder.dimension == 256
    assert isinstance(create_embedder(Settings(), model="local"), LocalEmbedder)
    with pytest.raises(ConfigError, match="text-embedding-3-small"):
        create_embedder(Settings(), model="text-embedding-3-small")


async def test_local_embedder_batches_in_a_thread() -> None:
    vectors = await LocalEmbedder().embed(["a cat", "a dog", "quarterly budget"])
    assert len(vectors) == 3 and all(len(v) == 256 for v in vectors)
    unit = np.asarray(vectors) / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert unit[0] @ unit[1] > unit[0] @ unit[2]


def test_factory_builds_remote_embedders_from_settings() -> None:
    openai = create_embedder(
        Settings(
            embedding_provider="openai",
            openai_api_key="sk-test-1234567",
            openai_base_url="http://127.0.0.1:9/v1",
            embedding_dimensions=512,
        )
    )
    assert openai.model_id == "openai:text-embedding-3-small:512" and openai.dimension == 512
    ollama = create_embedder(Settings(embedding_provider="ollama"))
    assert ollama.model_id.startswith("ollama:nomic-embed-text")
    by_character = create_embedder(
        Settings(openai_api_key="sk-test-1234567"), model="openai:text-embedding-3-large"
    )
    assert by_character.model_id == "openai:text-embedding-3-large:3072"


def remote_settings(model_server: FakeModelServer, database: Path, **extra: Any) -> Settings:
    """OpenAI embeddings from the fake server, memory in a SQLite file."""
    return Settings(
        embedding_provider="openai",
        openai_api_key="sk-test-1234567",
        openai_base_url=model_server.openai_base_url,
        database_url=f"sqlite:///{database}",
        **extra,
    )


async def test_store_with_openai_embeddings(model_server: FakeModelServer, tmp_path: Path) -> None:
    settings = remote_settings(model_server, tmp_path / "m.db", embedding_dimensions=64)
    url = settings.database_url
    store = await MemoryStore.from_settings(settings)
    try:
        agent = await store.ensure_agent("remote")
        texts = [f"note number {i}" for i in range(700)]
        await store.add_many(
            [Memory(agent_id=agent, kind=MemoryKind.FACT, content={"text": t}) for t in texts]
        )
        calls = model_server.requests("/v1/embeddings")
        assert len(calls) >= 2  # batched, not one request per memory (nor one giant one)
        assert sum(len(c.body["input"]) for c in calls) == 700
        assert all(c.body["dimensions"] == 64 for c in calls)
        before = len(calls)
        await store.add(Memory(agent_id=agent, content={"text": "note number 5"}))
        assert len(model_server.requests("/v1/embeddings")) == before  # content-hash cache
        hits = await store.search("note number 42", agent_id=agent, k=1)
        assert hits[0].memory.text == "note number 42"
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert (await store.stats())["embedding_model"] == "openai:text-embedding-3-small:64"
    finally:
        await store.close()
    local = await MemoryStore.open(url)
    try:
        with pytest.raises(InputError) as caught:
            await local.search("note")
        assert "openai:text-embedding-3-small:64" in str(caught.value)
        assert LOCAL_MODEL_ID in str(caught.value) and "reembed" in str(caught.value)
    finally:
        await local.close()


async def test_embedding_service_errors_are_runtime_failures(
    model_server: FakeModelServer, tmp_path: Path
) -> None:
    settings = remote_settings(model_server, tmp_path / "e.db", max_retries=0)
    store = await MemoryStore.from_settings(settings)
    try:
        model_server.push(status=400, error_message="bad input", endpoint="embeddings")
        agent = await store.ensure_agent("remote")
        with pytest.raises(CarrierError) as caught:
            await store.add(Memory(agent_id=agent, content={"text": "hello"}))
        assert "bad input" in str(caught.value) and "sk-test-1234567" not in str(caught.value)
        assert await store.count() == 0  # nothing half-stored
    finally:
        await store.close()


async def test_closing_a_store_closes_the_embedder_it_made_and_no_other(
    model_server: FakeModelServer, tmp_path: Path
) -> None:
    """`from_settings` makes the embedder, so `close()` closes it: its HTTP session and
    connections go with the store (they used to stay open until the process ended, one
    set per store a library caller opened). One passed in stays the caller's."""
    import gc
    import warnings

    settings = remote_settings(model_server, tmp_path / "m.db", embedding_dimensions=64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        store = await MemoryStore.from_settings(settings)
        await store.add(Memory(agent_id=await store.ensure_agent("a"), content={"text": "hi"}))
        await store.close()
        del store
        gc.collect()
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not [m for m in unclosed if "Unclosed" in m], unclosed

    mine = create_embedder(settings)
    store = await MemoryStore.from_settings(settings, embedder=mine)
    await store.add(Memory(agent_id=await store.ensure_agent("a"), content={"text": "hi"}))
    await store.close()
    assert await mine.embed(["still open"])  # the caller's to close
    await mine.aclose()  # type: ignore[attr-defined]
