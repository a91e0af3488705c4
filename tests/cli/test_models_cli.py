"""`carrier models show|list` end to end: the real CLI in a subprocess against the fake
model server in another subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.support.model_server import ModelServerProcess, start_server_process

pytestmark = pytest.mark.service

KEY = "sk-cli-test-abcdefghijklmnop"


@pytest.fixture(scope="module")
def shared_server() -> Iterator[ModelServerProcess]:
    server = start_server_process()
    try:
        yield server
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)
        if server.process.stdout is not None:
            server.process.stdout.close()


@pytest.fixture
def model_server_process(shared_server: ModelServerProcess) -> ModelServerProcess:
    """One server process for the module, reset to defaults for every test."""
    shared_server.reset()
    shared_server.configure(expect_key=None, models=None, default_text=None, latency=0.0)
    return shared_server


def carrier(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ)
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "carrier_cli", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
    )


def test_show_without_any_provider_explains_the_three_ways() -> None:
    result = carrier("models", "show")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    for expected in ("carrier keys set openai", "carrier keys set anthropic", "ollama serve"):
        assert expected in " ".join(result.stderr.split())


def test_show_json_never_prints_the_key() -> None:
    result = carrier("models", "show", "--json", "--provider", "anthropic", ANTHROPIC_API_KEY=KEY)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["provider"] == "anthropic" and data["chosen_by"] == "flag"
    assert data["api_key"] == "set"
    assert KEY not in result.stdout + result.stderr


def test_list_asks_the_server(model_server_process: ModelServerProcess) -> None:
    model_server_process.configure(models=["model-b", "model-a"])
    result = carrier(
        "models", "list", OPENAI_API_KEY=KEY, OPENAI_BASE_URL=model_server_process.openai_base_url
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["model-a", "model-b"]
    [request] = model_server_process.requests("/v1/models")
    assert request.method == "GET"


def test_list_with_a_rejected_key(model_server_process: ModelServerProcess) -> None:
    model_server_process.configure(expect_key="sk-some-other-key")
    result = carrier(
        "models", "list", OPENAI_API_KEY=KEY, OPENAI_BASE_URL=model_server_process.openai_base_url
    )
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert "rejected (401)" in message
    assert "carrier keys set openai" in message
    assert KEY not in result.stderr and KEY[-8:] not in result.stderr


def test_anthropic_list(model_server_process: ModelServerProcess) -> None:
    result = carrier(
        "models",
        "list",
        "--provider",
        "anthropic",
        "--json",
        ANTHROPIC_API_KEY=KEY,
        ANTHROPIC_BASE_URL=model_server_process.url,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["claude-haiku-4-5", "claude-sonnet-4-5"]


def test_check_probes_large_and_small(model_server_process: ModelServerProcess) -> None:
    result = carrier(
        "models",
        "check",
        "--json",
        "--model",
        "gpt-4o",
        OPENAI_API_KEY=KEY,
        OPENAI_BASE_URL=model_server_process.openai_base_url,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [row["model"] for row in data["models"]] == ["gpt-4o", "gpt-4o-mini"]
    sent = [r.body["model"] for r in model_server_process.requests("/v1/chat/completions")]
    assert sent == ["gpt-4o", "gpt-4o-mini"]


def test_check_unknown_model(model_server_process: ModelServerProcess) -> None:
    model_server_process.configure(models=["gpt-4o-mini"])
    result = carrier(
        "models",
        "check",
        "--model",
        "gpt-nope",
        OPENAI_API_KEY=KEY,
        OPENAI_BASE_URL=model_server_process.openai_base_url,
    )
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert "'gpt-nope'" in message and "carrier models list" in message
