"""Starting a terminal chat: settings, character, runtime, room, then the right front end.

`run_chat` is the library entry point behind `carrier chat`. `runtime_factory` lets a caller
(an embedding application, or a test of the front end alone) supply its own runtime; the
command always uses the real `AgentRuntime`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TextIO

from carrier_cli import startup_gc
from carrier_cli.clients.terminal.provider_setup import is_no_provider, offer_to_store_key
from carrier_cli.clients.terminal.session import ChatOptions, ChatSession, choose_room

RuntimeFactory = Callable[[ChatOptions], Coroutine[Any, Any, Any]]


def run_chat(
    options: ChatOptions,
    *,
    runtime_factory: RuntimeFactory | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    interactive: bool | None = None,
) -> int:
    """Run a whole chat session and return the exit code (errors raise CarrierError)."""
    options.validate()
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    if interactive is None:
        interactive = stdin.isatty()
    if interactive and options.json_lines:
        stderr.write("carrier chat: --json applies when stdin is piped; ignoring it here.\n")
    factory = runtime_factory or open_runtime
    with asyncio.Runner() as runner:
        runtime = _start_runtime(runner, factory, options, interactive, stderr)
        try:
            room, resumed, stored = runner.run(choose_room(runtime, options))
            session = ChatSession(runtime=runtime, room_key=room, resumed=resumed, room=stored)
            if interactive:
                from carrier_cli.clients.terminal.interactive import InteractiveChat
                from carrier_cli.output import console as make_console
                from carrier_cli.output import out

                # Carrier's console settings either way: replies never turn `:x:` into emoji.
                console = out() if stdout is sys.stdout else make_console(stdout)
                startup_gc.resume()  # started: the operator types from here on
                _prewarm_embedder(runtime)  # ... and the local model loads meanwhile
                return InteractiveChat(runner, session, options, console).run()
            from carrier_cli.clients.terminal.piped import run_piped

            if options.room is None:
                state = "resumed" if resumed else "new"
                stderr.write(f"carrier chat: room {room} ({state})\n")
                stderr.flush()
            return runner.run(run_piped(session, options, stdin, stdout, stderr))
        finally:
            runner.run(_close(runtime))


def _prewarm_embedder(runtime: Any) -> None:
    """Start loading the runtime's local embedding model while the operator types, so the
    first message's memory search does not wait for it (`LocalEmbedder.prewarm`). Only
    where there is such idle time: a piped chat's first line is there at once, and one
    whose message is already embedded (found by its content hash) needs no model."""
    prewarm = getattr(getattr(getattr(runtime, "store", None), "embedder", None), "prewarm", None)
    if callable(prewarm):
        prewarm()


def _start_runtime(
    runner: asyncio.Runner,
    factory: RuntimeFactory,
    options: ChatOptions,
    interactive: bool,
    stderr: TextIO,
) -> Any:
    try:
        return runner.run(factory(options))
    except Exception as exc:
        if not interactive or not is_no_provider(exc):
            raise

        def write(text: str) -> None:
            stderr.write(text)
            stderr.flush()

        provider = offer_to_store_key(write)
        if provider is None:
            raise
    _forget_loaded_settings()
    retry = dataclasses.replace(options, provider=options.provider or provider)
    return runner.run(factory(retry))


async def open_runtime(options: ChatOptions) -> Any:
    """The real runtime for `carrier chat`: configured settings, the chosen character."""
    from carrier_cli.character import resolve_character
    from carrier_cli.runtime.agent import AgentRuntime
    from carrier_cli.state import STATE

    loaded = STATE.settings()
    settings = loaded.settings
    name = options.character
    if name is None and "character" in loaded.sources:
        name = settings.character  # the operator chose a default character in config/env
    character = resolve_character(name)
    return await AgentRuntime.create(
        character, settings, provider=options.provider, model_name=options.model
    )


def _forget_loaded_settings() -> None:
    """A key stored a moment ago must be seen by the next settings load."""
    from carrier_cli.state import STATE

    STATE._loaded.clear()


async def _close(runtime: Any) -> None:
    close = getattr(runtime, "aclose", None)
    if close is not None:
        await close()
