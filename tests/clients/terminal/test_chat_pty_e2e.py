"""The interactive `carrier chat` on a real pseudo-terminal (pexpect), against the fake
model server: streaming, /reset, --continue, Ctrl-C, a 429 that recovers, a missing key."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pexpect
import pytest

from tests.clients.terminal.conftest import OPENAI_KEY, script, xml_reply
from tests.clients.terminal.pty_helpers import ROOT, finish, screen_log, spawn
from tests.support.model_server import ModelServerProcess

pytestmark = [pytest.mark.service, pytest.mark.slow]


def _chat(env: dict[str, str], *args: str) -> pexpect.spawn:
    child = spawn([sys.executable, "-m", "carrier_cli", "chat", *args], env)
    child.expect("you> ")
    return child


def _leave(child: pexpect.spawn) -> int:
    child.sendline("/exit")
    return finish(child)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_reply_streams_with_name_and_model_shown(
    chat_server: ModelServerProcess,
    openai_env: dict[str, str],
    anthropic_env: dict[str, str],
    provider: str,
) -> None:
    words = [f"word{i} " for i in range(12)]
    text = "".join(words).strip()
    # The model streams the XML answer; the text part arrives word by word, slowly.
    chunks = [
        "<response><thought>ok</thought><actions>REPLY</actions><text>",
        *words,
        "</text></response>",
    ]
    chat_server.push({"text": xml_reply(text), "chunks": chunks, "chunk_delay": 0.15})
    env = openai_env if provider == "openai" else anthropic_env
    character = str(ROOT / "characters" / "carrier.yaml")
    args = ["chat", "--character", character, "--room", "s", "--provider", provider]
    child = spawn([sys.executable, "-m", "carrier_cli", *args], env)
    child.expect("Carrier")  # the built-in character's name, then the model, once
    child.expect(rf"model \S+ \({provider}\)")
    child.expect(r"room s \(new\)")
    child.expect("you> ")
    child.sendline("tell me words")
    child.expect("thinking")
    child.expect("word0")
    first_seen = time.monotonic()
    child.expect("word11")
    # The words arrive over ~1.6 s and are shown as they come; printed at the end they
    # would appear together (margin left for a loaded machine delaying the first render).
    assert time.monotonic() - first_seen > 0.5
    child.expect("you> ")
    assert _leave(child) == 0
    path = "/v1/chat/completions" if provider == "openai" else "/v1/messages"
    (call,) = [r for r in chat_server.requests(path) if "tell me words" in r.prompt_text]
    assert call.body["stream"] is True


def test_reset_and_continue_remember_an_earlier_session(
    chat_server: ModelServerProcess, openai_env: dict[str, str]
) -> None:
    script(chat_server, "Hi Ada.", "Lisbon, nice.", "You live in Lisbon.")
    child = _chat(openai_env)
    child.sendline("My name is Ada")
    child.expect("Hi Ada.")
    child.expect("you> ")
    child.sendline("/reset")
    child.expect("New room session-")
    child.expect("you> ")
    child.sendline("I live in Lisbon")
    child.expect("Lisbon, nice.")
    child.expect("you> ")
    assert _leave(child) == 0

    # --continue reopens the newest room: the one after /reset, and shows its last messages.
    child = spawn([sys.executable, "-m", "carrier_cli", "chat", "--continue"], openai_env)
    child.expect(r"\(resumed\)")
    child.expect("Earlier in this room:")
    child.expect("I live in Lisbon")
    child.expect("Carrier: Lisbon, nice.")
    child.expect("you> ")
    child.sendline("Where do I live?")
    child.expect("You live in Lisbon.")
    child.expect("you> ")
    assert _leave(child) == 0
    call = next(
        r
        for r in chat_server.requests("/v1/chat/completions")
        if "Where do I live?" in r.prompt_text
    )
    assert "Lisbon, nice." in call.prompt_text
    assert "My name is Ada" not in call.prompt_text and "Hi Ada." not in call.prompt_text


def test_ctrl_c_cancels_the_reply_and_the_session_goes_on(
    chat_server: ModelServerProcess, openai_env: dict[str, str]
) -> None:
    words = [f"slow{i} " for i in range(40)]
    chunks = [
        "<response><thought>ok</thought><actions>REPLY</actions><text>",
        *words,
        "</text></response>",
    ]
    chat_server.push({"text": xml_reply("".join(words)), "chunks": chunks, "chunk_delay": 0.2})
    script(chat_server, "Still here.")
    child = _chat(openai_env, "--room", "cancel")
    child.sendline("talk slowly")
    child.expect("slow1")
    child.sendintr()
    child.expect(r"\(cancelled\)")
    child.expect("you> ")
    child.sendline("are you still there?")
    child.expect("Still here.")
    child.expect("you> ")
    assert _leave(child) == 0
    assert "slow39" not in screen_log(child)


def test_429_recovers_on_the_terminal(
    chat_server: ModelServerProcess, openai_env: dict[str, str]
) -> None:
    chat_server.push(
        {
            "status": 429,
            "headers": {"Retry-After": "0.5"},
            "error_message": "Rate limit reached",
            "error_type": "requests",
        }
    )
    script(chat_server, "Hello after waiting.")
    child = _chat(openai_env, "--room", "busy")
    child.sendline("hello")
    child.expect("retry 1/")  # the spinner says why it is waiting
    child.expect("Hello after waiting.")
    child.expect("you> ")
    assert _leave(child) == 0
    statuses = [r.status for r in chat_server.requests("/v1/chat/completions")]
    assert statuses[:2] == [429, 200]


def test_slash_commands_on_the_terminal(
    chat_server: ModelServerProcess, openai_env: dict[str, str]
) -> None:
    # A fact stored beforehand (default character, local embeddings) that /facts must list.
    added = subprocess.run(
        [sys.executable, "-m", "carrier_cli", "memory", "add", "Ada prefers green tea."],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **openai_env},
    )
    assert added.returncode == 0, added.stderr
    script(chat_server, "Green tea is good.")
    child = _chat(openai_env, "--room", "cmds")
    child.sendline("/debug")
    child.expect("No turn yet")
    child.sendline("I like green tea")
    child.expect("Green tea is good.")
    child.expect("you> ")
    child.sendline("/debug")
    child.expect(r"timings \(ms\)")
    child.expect(r"\[prompt\]")
    child.expect("I like green tea")  # the rendered prompt
    child.expect(r"\[output\]")
    child.expect("<text>Green tea")  # the raw model output
    child.expect("you> ")
    child.sendline("/memory green tea")
    child.expect("Memories matching 'green tea':")
    child.expect(r"\d\.\d\d  \[fact\] Ada prefers green tea\.")
    child.expect("you> ")
    child.sendline("/model other-model")
    child.expect("Model is now other-model")
    child.expect("you> ")
    child.sendline("/character")
    child.expect("room cmds")
    child.expect("you> ")
    child.sendline("/facts")
    child.expect("Facts Carrier knows:")
    child.expect("- Ada prefers green tea.")
    child.expect("you> ")
    assert _leave(child) == 0
    models = [r.body.get("model") for r in chat_server.requests("/v1/chat/completions")]
    assert "other-model" not in models  # switching alone makes no call


def test_missing_key_offers_to_store_one(chat_server: ModelServerProcess) -> None:
    env = {"OPENAI_BASE_URL": chat_server.openai_base_url}
    script(chat_server, "The key works.")
    child = spawn([sys.executable, "-m", "carrier_cli", "chat", "--room", "k"], env)
    child.expect("three ways")
    child.expect("Ollama")
    child.expect(r"Store a key now\?")
    child.sendline("o")
    child.expect("(?i)key")
    child.sendline(OPENAI_KEY)
    child.expect("Stored the openai key")
    child.expect("you> ")
    child.sendline("hello")
    child.expect("The key works.")
    child.expect("you> ")
    assert _leave(child) == 0
    assert OPENAI_KEY not in screen_log(child)  # typed at a hidden prompt, never echoed


def test_missing_key_declined_is_exit_2(chat_server: ModelServerProcess) -> None:
    child = spawn([sys.executable, "-m", "carrier_cli", "chat"], {})
    child.expect(r"Store a key now\?")
    child.sendline("n")
    child.expect("error: ")
    assert finish(child) == 2
    assert "Traceback" not in screen_log(child)


def test_unknown_model_fails_the_turn_but_not_the_session(
    chat_server: ModelServerProcess, openai_env: dict[str, str]
) -> None:
    child = _chat(openai_env, "--room", "models")
    child.sendline("/model")
    child.expect(r"Model: (\S+) \(openai\)")
    default_model = child.match.group(1)
    child.expect("you> ")
    chat_server.configure(models=[default_model])
    child.sendline("/model no-such-model")
    child.expect("Model is now no-such-model")
    child.expect("you> ")
    child.sendline("hello")
    child.expect("error:")
    child.expect("no-such-model")
    child.expect("you> ")
    script(chat_server, "Back on the right model.")
    child.sendline(f"/model {default_model}")
    child.expect("Model is now")
    child.expect("you> ")
    child.sendline("hello again")
    child.expect("Back on the right model.")
    child.expect("you> ")
    assert _leave(child) == 0


def test_verbose_footer_and_usage_command(
    chat_server: ModelServerProcess, anthropic_env: dict[str, str]
) -> None:
    script(chat_server, "Hello there.")
    child = _chat(anthropic_env, "--provider", "anthropic", "--verbose")
    child.sendline("hi")
    child.expect("Hello there.")
    # The footer after the reply: the turn's tokens (as the server reported) and cost.
    child.expect(r"1 model call · ([\d,]+) in \(0 cached\), ([\d,]+) out · (\S+)")
    shown_in = int(child.match.group(1).replace(",", ""))
    child.expect("you> ")
    child.sendline("/usage")
    child.expect("This session: 1 model call")
    child.expect("you> ")
    assert _leave(child) == 0
    (call,) = [r for r in chat_server.requests("/v1/messages") if r.usage]
    assert call.usage is not None
    assert shown_in == call.usage["input_tokens"]
