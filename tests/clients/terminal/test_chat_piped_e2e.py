"""`printf ... | carrier chat`: the real command, as a subprocess, against the fake model
server through the real openai/anthropic client libraries."""

from __future__ import annotations

import json

import pytest

from tests.clients.terminal.conftest import (
    ANTHROPIC_KEY,
    OPENAI_KEY,
    run_chat_cli,
    script,
    xml_reply,
)
from tests.support.model_server import ModelServerProcess

pytestmark = [pytest.mark.service, pytest.mark.slow]


def test_named_room_remembers_the_first_exchange(
    chat_server: ModelServerProcess, openai_env: dict[str, str]
) -> None:
    script(chat_server, "Nice to meet you, Ada.")
    first = run_chat_cli(["--room", "r1"], "My name is Ada\n", openai_env)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "Nice to meet you, Ada.\n"
    assert "Traceback" not in first.stderr

    chat_server.reset()
    script(chat_server, "Your name is Ada.")
    second = run_chat_cli(["--room", "r1"], "What is my name?\n", openai_env)
    assert second.returncode == 0, second.stderr
    assert second.stdout == "Your name is Ada.\n"
    calls = chat_server.requests("/v1/chat/completions")
    assert calls, "no model call recorded"
    reply_call = next(r for r in calls if "What is my name?" in r.prompt_text)
    assert "My name is Ada" in reply_call.prompt_text
    assert "Nice to meet you, Ada." in reply_call.prompt_text  # the agent's own answer
    assert reply_call.body["stream"] is True


