"""The fake model server as a subprocess, controlled over its admin endpoints, as the CLI
tests of other areas use it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carrier_cli.llm.base import ChatMessage, GenerationParams
from carrier_cli.llm.errors import ProviderUnavailable
from carrier_cli.llm.openai_chat import OpenAIChatModel
from carrier_cli.llm.retry import RetryPolicy
from tests.support.model_server import ModelServerProcess, start_server_process

pytestmark = pytest.mark.service


async def test_scripted_replies_and_recorded_requests(
    model_server_process: ModelServerProcess,
) -> None:
    server = model_server_process
    server.push("first scripted", {"status": 500}, {"text": "after the 500"})
    model = OpenAIChatModel(
        api_key="sk-proc-test",
        base_url=server.openai_base_url,
        timeout=5.0,
        retry=RetryPolicy(base_delay=0.01),
    )
    params = GenerationParams(model="gpt-4o-mini")
    try:
        assert await model.complete([ChatMessage("user", "one")], params) == "first scripted"
        assert await model.complete([ChatMessage("user", "two")], params) == "after the 500"
    finally:
        await model.aclose()
    recorded = server.requests("/v1/chat/completions")
    assert [r.status for r in recorded] == [200, 500, 200]
    assert recorded[0].messages == [{"role": "user", "content": "one"}]
    assert "authorization" not in recorded[0].headers
    server.reset()
    assert server.requests() == []


async def test_startup_script_and_expected_key(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"text": "from the script file"}]))
    server = start_server_process(expect_key="sk-right", script=script)
    try:
        good = OpenAIChatModel(api_key="sk-right", base_url=server.openai_base_url)
        bad = OpenAIChatModel(api_key="sk-wrong", base_url=server.openai_base_url)
        params = GenerationParams(model="gpt-4o-mini")
        try:
            assert await good.complete([ChatMessage("user", "x")], params) == (
                "from the script file"
            )
            with pytest.raises(Exception, match="rejected"):
                await bad.complete([ChatMessage("user", "x")], params)
        finally:
            await good.aclose()
            await bad.aclose()
        server.configure(expect_key=None, default_text="configured reply")
        other = OpenAIChatModel(api_key="anything", base_url=server.openai_base_url)
        try:
            reply = await other.complete([ChatMessage("user", "x")], params)
        finally:
            await other.aclose()
        assert "<text>configured reply</text>" in reply
    finally:
        server.process.terminate()
        server.process.wait(timeout=5)
    # Once the server is gone, calls fail as "unavailable", naming the URL.
    gone = OpenAIChatModel(
        api_key="k", base_url=server.openai_base_url, retry=RetryPolicy(max_retries=0)
    )
    try:
        with pytest.raises(ProviderUnavailable, match=server.url):
            await gone.complete([ChatMessage("user", "x")], GenerationParams(model="m"))
    finally:
        await gone.aclose()


async def test_latency_applies_to_every_answer(model_server_process: ModelServerProcess) -> None:
    import time

    model_server_process.configure(latency=0.3)
    model = OpenAIChatModel(api_key="k", base_url=model_server_process.openai_base_url)
    try:
        start = time.monotonic()
        await model.complete([ChatMessage("user", "x")], GenerationParams(model="m"))
        await model.complete([ChatMessage("user", "y")], GenerationParams(model="m"))
        elapsed = time.monotonic() - start
    finally:
        await model.aclose()
    assert elapsed >= 0.6
