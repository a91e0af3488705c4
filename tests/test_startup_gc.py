"""carrier_cli/startup_gc.py: the collector held back while `carrier` starts."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator

import pytest

from carrier_cli import startup_gc


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    startup_gc._paused = None
    gc.set_threshold(*before)


def test_pause_raises_the_first_threshold_and_resume_restores_it() -> None:
    before = gc.get_threshold()
    startup_gc.pause()
    startup_gc.pause()  # idempotent: the original thresholds are kept
    assert startup_gc.paused()
    assert gc.get_threshold() == (startup_gc.START_THRESHOLD, before[1], before[2])
    frozen = gc.get_freeze_count()
    startup_gc.resume()
    assert not startup_gc.paused()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() >= frozen
    gc.unfreeze()


def test_garbage_made_while_paused_is_freed_not_frozen() -> None:
    import weakref

    class Node:
        other: object = None

    gc.collect()
    startup_gc.pause()
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    gone = weakref.ref(a)
    del a, b
    startup_gc.resume()
    try:
        assert gone() is None, "start-up's cyclic garbage was frozen for the process's life"
    finally:
        gc.unfreeze()


def test_resume_without_pause_changes_nothing() -> None:
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    startup_gc.resume()
    assert gc.get_threshold() == before and gc.get_freeze_count() == frozen


def test_main_with_arguments_leaves_the_callers_collector_alone() -> None:
    from carrier_cli.cli.app import main

    before = gc.get_threshold()
    with pytest.raises(SystemExit):
        main(["version", "--json"])
    assert gc.get_threshold() == before and not startup_gc.paused()


def test_the_command_starts_with_the_collector_held_back() -> None:
    code = (
        "import sys, runpy\n"
        "import gc\n"
        "sys.argv = ['carrier', 'version']\n"
        "import atexit\n"
        "atexit.register(lambda: print('THRESHOLD', gc.get_threshold()[0], file=sys.stderr))\n"
        "runpy.run_module('carrier_cli', run_name='__main__')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert f"THRESHOLD {startup_gc.START_THRESHOLD}" in result.stderr, result.stderr[-2000:]


def test_piped_chat_resumes_the_collector_once_its_first_reply_is_out() -> None:
    import io

    from carrier_cli.clients.terminal import ChatOptions, run_chat
    from tests.clients.terminal.standin import StandInRuntime

    runtime = StandInRuntime()
    seen: list[bool] = []

    async def factory(_: ChatOptions) -> StandInRuntime:
        return runtime

    class Out(io.StringIO):
        def write(self, text: str) -> int:
            if text.endswith("\n"):
                seen.append(startup_gc.paused())  # still paused while the reply is written
            return super().write(text)

    startup_gc.pause()
    out = Out()
    code = run_chat(
        ChatOptions(),
        runtime_factory=factory,  # type: ignore[arg-type]
        stdin=io.StringIO("hi\nagain\n"),
        stdout=out,
        stderr=io.StringIO(),
        interactive=False,
    )
    assert code == 0 and out.getvalue().splitlines() == ["You said: hi", "You said: again"]
    assert seen[0] is True and seen[-1] is False
    assert not startup_gc.paused()
    gc.unfreeze()


def test_the_installed_command_enters_before_the_cli_is_imported() -> None:
    """`carrier` (the console script) holds the collector back before the CLI's imports,
    as `python -m carrier_cli` does: both go through carrier_cli.__main__.run."""
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["carrier"] == "carrier_cli.__main__:run"
    code = (
        "import gc, sys, atexit\n"
        "import carrier_cli.__main__ as entry\n"
        "assert 'carrier_cli.cli.app' not in sys.modules  # importing it runs nothing\n"
        "sys.argv = ['carrier', 'version']\n"
        "atexit.register(lambda: print('THRESHOLD', gc.get_threshold()[0], file=sys.stderr))\n"
        "entry.run()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert f"THRESHOLD {startup_gc.START_THRESHOLD}" in result.stderr, result.stderr[-2000:]