def test_two_lines_in_one_run_and_the_second_sees_the_first(
    chat_server: ModelServerProcess, openai_env: dict[str, str]
) -> None:
    script(chat_server, "Hello!", "You said: hi there.")
    result = run_chat_cli([], "hi there\nwhat did I just say?\n", openai_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["Hello!", "You said: hi there."]
    assert "room session-" in result.stderr
    second = next(
        r
        for r in chat_server.requests("/v1/chat/completions")
        if "what did I just say?" in r.prompt_text
    )
    assert "hi there" in second.prompt_text


def test_anthropic_provider_remembers_the_room(
    chat_server: ModelServerProcess, anthropic_env: dict[str, str]
) -> None:
    args = ["--room", "r1", "--provider", "anthropic"]
    script(chat_server, "Hi Ada.", "Ada.")
    first = run_chat_cli(args, "My name is Ada\n", anthropic_env)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "Hi Ada.\n"
    second = run_chat_cli(args, "What is my name?\n", anthropic_env)
    assert second.returncode == 0, second.stderr
    assert second.stdout == "Ada.\n"
    calls = chat_server.requests("/v1/messages")
    assert calls and not chat_server.requests("/v1/chat/completions")
    reply_call = next(r for r in calls if "What is my name?" in r.prompt_text)
    assert "My name is Ada" in reply_call.prompt_text


def test_continue_resumes_the_last_session(
    chat_server: ModelServerProcess, openai_env: dict[str, str]
) -> None:
    script(chat_server, "Lisbon is lovely.", "In Lisbon.")
    first = run_chat_cli([], "I live in Lisbon\n", openai_env)
    assert first.returncode == 0, first.stderr
    resumed = run_chat_cli(["--continue"], "Where do I live?\n", openai_env)
    assert resumed.returncode == 0, resumed.stderr
    assert "(resumed)" in resumed.stderr
    room = first.stderr.split("room ", 1)[1].split()[0]
    assert room in resumed.stderr
    call = next(
        r
        for r in chat_server.requests("/v1/chat/completions")
        if "Where do I live?" in r.prompt_text
    )
    assert "I live in Lisbon" in call.prompt_text and "Lisbon is lovely." in call.prompt_text


def test_reset_starts_a_new_room(
    chat_server: ModelServerProcess, openai_env: dict[str, str]
) -> None:
    script(chat_server, "Zebra noted.", "Hello.")
    lines = "Remember the word zebra\n/reset\nhello again\n"
    result = run_chat_cli(["--json"], lines, openai_env)
    assert result.returncode == 0, result.stderr
    first, reset, second = (json.loads(line) for line in result.stdout.splitlines())
    assert reset["command"] == "reset"
    assert first["text"] == "Zebra noted." and second["text"] == "Hello."
    assert first["room"] != second["room"] and second["room"] in reset["text"]
    call = next(
        r for r in chat_server.requests("/v1/chat/completions") if "hello again" in r.prompt_text
    )
    # The new room's conversation does not include the earlier exchange.
    assert "Zebra noted." not in call.prompt_text
    assert "Remember the word zebra" not in call.prompt_text


def test_scripted_markdown_reply_is_printed_as_plain_text(
    chat_server: ModelServerProcess, openai_env: dict[str, str]
) -> None:
    chat_server.push(xml_reply("**Hello** Ada, nice to meet you."))
    result = run_chat_cli(["--no-stream"], "hello\n", openai_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "**Hello** Ada, nice to meet you.\n"
    assert "\x1b[" not in result.stdout  # no colours or cursor movement when piped
    call = next(r for r in chat_server.requests("/v1/chat/completions") if r.status == 200)
    assert not call.body.get("stream")


def test_429_is_retried_and_the_reply_arrives(
    chat_server: ModelServerProcess, openai_env: dict[str, str]
) -> None:
    chat_server.push(
        {
            "status": 429,
            "headers": {"Retry-After": "0"},
            "error_message": "Rate limit reached",
            "error_type": "requests",
        }
    )
    script(chat_server, "Yes, here.")
    result = run_chat_cli(["--room", "busy"], "are you there?\n", openai_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Yes, here.\n"
    statuses = [r.status for r in chat_server.requests("/v1/chat/completions")]
    assert statuses[:2] == [429, 200]


def test_server_errors_that_outlast_retries_fail_the_turn_with_exit_1(
    chat_server: ModelServerProcess, openai_env: dict[str, str]
) -> None:
    chat_server.push(*[{"status": 500, "error_message": "boom"}] * 3)
    script(chat_server, "Back again.")
    env = {**openai_env, "CARRIER_MAX_RETRIES": "2"}
    result = run_chat_cli(["--room", "down"], "hello\nstill there?\n", env)
    assert result.returncode == 1
    assert "error:" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == "Back again.\n"  # the next line is still answered


def test_no_key_anywhere_is_a_clear_exit_2(chat_server: ModelServerProcess) -> None:
    result = run_chat_cli([], "hello\n", {})
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    for way in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "ollama"):
        assert way in result.stderr
    assert chat_server.requests() == []


def test_missing_key_for_the_chosen_provider_is_exit_2(
    chat_server: ModelServerProcess, openai_env: dict[str, str]
) -> None:
    result = run_chat_cli(["--provider", "anthropic"], "hello\n", openai_env)
    assert result.returncode == 2
    assert "ANTHROPIC_API_KEY" in result.stderr and "Traceback" not in result.stderr


def test_rejected_key_is_exit_2_and_never_printed(
    chat_server: ModelServerProcess, openai_env: dict[str, str]
) -> None:
    chat_server.configure(expect_key="sk-the-right-one-0123456789")
    result = run_chat_cli(["--room", "r"], "hello\n", openai_env)
    assert result.returncode == 2
    assert "rejected" in result.stderr and "Traceback" not in result.stderr
    assert OPENAI_KEY not in result.stderr + result.stdout
    assert ANTHROPIC_KEY not in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--character", "nope.yaml"], "nope.yaml"),
        (["--room", "a", "--continue"], "--room and --continue"),
        (["--room", "  "], "--room is empty"),
    ],
)
def test_bad_flags_are_exit_2(openai_env: dict[str, str], args: list[str], expected: str) -> None:
    result = run_chat_cli(args, "hello\n", openai_env)
    assert result.returncode == 2
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_reply_cut_off_mid_stream_keeps_lines_apart(
    chat_server: ModelServerProcess, openai_env: dict[str, str]
) -> None:
    words = [f"w{i} " for i in range(10)]
    chunks = [
        "<response><thought>ok</thought><actions>REPLY</actions><text>",
        *words,
        "</text></response>",
    ]
    chat_server.push({"text": xml_reply("".join(words)), "chunks": chunks, "disconnect_after": 5})
    script(chat_server, "After the break.")
    result = run_chat_cli(["--room", "cut"], "hello\nagain\n", openai_env)
    assert result.returncode == 1
    first, second = result.stdout.splitlines()
    assert first.startswith("w0 w1") and "w9" not in first
    assert second == "After the break."
    assert "mid-stream" in result.stderr and "Traceback" not in result.stderr
