"""Text from a character file, the model or the model server is shown literally in
`carrier chat`: Rich markup (`[bold]`, a stray `[/]` that would raise MarkupError,
`[link=...]`) and emoji codes (`:x:`) in it are neither applied nor fatal, in piped and in
interactive mode, against the fake model server through the real openai SDK."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.clients.terminal.conftest import run_chat_cli, script
from tests.clients.terminal.pty_helpers import finish, screen_log, spawn
from tests.support.model_server import ModelServerProcess

pytestmark = [pytest.mark.service, pytest.mark.slow]

EVIL = "[/] [bold]b[/] :x: [link=https://evil]l[/link]"  # a stray [/] first
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def _flat(text: str) -> str:
    """Terminal output without colour codes, with line wrapping undone."""
    return " ".join(ANSI.sub("", text).split())


def _evil_character(tmp_path: Path) -> Path:
    path = tmp_path / "evil.yaml"
    path.write_text(f'name: "Eve {EVIL}"\nbio: ["A test character."]\n', encoding="utf-8")
    return path


def test_piped_reply_and_server_error_are_printed_literally(
    chat_server: ModelServerProcess, openai_env: dict[str, str]
) -> None:
    script(chat_server, f"reply {EVIL}")
    # A 400 quotes the server's message; it is a bad setting, so the chat stops with exit 2.
    chat_server.push({"status": 400, "error_message": f"bad request {EVIL}"})
    result = run_chat_cli(["--room", "evil"], "first\nsecond\n", openai_env)
    assert result.returncode == 2, result.stderr
    assert f"bad request {EVIL}" in _flat(result.stderr), result.stderr
    assert result.stdout == f"reply {EVIL}\n"
    assert "❌" not in result.stdout + result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("stream", [True, False])
def test_interactive_name_reply_and_server_error_are_shown_literally(
    chat_server: ModelServerProcess, openai_env: dict[str, str], tmp_path: Path, stream: bool
) -> None:
    character = _evil_character(tmp_path)
    args = ["--character", str(character), "--room", "evil"] + ([] if stream else ["--no-stream"])
    child = spawn([sys.executable, "-m", "carrier_cli", "chat", *args], openai_env)
    child.expect("you> ")
    script(chat_server, f"reply {EVIL}")
    child.sendline("hello")
    child.expect("you> ")
    chat_server.push({"status": 400, "error_message": f"bad request {EVIL}"})
    child.sendline("again")
    child.expect("you> ")
    child.sendline("/exit")
    assert finish(child) == 0
    shown = _flat(screen_log(child))
    assert f"Eve {EVIL}" in shown  # the banner and the speaker line
    assert f"reply {EVIL}" in shown
    assert f"bad request {EVIL}" in shown
    assert "❌" not in shown and "Traceback" not in shown


def test_interactive_chat_is_literal_on_any_console() -> None:
    """`InteractiveChat` is also library API: given a plain Rich console (markup and emoji
    codes on, unlike Carrier's own), names, replies and errors still print as written."""
    import asyncio
    import io

    from rich.console import Console

    from carrier_cli.clients.terminal.interactive import InteractiveChat
    from carrier_cli.clients.terminal.session import ChatOptions, ChatSession
    from carrier_cli.errors import RuntimeFailure
    from tests.clients.terminal.standin import StandInRuntime

    runtime = StandInRuntime()
    runtime.character.name = f"Eve {EVIL}"
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, color_system=None)
    with asyncio.Runner() as runner:
        session = ChatSession(runtime=runtime, room_key=f"room {EVIL}", resumed=False, room=None)
        chat = InteractiveChat(runner, session, ChatOptions(stream=False), console)
        chat._banner()
        chat.turn(f"hello {EVIL}")
        with chat._failures_reported():
            raise RuntimeFailure(f"The server said {EVIL}")
    shown = _flat(buffer.getvalue())
    assert f"Eve {EVIL} · model" in shown and f"room {EVIL} (new)" in shown
    assert f"You said: hello {EVIL}" in shown
    assert f"error: The server said {EVIL}" in shown
    assert "❌" not in shown
