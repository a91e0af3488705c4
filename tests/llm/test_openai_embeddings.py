"""OpenAIEmbedder through the real `openai` SDK against the fake model server."""

from __future__ import annotations

import math

import pytest

from carrier_cli.llm.base import Embedder
from carrier_cli.llm.errors import MissingApiKey, ProviderUnavailable
from carrier_cli.llm.openai_embeddings import OpenAIEmbedder
from carrier_cli.llm.retry import RetryPolicy
from tests.support.model_server import FakeModelServer, Reply, fake_embedding

FAST = RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.05)


async def test_batches_of_256_keep_order(model_server: FakeModelServer) -> None:
    embedder = OpenAIEmbedder(
        api_key="sk-test", base_url=model_server.openai_base_url, dimensions=8, retry=FAST
    )
    texts = [f"text number {i}" for i in range(600)]
    try:
        vectors = await embedder.embed(texts)
    finally:
        await embedder.aclose()
    requests = model_server.requests("/v1/embeddings")
    assert [len(r.body["input"]) for r in requests] == [256, 256, 88]
    assert all(r.body["dimensions"] == 8 for r in requests)
    assert len(vectors) == 600
    assert vectors[0] == pytest.approx(fake_embedding("text number 0", 8), abs=1e-6)
    assert vectors[599] == pytest.approx(fake_embedding("text number 599", 8), abs=1e-6)
    assert math.isclose(sum(v * v for v in vectors[42]), 1.0, rel_tol=1e-5)


async def test_model_id_and_dimension(model_server: FakeModelServer) -> None:
    known = OpenAIEmbedder(api_key="sk-test", base_url=model_server.openai_base_url)
    assert isinstance(known, Embedder)
    assert known.model_id == "openai:text-embedding-3-small:1536"
    assert known.dimension == 1536
    await known.aclose()

    model_server.dimension = 48
    local = OpenAIEmbedder(
        model="my-embedder", api_key="ollama", base_url=model_server.openai_base_url
    )
    assert local.model_id == "ollama:my-embedder"  # stable before the first call
    assert local.dimension == 0
    try:
        [vector] = await local.embed(["hello"])
    finally:
        await local.aclose()
    assert len(vector) == 48 and local.dimension == 48
    assert local.model_id == "ollama:my-embedder"


async def test_empty_text_is_sent_as_a_space(model_server: FakeModelServer) -> None:
    embedder = OpenAIEmbedder(
        api_key="sk-test", base_url=model_server.openai_base_url, dimensions=4
    )
    try:
        vectors = await embedder.embed(["", "x"])
    finally:
        await embedder.aclose()
    assert len(vectors) == 2
    assert model_server.requests()[0].body["input"] == [" ", "x"]


async def test_rate_limit_is_retried_and_bounded(model_server: FakeModelServer) -> None:
    model_server.push(
        Reply(status=429, headers={"Retry-After": "0.1"}, endpoint="embeddings"),
        Reply(status=500, endpoint="embeddings"),
    )
    embedder = OpenAIEmbedder(
        api_key="sk-test", base_url=model_server.openai_base_url, dimensions=4, retry=FAST
    )
    try:
        assert len(await embedder.embed(["a", "b"])) == 2
        model_server.push(*[Reply(status=500, endpoint="embeddings") for _ in range(5)])
        with pytest.raises(ProviderUnavailable):
            await embedder.embed(["c"])
    finally:
        await embedder.aclose()
    assert [r.status for r in model_server.requests()] == [429, 500, 200, 500, 500, 500]


def test_missing_key_names_the_fix() -> None:
    with pytest.raises(MissingApiKey) as info:
        OpenAIEmbedder(api_key=None)
    assert "carrier keys set openai" in str(info.value)
    assert "OPENAI_API_KEY" in str(info.value)
