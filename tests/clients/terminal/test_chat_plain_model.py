"""`printf 'hi\\n' | carrier chat` against a model that ignores the XML format and answers in
plain text (as small local models through Ollama often do): the answer is printed as it is,
and the model is asked once per message, not three times."""

from __future__ import annotations

import pytest

from tests.clients.terminal.conftest import run_chat_cli
from tests.support.model_server import ModelServerProcess

pytestmark = [pytest.mark.service, pytest.mark.slow]


@pytest.mark.parametrize("flags", [[], ["--no-stream"]], ids=["stream", "no-stream"])
def test_plain_text_model_is_asked_once_and_its_answer_printed(
    chat_server: ModelServerProcess, openai_env: dict[str, str], flags: list[str]
) -> None:
    chat_server.configure(plain=True, default_text="Hello there.")
    result = run_chat_cli(flags, "hi\n", openai_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello there.\n"
    assert "Traceback" not in result.stderr
    calls = chat_server.requests("/v1/chat/completions")
    assert len(calls) == 1, [c.body.get("messages") for c in calls]
    assert calls[0].status == 200 and "Generate dialog" in calls[0].prompt_text
