"""`carrier chat` when stdin is not a terminal: one message per line, plain replies on stdout.

Scripts read stdout, so nothing but reply text (or one JSON object per reply with --json)
goes there; notices and errors go to stderr. A failed turn is reported and the next line
is still answered; the exit code is then 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, TextIO

from carrier_cli import startup_gc
from carrier_cli.clients.terminal.commands import run_command, usage_footer
from carrier_cli.clients.terminal.input_reader import split_command, unescape_message
from carrier_cli.clients.terminal.session import ChatOptions, ChatSession
from carrier_cli.errors import CarrierError, InputError
from carrier_cli.runtime.outgoing import as_text_lines, describe_file, embed_json


async def run_piped(
    session: ChatSession, options: ChatOptions, stdin: TextIO, stdout: TextIO, stderr: TextIO
) -> int:
    loop = asyncio.get_running_loop()
    failures = 0
    while True:
        # Read off the loop so the runtime's background work keeps going between lines.
        line = await loop.run_in_executor(None, stdin.readline)
        if not line:
            break
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        command = split_command(text)
        if command is not None:
            try:
                output = await run_command(session, *command)
            except InputError:
                raise
            except CarrierError as exc:
                failures += 1
                _report(stderr, exc)
                continue
            if output.exit:
                break
            if options.json_lines:
                _write_json(
                    stdout, {"command": command[0], "text": output.text, "error": output.is_error}
                )
            elif output.text:
                (stderr if output.is_error else stdout).write(output.text + "\n")
                (stderr if output.is_error else stdout).flush()
            failures += output.is_error
            continue
        try:
            result = await _answer(session, options, unescape_message(text), stdout)
            startup_gc.resume()  # the first reply is out: start-up is over
            if options.verbose:
                _write_footer(session, result, stderr)
        except InputError:
            raise  # a rejected key or bad setting fails every line: stop with exit 2
        except CarrierError as exc:
            failures += 1
            _report(stderr, exc)
    return 1 if failures else 0


def _write_footer(session: ChatSession, result: Any, stderr: TextIO) -> None:
    """--verbose: the turn's tokens and cost, on stderr (stdout carries only replies)."""
    footer = usage_footer(session.runtime, result)
    if footer:
        stderr.write(f"({footer})\n")
        stderr.flush()


def _report(stderr: TextIO, exc: Exception) -> None:
    from carrier_cli.state import scrub

    stderr.write(f"error: {scrub(str(exc))}\n")
    stderr.flush()


async def _answer(session: ChatSession, options: ChatOptions, text: str, stdout: TextIO) -> Any:
    """Answer one line; returns the turn's result (None if the stream ended without one)."""
    message = session.message(text)
    runtime = session.runtime
    if options.json_lines or not options.stream:
        result = await runtime.handle_message(message)
        if options.json_lines:
            _write_json(stdout, _result_json(session, result))
        else:
            stdout.write((result.text or "") + "\n")
            _write_extra(stdout, result)
        return result
    streamed = ""
    held = ""  # trailing whitespace is written only once more text follows it
    result = None
    try:
        async with contextlib.aclosing(runtime.stream_message(message)) as events:
            async for event in events:
                if event.kind == "delta" and event.text:
                    piece = event.text if streamed else event.text.lstrip()
                    streamed += piece
                    body = piece.rstrip()
                    if body:
                        stdout.write(held + body)
                        stdout.flush()
                        held = piece[len(body) :]
                    else:
                        held += piece
                elif event.kind == "done":
                    result = event.result
    except BaseException:
        if streamed:  # end the half-written reply so the next one starts on its own line
            stdout.write("\n")
            stdout.flush()
        raise
    if not streamed and result is not None and result.text:
        stdout.write(result.text)
    stdout.write("\n")
    _write_extra(stdout, result)
    return result


def _write_extra(stdout: TextIO, result: Any) -> None:
    """Messages that actions added after the reply (CONTINUE and the like), one per line."""
    for extra in getattr(result, "extra_messages", None) or []:
        stdout.write(extra + "\n")
    if result is not None:  # files and embeds: named, and shown as text
        for line in as_text_lines(getattr(result, "files", []), getattr(result, "embeds", [])):
            stdout.write(line + "\n")
    stdout.flush()


def _result_json(session: ChatSession, result: Any) -> dict[str, Any]:
    return {
        "room": session.room_key,
        "character": session.character_name,
        "decision": result.decision,
        "text": result.text,
        "message_id": str(result.message_id),
        "reply_id": str(result.reply_id) if result.reply_id else None,
        "actions": list(result.actions),
        "extra_messages": list(getattr(result, "extra_messages", None) or []),
        # The API's descriptors (no bytes, no url: nothing serves them after the process)
        "files": [describe_file(f) for f in getattr(result, "files", None) or []],
        "embeds": [embed_json(e) for e in getattr(result, "embeds", None) or []],
    }


def _write_json(stdout: TextIO, data: dict[str, Any]) -> None:
    stdout.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")
    stdout.flush()
