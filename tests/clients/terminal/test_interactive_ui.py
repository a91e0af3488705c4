"""The interactive front end on a real pseudo-terminal, with the stand-in runtime (no model
server), so spinner/streaming/Ctrl-C handling are tested apart from the model layer."""

from __future__ import annotations

import sys

import pytest

from tests.clients.terminal.pty_helpers import finish, screen_log, spawn

pytestmark = pytest.mark.slow


def _ui(*args: str):  # type: ignore[no-untyped-def]
    child = spawn([sys.executable, "-m", "tests.clients.terminal.standin", *args])
    child.expect("room session-")
    child.expect("you> ")
    return child


def test_banner_reply_and_markdown() -> None:
    child = _ui()
    child.sendline("hello **bold** there")
    child.expect("Ada")
    child.expect("You said: hello ")
    # Markdown: the asterisks are rendered as bold, not printed.
    child.expect(r"\x1b\[1mbold")
    child.expect("you> ")
    child.sendline("/exit")
    assert finish(child) == 0


def test_ctrl_c_cancels_the_reply_and_keeps_the_session() -> None:
    child = _ui()
    child.sendline("make this slow please")
    child.expect("You said:")
    child.sendintr()
    child.expect(r"\(cancelled\)")
    child.expect("you> ")
    child.sendline("still here")
    child.expect("You said: still here")
    child.expect("you> ")
    child.sendeof()
    assert finish(child) == 0


def test_multiline_continuation_and_block() -> None:
    child = _ui("--no-stream")
    child.sendline("first \\")
    child.expect(r"\.\.\. ")
    child.sendline("second")
    child.expect("You said: first")
    child.expect("second")
    child.expect("you> ")
    child.sendline('"""')
    child.sendline("# Title")
    child.sendline('"""')
    child.expect("You said: # Title")
    child.expect("you> ")
    child.sendeof()
    assert finish(child) == 0


def test_ctrl_c_at_prompt_twice_leaves() -> None:
    child = _ui()
    child.sendintr()
    child.expect("Ctrl-C again")
    child.expect("you> ")
    child.sendintr()
    child.expect("kept in memory")
    assert finish(child) == 0


def test_ctrl_c_while_the_spinner_waits_for_the_first_token() -> None:
    child = _ui()
    child.sendline("slow start")
    child.expect("thinking")
    child.sendintr()
    child.expect(r"\(cancelled\)")
    child.expect("you> ")
    child.sendline("/exit")
    assert finish(child) == 0
    assert "You said: slow start" not in screen_log(child)


def test_a_paste_of_several_lines_is_one_message() -> None:
    child = _ui("--no-stream")
    child.send("first pasted line\nsecond pasted line\n")
    child.expect("You said: first pasted line")
    child.expect("second pasted line")
    child.expect("you> ")
    child.sendline("/exit")
    assert finish(child) == 0
    # One reply for both lines, not two.
    assert screen_log(child).count("You said:") == 1


def test_failures_are_reported_and_the_session_goes_on() -> None:
    child = _ui()
    child.sendline("please fail")
    child.expect("error:")
    child.expect("The model server kept answering 503.")
    child.expect("you> ")
    child.sendline("/memory fail")
    child.expect("error:")
    child.expect("The memory database is locked.")
    child.expect("you> ")
    child.sendline("crash now")
    child.expect("unexpected ValueError: kaboom")
    child.expect("you> ")
    child.sendline("fine again")
    child.expect("You said: fine again")
    child.expect("you> ")
    child.sendline("/exit")
    assert finish(child) == 0
    assert "Traceback" not in screen_log(child)
