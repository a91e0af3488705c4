"""A fake model server subprocess shared by this package's tests (reset before each test),
and the environment that points the real `carrier chat` at it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.model_server import ModelServerProcess, start_server_process

OPENAI_KEY = "sk-test-terminal-0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-test-terminal-0123456789abcdef"


def xml_reply(text: str) -> str:
    """A reply in the runtime's XML answer format, as a real model would write it."""
    return (
        f"<response><thought>Answering.</thought><actions>REPLY</actions>"
        f"<text>{text}</text></response>"
    )


@pytest.fixture(scope="module")
def _shared_model_server() -> Iterator[ModelServerProcess]:
    server = start_server_process()
    try:
        yield server
    finally:
        server.process.terminate()
        try:
            server.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=5)


@pytest.fixture
def chat_server(_shared_model_server: ModelServerProcess) -> ModelServerProcess:
    _shared_model_server.reset()
    _shared_model_server.configure(expect_key=None, default_text=None, models=None, plain=False)
    return _shared_model_server


@pytest.fixture
def openai_env(chat_server: ModelServerProcess) -> dict[str, str]:
    """Environment for `carrier chat` against the fake server as an OpenAI endpoint."""
    return {
        "OPENAI_BASE_URL": chat_server.openai_base_url,
        "OPENAI_API_KEY": OPENAI_KEY,
        "CARRIER_MAX_RETRIES": "2",
    }


@pytest.fixture
def anthropic_env(chat_server: ModelServerProcess) -> dict[str, str]:
    return {
        "ANTHROPIC_BASE_URL": chat_server.anthropic_base_url,
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        "CARRIER_MAX_RETRIES": "2",
    }


def run_chat_cli(
    args: list[str], stdin: str, env: dict[str, str], timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """`printf STDIN | carrier chat ARGS` with the test's CARRIER_HOME and cwd."""
    full_env = dict(os.environ)
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "carrier_cli", "chat", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        cwd=Path.cwd(),
        timeout=timeout,
    )


def script(server: ModelServerProcess, *texts: str) -> None:
    """Queue the model's next replies, one per reply-generating call."""
    server.push(*[xml_reply(text) for text in texts])
