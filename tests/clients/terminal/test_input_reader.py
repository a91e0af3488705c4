from __future__ import annotations

from collections.abc import Iterator

import pytest

from carrier_cli.clients.terminal.input_reader import (
    collect_message,
    split_command,
    unescape_message,
)


def _reader(lines: list[str]) -> tuple[list[str], object]:
    prompts: list[str] = []
    it: Iterator[str] = iter(lines)

    def read(prompt: str) -> str:
        prompts.append(prompt)
        try:
            return next(it)
        except StopIteration:
            raise EOFError from None

    return prompts, read


def test_single_line_reads_nothing_more() -> None:
    prompts, read = _reader(["never read"])
    assert collect_message("hello", read) == "hello"  # type: ignore[arg-type]
    assert prompts == []


def test_backslash_continues_lines() -> None:
    prompts, read = _reader(["second \\", "third", "not read"])
    text = collect_message("first \\", read, "... ")  # type: ignore[arg-type]
    assert text == "first \nsecond \nthird"
    assert prompts == ["... ", "... "]


def test_double_backslash_is_not_a_continuation() -> None:
    _, read = _reader(["x"])
    assert collect_message("path C:\\\\", read) == "path C:\\\\"  # type: ignore[arg-type]


def test_triple_quote_block_keeps_blank_lines() -> None:
    _, read = _reader(["line one", "", "  indented", '"""', "after"])
    assert collect_message('"""', read) == "line one\n\n  indented"  # type: ignore[arg-type]


def test_unterminated_block_sends_what_was_typed_at_eof() -> None:
    _, read = _reader(["only line"])
    assert collect_message('"""', read) == "only line"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/help", ("help", "")),
        ("  /memory  favourite colour ", ("memory", "favourite colour")),
        ("/MODEL gpt-4o", ("model", "gpt-4o")),
        ("//not a command", None),
        ("/", None),
        ("/etc/passwd is a file", None),
        ("hello /help", None),
    ],
)
def test_split_command(text: str, expected: tuple[str, str] | None) -> None:
    assert split_command(text) == expected


def test_double_slash_sends_one_slash() -> None:
    assert unescape_message("//etc is odd") == "/etc is odd"
    assert unescape_message("plain") == "plain"
