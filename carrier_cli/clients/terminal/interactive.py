"""The interactive `carrier chat`: readline input, a spinner, and Markdown that streams.

Input is read synchronously between turns with `input()` (readline gives line editing and
history without a new dependency), and each turn runs on one long-lived asyncio loop
(`asyncio.Runner`) because the runtime's database connections belong to that loop.
Ctrl-C during a reply cancels only the reply's task, so the session carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from carrier_cli.clients.terminal.commands import CommandOutput, run_command, usage_footer
from carrier_cli.clients.terminal.input_reader import (
    collect_message,
    split_command,
    unescape_message,
)
from carrier_cli.clients.terminal.retry_notice import retry_notices
from carrier_cli.clients.terminal.session import ChatOptions, ChatSession
from carrier_cli.errors import CarrierError
from carrier_cli.runtime.outgoing import as_text_lines
from carrier_cli.text import one_line

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live
    from rich.status import Status

log = logging.getLogger(__name__)

PROMPT = "you> "
CONTINUATION = "...  "


class InteractiveChat:
    def __init__(
        self, runner: asyncio.Runner, session: ChatSession, options: ChatOptions, console: Console
    ) -> None:
        self.runner = runner
        self.session = session
        self.options = options
        self.console = console
        self._readline: Any = _load_readline()

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> int:
        self._banner()
        interrupts = 0
        with _history(self._readline):
            while True:
                try:
                    text = self._read_message()
                except EOFError:
                    self.console.print()
                    break
                except KeyboardInterrupt:
                    interrupts += 1
                    if interrupts >= 2:
                        self.console.print()
                        break
                    self.console.print("\n[dim](Ctrl-C again or Ctrl-D to leave)[/dim]")
                    continue
                interrupts = 0
                if not text.strip():
                    continue
                command = split_command(text)
                if command is None:
                    self.turn(unescape_message(text))
                elif self.command(*command):
                    break
        room = self.session.room_key
        self._say(
            f"Room {room} kept in memory; reopen it with `carrier chat --room {room}`.", "dim"
        )
        return 0

    def command(self, name: str, argument: str) -> bool:
        """Run a slash command; True when the session should end."""
        output: CommandOutput | None = None
        with self._failures_reported():
            output = self.runner.run(run_command(self.session, name, argument))
        if output is None:
            return False
        if output.exit:
            return True
        self._show_command(output)
        return False

    def _read_message(self) -> str:
        first = input(PROMPT)
        text = collect_message(first, input, CONTINUATION)
        pasted = self._pasted_lines()
        return "\n".join([text, *pasted]) if pasted else text

    def _pasted_lines(self) -> list[str]:
        """Lines already waiting on the terminal right after Enter came in one paste."""
        if self._readline is None or not sys.stdin.isatty():
            return []
        import select

        lines: list[str] = []
        while select.select([sys.stdin], [], [], 0.03)[0]:
            try:
                lines.append(input(""))
            except EOFError:
                break
        return lines

    # -- one turn ---------------------------------------------------------------------------
    def turn(self, text: str) -> None:
        with self._failures_reported():
            self.runner.run(self._cancellable_reply(text))

    @contextlib.contextmanager
    def _failures_reported(self) -> Iterator[None]:
        """Even a bad setting (an unknown model after /model, a rejected key) or a bug only
        fails this turn: the operator can fix it with /model, or leave, keeping the room."""
        from carrier_cli.state import STATE, scrub

        try:
            yield
        except KeyboardInterrupt:  # platforms without loop signal handlers; slash commands
            self.console.print("[yellow](cancelled)[/yellow]")
        except CarrierError as exc:
            self._error(scrub(str(exc)))
        except Exception as exc:
            log.debug("turn failed", exc_info=True)
            if STATE.debug:
                self.console.print_exception()
            self._error(
                f"unexpected {type(exc).__name__}: {scrub(str(exc))}. "
                "This is a bug in Carrier; run with --debug for the traceback and report it."
            )

    async def _cancellable_reply(self, text: str) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(self._reply(text))
        try:
            loop.add_signal_handler(signal.SIGINT, task.cancel)
            installed = True
        except (NotImplementedError, RuntimeError, ValueError):
            installed = False
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            self.console.print("[yellow](cancelled)[/yellow]")
        finally:
            if installed:
                loop.remove_signal_handler(signal.SIGINT)

    async def _reply(self, text: str) -> None:
        from rich.markdown import Markdown
        from rich.text import Text

        message = self.session.message(text)
        name = self.session.character_name
        # Text, not markup: the spinner parses a str with markup *and* emoji codes.
        thinking = Text(f"{name} is thinking…", style="dim")
        status = self.console.status(thinking, spinner="dots")
        status.start()

        def show_retry(line: str) -> None:
            status.update(Text.assemble(thinking, " ", (line, "yellow")))

        with retry_notices(show_retry):
            result, streamed, live = await self._receive(message, status)
        final = result.text if result is not None and result.text else streamed
        if live is not None:
            pass  # already on screen
        elif final:
            self._speaker()
            self.console.print(Markdown(final))
        else:
            self._say(f"({name} chose not to reply)", "dim")
        for extra in getattr(result, "extra_messages", None) or []:
            self.console.print(Markdown(extra))
        if result is not None:  # files and embeds: named, and shown as text
            for line in as_text_lines(getattr(result, "files", []), getattr(result, "embeds", [])):
                self.console.print(Markdown(line))
        if self.options.verbose and result is not None:
            footer = usage_footer(self.session.runtime, result)
            if footer:
                self._say(footer, "dim")
        self.console.print()

    async def _receive(self, message: Any, status: Status) -> tuple[Any, str, Live | None]:
        """Stream (or wait for) the reply, showing text as it arrives: (result, text, live)."""
        from rich.markdown import Markdown

        runtime = self.session.runtime
        live: Live | None = None
        streamed = ""
        result = None
        try:
            if self.options.stream:
                async with contextlib.aclosing(runtime.stream_message(message)) as stream:
                    async for event in stream:
                        if event.kind == "done":
                            result = event.result
                        elif event.text:
                            streamed += event.text
                            live = self._show_partial(live, status, streamed)
                if live is not None and result is not None and result.text not in (None, streamed):
                    live.update(Markdown(result.text))  # the runtime cleaned the text up
            else:
                result = await runtime.handle_message(message)
        finally:
            status.stop()
            if live is not None:
                live.stop()
        return result, streamed, live

    # -- printing ---------------------------------------------------------------------------
    def _show_partial(self, live: Live | None, status: Status, text: str) -> Live:
        """The first text replaces the spinner; later text re-renders the Markdown."""
        from rich.live import Live
        from rich.markdown import Markdown

        if live is None:
            status.stop()
            self._speaker()
            live = Live(
                Markdown(text),
                console=self.console,
                refresh_per_second=12,
                vertical_overflow="visible",
            )
            live.start(refresh=True)
        else:
            live.update(Markdown(text))
        return live

    # Names, replies, room keys and error messages come from files, the operator, the model
    # or a server: they are printed as `Text`, which Rich never reads as markup or emoji
    # codes, so the chat is safe on any console it is given, not only on Carrier's own.
    def _say(self, text: str, style: str = "") -> None:
        from rich.text import Text

        self.console.print(Text(text, style=style))

    def _error(self, message: str) -> None:
        from rich.text import Text

        self.console.print(Text.assemble(("error:", "red"), " ", message))

    def _speaker(self) -> None:
        self._say(self.session.character_name, "bold cyan")

    def _banner(self) -> None:
        from rich.text import Text

        session = self.session
        state = "resumed" if session.resumed else "new"
        self.console.print(
            Text.assemble(
                (session.character_name, "bold cyan"),
                " ",
                (f"· model {session.model_label} · room {session.room_key} ({state})", "dim"),
            )
        )
        self.console.print("[dim]Type /help for commands; Ctrl-D or /exit to leave.[/dim]")
        self.console.print()
        history = self.runner.run(session.history())
        if history:
            self.console.print("[dim]Earlier in this room:[/dim]")
            for speaker, text in history:
                self._say(f"  {speaker}: {one_line(text, 200)}", "dim")
            self.console.print()

    def _show_command(self, output: CommandOutput) -> None:
        if output.text:
            self._say(output.text, "red" if output.is_error else "dim")
        self.console.print()


def _load_readline() -> Any:
    try:
        import readline
    except ImportError:  # pragma: no cover - Windows without pyreadline
        return None
    return readline


@contextlib.contextmanager
def _history(readline: Any) -> Any:
    """Keep what was typed across sessions, like a shell does."""
    if readline is None:
        yield
        return
    from carrier_cli.paths import carrier_paths

    path = carrier_paths().cache_dir / "chat_history"
    with contextlib.suppress(OSError):
        readline.read_history_file(str(path))
    readline.set_history_length(1000)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(str(path))
