"""The chat front end against a stand-in runtime: room choice, slash commands, piped output,
per-turn errors. The real runtime and model server are covered by the e2e tests."""

from __future__ import annotations

import io
import json

import pytest

from carrier_cli.clients.terminal import ChatOptions, run_chat
from carrier_cli.clients.terminal.commands import format_turn_log
from carrier_cli.errors import InputError
from carrier_cli.runtime.types import IncomingMessage
from tests.clients.terminal.standin import StandInRuntime


def _chat(runtime: StandInRuntime, text: str, **options: object) -> tuple[int, str, str]:
    async def factory(_: ChatOptions) -> StandInRuntime:
        return runtime

    stdout, stderr = io.StringIO(), io.StringIO()
    code = run_chat(
        ChatOptions(**options),
        runtime_factory=factory,  # type: ignore[arg-type]
        stdin=io.StringIO(text),
        stdout=stdout,
        stderr=stderr,
        interactive=False,
    )
    return code, stdout.getvalue(), stderr.getvalue()


def test_piped_one_reply_per_line_on_stdout_and_runtime_closed() -> None:
    runtime = StandInRuntime()
    code, out, err = _chat(runtime, "hi\n\nwhat did I say?\n")
    assert code == 0
    assert out.splitlines() == ["You said: hi", "You said: what did I say?"]
    assert "room session-" in err and "(new)" in err
    assert runtime.closed
    first, second = runtime.received
    assert first.room_key == second.room_key and first.room_key.startswith("session-")
    assert first.source == "terminal" and first.is_direct and first.sender_name


def test_named_room_is_used_and_reported_as_resumed_when_it_exists() -> None:
    runtime = StandInRuntime()
    _chat(runtime, "one\n", room="r1")
    code, out, err = _chat(runtime, "two\n", room="r1")
    # Nothing but the reply when the room is named.
    assert code == 0 and err == "" and out == "You said: two\n"
    assert [m.room_key for m in runtime.received] == ["r1", "r1"]


def test_continue_resumes_the_newest_terminal_room() -> None:
    runtime = StandInRuntime()
    _chat(runtime, "first session\n")
    _chat(runtime, "second session\n")
    _, _, err = _chat(runtime, "again\n", resume=True)
    rooms = [m.room_key for m in runtime.received]
    assert rooms[2] == rooms[1] != rooms[0]
    assert "(resumed)" in err


def test_continue_without_any_room_starts_a_new_one() -> None:
    runtime = StandInRuntime()
    code, _, err = _chat(runtime, "hello\n", resume=True)
    assert code == 0 and "(new)" in err


def test_room_and_continue_together_is_exit_2() -> None:
    with pytest.raises(InputError, match="--room and --continue"):
        _chat(StandInRuntime(), "x\n", room="a", resume=True)


def test_reset_moves_to_a_new_room() -> None:
    runtime = StandInRuntime()
    code, out, _ = _chat(runtime, "before\n/reset\nafter\n")
    assert code == 0
    assert "New room session-" in out
    assert runtime.received[0].room_key != runtime.received[1].room_key


def test_exit_command_stops_reading() -> None:
    runtime = StandInRuntime()
    _, out, _ = _chat(runtime, "one\n/exit\ntwo\n")
    assert [m.text for m in runtime.received] == ["one"]
    assert out == "You said: one\n"


def test_slash_commands_in_piped_mode() -> None:
    runtime = StandInRuntime()
    text = "I like engines\n/memory engines\n/facts\n/character\n/model tiny\n/debug\n/help\n"
    code, out, _ = _chat(runtime, text)
    assert code == 0
    assert "0.90  [message] I like engines" in out
    assert "Ada has not stored any facts yet." in out
    assert "Ada  (model big-model (openai)" in out and "Counts things." in out
    assert "Model is now tiny (openai)." in out and runtime.model_config.large == "tiny"
    assert "PROMPT[I like engines]" in out and "model: 0.250s" in out
    assert "/reset" in out and '"""' in out


