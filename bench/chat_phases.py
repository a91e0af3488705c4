"""Where a `carrier chat` start spends its CPU before the first piped reply, by phase.

Run by `bench/chat_bench.py --phases` as `python bench/chat_phases.py --room R` (the
`carrier chat` arguments) with the message on stdin. It starts Carrier as `carrier` does
(startup_gc.pause, then the CLI), wraps the start-up's steps in place, and when the first
line is written prints one line to stderr: `PHASES {json}`, each phase's CPU milliseconds
(time.process_time, so this process's threads too) in the order they ran.

A phase is the CPU since the phase before it, so imports land in the phase that first
needs them: "import store" is SQLAlchemy, the schema and the memory modules; "chat model"
is openai and the client; settings are loaded while the arguments are parsed. The wrappers
cost microseconds and import nothing of their own. The command's exit code is kept.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_marks: list[tuple[str, float]] = []


def mark(name: str) -> None:
    _marks.append((name, time.process_time()))


def phases() -> dict[str, float]:
    """Each mark's CPU milliseconds since the one before (the first: since the process
    began, the interpreter's own start included)."""
    out: dict[str, float] = {}
    before = 0.0
    for name, at in _marks:
        out[name] = round((at - before) * 1000, 1)
        before = at
    return out


class _FirstLine:
    """stdout that reports the phases when the first whole line is written."""

    def __init__(self, inner: TextIO) -> None:
        self._inner = inner
        self._reported = False

    def write(self, text: str) -> int:
        if not self._reported and "\n" in text:
            self._reported = True
            mark("turn to first reply")
            os.write(2, f"PHASES {json.dumps(phases())}\n".encode())
        return self._inner.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _after(owner: Any, name: str, label: str) -> None:
    """Mark `label` when owner.name (sync or async) returns."""
    original: Callable[..., Any] = getattr(owner, name)

    if hasattr(original, "__code__") and original.__code__.co_flags & 0x80:  # coroutine

        async def wrapped_async(*args: Any, **kwargs: Any) -> Any:
            result = await original(*args, **kwargs)
            mark(label)
            return result

        setattr(owner, name, wrapped_async)
    else:

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            mark(label)
            return result

        setattr(owner, name, wrapped)


def main() -> None:
    sys.argv = ["carrier", "chat", *sys.argv[1:]]
    sys.stdout = _FirstLine(sys.stdout)  # type: ignore[assignment]
    from carrier_cli import startup_gc

    startup_gc.pause()
    mark("interpreter")
    from carrier_cli.cli.app import main as cli

    mark("import CLI")
    from carrier_cli.clients.terminal import runner

    mark("import terminal client")
    original_open = runner.open_runtime

    async def open_runtime(options: Any) -> Any:
        mark("arguments, settings")
        import carrier_cli.character as character
        from carrier_cli.runtime import agent
        from carrier_cli.state import STATE

        mark("import runtime")
        # What AgentRuntime.create imports first: numpy (which `llm` imports too, through
        # sqlite_utils), then SQLAlchemy, the schema and the memory modules (Carrier only).
        import numpy  # noqa: F401

        mark("import numpy")
        from carrier_cli.llm import factory
        from carrier_cli.memory.store import MemoryStore

        mark("import store (SQLAlchemy)")
        _after(STATE, "settings", "settings (if loaded late)")
        _after(character, "resolve_character", "character")
        _after(factory, "create_models", "chat model (openai)")
        _after(agent, "discover_plugins", "plugins")
        _after(MemoryStore, "from_settings", "open store")
        _after(agent.AgentRuntime, "ingest_knowledge", "agent row, knowledge")
        return await original_open(options)

    runner.open_runtime = open_runtime
    cli()  # its SystemExit carries the command's exit code


if __name__ == "__main__":
    main()
