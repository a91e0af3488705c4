"""Slash commands of `carrier chat`. They return text and leave the printing to the caller,
so the Rich interface and the piped mode share one implementation."""

from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from carrier_cli.clients.terminal.session import ChatSession
from carrier_cli.text import one_line

HELP = """\
Commands:
  /help            this list
  /exit            leave (also /quit, or Ctrl-D)
  /reset           start a new room; the agent no longer sees this conversation
  /memory QUERY    search the agent's memory
  /facts           facts the agent has learned
  /character       who you are talking to
  /model [NAME]    show or switch the model for the rest of the session
  /debug           the last turn: rendered prompt, raw model output, timings
  /usage           this session's model calls, tokens and cost

Multi-line messages: end a line with \\ to continue it, or type \"\"\" on a line of its
own, then the text, then \"\"\" again. Pasting several lines sends them as one message.
Start a message with // to send a text that begins with a slash.
Ctrl-C stops the reply being written; Ctrl-C twice at an empty prompt or Ctrl-D leaves.
"""


@dataclass
class CommandOutput:
    text: str
    is_error: bool = False
    exit: bool = False
    new_room: bool = False


Handler = Callable[[ChatSession, str], Awaitable[CommandOutput]]
_COMMANDS: dict[str, Handler] = {}


def _command(*names: str) -> Callable[[Handler], Handler]:
    def register(func: Handler) -> Handler:
        for name in names:
            _COMMANDS[name] = func
        return func

    return register


def command_names() -> list[str]:
    return sorted(_COMMANDS)


async def run_command(session: ChatSession, name: str, argument: str) -> CommandOutput:
    handler = _COMMANDS.get(name)
    if handler is None:
        import difflib

        close = difflib.get_close_matches(name, list(_COMMANDS), n=1)
        suggestion = f" Did you mean /{close[0]}?" if close else ""
        return CommandOutput(
            f"Unknown command /{name}.{suggestion} Type /help for the list.", is_error=True
        )
    return await handler(session, argument)


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


@_command("help", "?")
async def _help(session: ChatSession, argument: str) -> CommandOutput:
    return CommandOutput(HELP.rstrip())


@_command("exit", "quit")
async def _exit(session: ChatSession, argument: str) -> CommandOutput:
    return CommandOutput("", exit=True)


@_command("reset", "new")
async def _reset(session: ChatSession, argument: str) -> CommandOutput:
    room = session.reset()
    return CommandOutput(f"New room {room}. Earlier messages stay in memory.", new_room=True)


@_command("memory", "search")
async def _memory(session: ChatSession, argument: str) -> CommandOutput:
    if not argument:
        return CommandOutput("Usage: /memory QUERY, e.g. /memory favourite colour", is_error=True)
    runtime = session.runtime
    hits = await runtime.store.search(argument, agent_id=runtime.agent_id, k=8)
    if not hits:
        return CommandOutput(f"Nothing in memory matches {argument!r}.")
    lines = [f"Memories matching {argument!r}:"]
    for hit in hits:
        memory = hit.memory
        kind = getattr(memory.kind, "value", memory.kind)
        lines.append(f"  {hit.score:.2f}  [{kind}] {one_line(memory.text, 160)}")
    return CommandOutput("\n".join(lines))


@_command("facts")
async def _facts(session: ChatSession, argument: str) -> CommandOutput:
    from carrier_cli.memory.types import MemoryKind

    runtime = session.runtime
    facts = await runtime.store.list(agent_id=runtime.agent_id, kinds=[MemoryKind.FACT])
    if not facts:
        return CommandOutput(f"{session.character_name} has not stored any facts yet.")
    lines = [f"Facts {session.character_name} knows:"]
    lines.extend(f"  - {one_line(fact.text, 160)}" for fact in facts)
    return CommandOutput("\n".join(lines))


@_command("character", "who")
async def _character(session: ChatSession, argument: str) -> CommandOutput:
    character = session.runtime.character
    lines = [f"{session.character_name}  (model {session.model_label}, room {session.room_key})"]
    bio = getattr(character, "bio", None)
    if isinstance(bio, str) and bio:
        lines.append(one_line(bio, 300))
    elif isinstance(bio, list | tuple):
        lines.extend(f"  - {one_line(str(item), 200)}" for item in list(bio)[:5])
    source = getattr(character, "source_path", None) or getattr(character, "path", None)
    if source:
        lines.append(f"Loaded from {source}")
    return CommandOutput("\n".join(lines))


@_command("model")
async def _model(session: ChatSession, argument: str) -> CommandOutput:
    if not argument:
        return CommandOutput(f"Model: {session.model_label}. Switch with /model NAME.")
    await _maybe_await(session.runtime.set_model(argument))
    return CommandOutput(f"Model is now {session.model_label}.")


@_command("debug")
async def _debug(session: ChatSession, argument: str) -> CommandOutput:
    log = getattr(session.runtime, "last_turn_log", None)
    if not log:
        return CommandOutput("No turn yet in this session: send a message first.")
    return CommandOutput(format_turn_log(log))


@_command("usage")
async def _usage(session: ChatSession, argument: str) -> CommandOutput:
    from carrier_cli.usage.format import session_report

    meter = getattr(session.runtime, "usage", None)
    if meter is None:
        return CommandOutput("This runtime does not record usage.")
    return CommandOutput(session_report(meter.totals(), meter.by_model(), meter.unpriced_models()))


def usage_footer(runtime: Any, result: Any) -> str | None:
    """The --verbose line after a reply: that turn's tokens and cost (None: nothing known,
    e.g. a stand-in runtime without a meter)."""
    meter = getattr(runtime, "usage", None)
    turn_id = getattr(result, "message_id", None)
    if meter is None or turn_id is None:
        return None
    from carrier_cli.usage.format import turn_footer

    return turn_footer(meter.turn_totals(turn_id), meter.unpriced_models(turn_id))


def format_turn_log(log: Any) -> str:
    """Prompt, raw output and timings, whatever shape (dataclass, dict, object) the log has.

    The runtime's TurnLog renders itself; other shapes (stand-ins, plugins) are dumped.
    """
    render = getattr(log, "render", None)
    if callable(render):
        return str(render())
    if dataclasses.is_dataclass(log) and not isinstance(log, type):
        data = dataclasses.asdict(log)
    elif isinstance(log, dict):
        data = dict(log)
    else:
        data = {k: v for k, v in vars(log).items() if not k.startswith("_")}
    sections = []
    for key, value in data.items():
        title = key.replace("_", " ")
        if isinstance(value, dict) and key.startswith("timing"):
            body = "\n".join(f"  {k}: {_seconds(v)}" for k, v in value.items())
        elif isinstance(value, str):
            body = value
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            body = "\n".join(
                f"[{v.get('role', '?')}]\n{v.get('content', '')}"
                if "content" in v
                else json.dumps(v)
                for v in value
            )
        else:
            body = json.dumps(value, indent=2, default=str, ensure_ascii=False)
        sections.append(f"--- {title} ---\n{body}")
    return "\n".join(sections)


def _seconds(value: Any) -> str:
    return f"{value:.3f}s" if isinstance(value, int | float) else str(value)