def test_unknown_command_goes_to_stderr_with_a_suggestion_and_exit_1() -> None:
    code, out, err = _chat(StandInRuntime(), "/fatcs\n")
    assert code == 1 and out == ""
    assert "Unknown command /fatcs. Did you mean /facts?" in err


def test_double_slash_sends_the_text_to_the_agent() -> None:
    runtime = StandInRuntime()
    _, out, _ = _chat(runtime, "//etc is a folder\n")
    assert runtime.received[0].text == "/etc is a folder"
    assert out == "You said: /etc is a folder\n"


def test_failed_turn_is_reported_and_the_next_line_still_answered() -> None:
    code, out, err = _chat(StandInRuntime(), "please fail\nhello\n")
    assert code == 1
    assert out.splitlines() == ["You said: hello"]
    assert "error: The model server kept answering 503." in err


def test_json_lines() -> None:
    _, out, _ = _chat(StandInRuntime(), "hi\n/facts\n", json_lines=True, room="j")
    reply, command = (json.loads(line) for line in out.splitlines())
    assert reply["text"] == "You said: hi" and reply["room"] == "j"
    assert reply["decision"] == "DIRECT" and reply["character"] == "Ada"
    assert command["command"] == "facts" and command["error"] is False


def test_no_stream_prints_the_whole_reply() -> None:
    _, out, _ = _chat(StandInRuntime(), "hi\n", stream=False)
    assert out == "You said: hi\n"


def test_debug_before_any_turn() -> None:
    _, out, _ = _chat(StandInRuntime(), "/debug\n")
    assert "No turn yet" in out


def test_format_turn_log_renders_chat_messages_and_timings() -> None:
    text = format_turn_log(
        {
            "messages": [
                {"role": "system", "content": "You are Ada."},
                {"role": "user", "content": "hi"},
            ],
            "timings": {"compose": 0.01, "model": 1.5},
        }
    )
    assert "[system]\nYou are Ada." in text and "[user]\nhi" in text
    assert "model: 1.500s" in text


def test_messages_carry_the_os_user() -> None:
    import getpass

    runtime = StandInRuntime()
    _chat(runtime, "hi\n")
    message: IncomingMessage = runtime.received[0]
    assert message.sender_key == getpass.getuser()


def test_failing_slash_command_is_reported_and_reading_goes_on() -> None:
    code, out, err = _chat(StandInRuntime(), "/memory fail\nhello\n")
    assert code == 1
    assert "error: The memory database is locked." in err
    assert out == "You said: hello\n"


def test_reply_broken_mid_stream_ends_its_line() -> None:
    code, out, err = _chat(StandInRuntime(), "break it off\nnext\n")
    assert code == 1
    assert out.splitlines() == ["You said:", "You said: next"]
    assert "The connection dropped mid-reply." in err


class _Embedder:
    def __init__(self) -> None:
        self.prewarmed = 0

    def prewarm(self) -> None:
        self.prewarmed += 1


@pytest.mark.parametrize("interactive", [True, False])
def test_the_terminal_chat_loads_the_local_embedder_while_the_operator_types(
    monkeypatch: pytest.MonkeyPatch, interactive: bool
) -> None:
    """Interactive: the first message's memory search would otherwise wait ~300 ms CPU for
    the model. Piped: the first line is there at once, and may need no model at all."""
    from carrier_cli.clients.terminal import interactive as interactive_module

    runtime = StandInRuntime()
    embedder = _Embedder()
    runtime.store.embedder = embedder  # type: ignore[attr-defined]

    async def factory(_: ChatOptions) -> StandInRuntime:
        return runtime

    monkeypatch.setattr(interactive_module.InteractiveChat, "run", lambda self: 0)
    code = run_chat(
        ChatOptions(),
        runtime_factory=factory,  # type: ignore[arg-type]
        stdin=io.StringIO("hi\n"),
        stdout=io.StringIO(),
        stderr=io.StringIO(),
        interactive=interactive,
    )
    assert code == 0
    assert embedder.prewarmed == (1 if interactive else 0)
