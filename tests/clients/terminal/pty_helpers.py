"""Spawning chat processes on a pseudo-terminal with pexpect."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pexpect

ROOT = Path(__file__).resolve().parents[3]


def spawn(
    argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 30
) -> pexpect.spawn:
    full_env = dict(os.environ)
    full_env.update(
        {"TERM": "xterm-256color", "COLUMNS": "100", "LINES": "40", "PYTHONPATH": str(ROOT)}
    )
    full_env.update(env or {})
    child = pexpect.spawn(
        argv[0],
        list(argv[1:]),
        env=full_env,
        encoding="utf-8",
        timeout=timeout,
        dimensions=(40, 100),
        cwd=os.getcwd(),
    )
    child.logfile_read = io.StringIO()  # everything the terminal showed, for assertions
    return child


def screen_log(child: pexpect.spawn) -> str:
    log = child.logfile_read
    assert isinstance(log, io.StringIO)
    return log.getvalue()


def finish(child: pexpect.spawn, timeout: float = 20) -> int:
    """Wait for the process to end and return its exit status."""
    child.expect(pexpect.EOF, timeout=timeout)
    child.close()
    assert child.exitstatus is not None, f"killed by signal {child.signalstatus}"
    return int(child.exitstatus)
