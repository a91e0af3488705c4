"""`carrier chat`: talk to a character in the terminal (logic in carrier_cli.clients.terminal)."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("chat")
    def chat(
        character: Annotated[
            str | None,
            typer.Option("--character", help="Character name or file; default: the built-in one."),
        ] = None,
        room: Annotated[
            str | None,
            typer.Option("--room", help="Named room: later runs with the same name remember it."),
        ] = None,
        resume: Annotated[
            bool, typer.Option("--continue", "-c", help="Resume the most recent terminal room.")
        ] = False,
        no_stream: Annotated[
            bool, typer.Option("--no-stream", help="Wait for the whole reply instead of streaming.")
        ] = False,
        provider: Annotated[
            str | None, typer.Option("--provider", help="openai, anthropic or ollama.")
        ] = None,
        model: Annotated[str | None, typer.Option("--model", help="Model name to use.")] = None,
        json_out: Annotated[
            bool, typer.Option("--json", help="Piped mode: one JSON object per reply.")
        ] = False,
        verbose: Annotated[
            bool,
            typer.Option("--verbose", "-v", help="After each reply, its tokens and cost."),
        ] = False,
    ) -> None:
        """Chat with a character. Type /help inside for commands.

        With stdin not a terminal, every line is one message and the replies are printed
        as plain text, e.g. printf 'hi\\nwhat did I just say?\\n' | carrier chat --room r1
        """
        from carrier_cli.clients.terminal import ChatOptions, run_chat
        from carrier_cli.state import STATE

        options = ChatOptions(
            character=character,
            room=room,
            resume=resume,
            stream=not no_stream,
            provider=provider,
            model=model,
            json_lines=json_out,
            verbose=verbose or STATE.verbose > 0,  # `carrier -v chat` too
        )
        code = run_chat(options)
        if code:
            # Not typer.Exit: click hands its code back as a return value when the app runs
            # with standalone_mode=False (as carrier_cli.cli.app.main does), losing it.
            raise SystemExit(code)
