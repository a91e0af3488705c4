"""The `carrier` command: global options, command registration and error presentation.

Only typer is imported at module level, so `carrier --help` stays fast; each command's
module is imported when that command is used (cli/lazy_group.py: `carrier chat` builds
one command instead of 58), and every command imports what it needs when it runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from carrier_cli.cli.lazy_group import Kind, lazy_group
from carrier_cli.state import STATE

# The commands in `carrier --help` order: (name, module, how the module defines it).
COMMANDS: list[tuple[str, str, Kind]] = [
    ("version", "carrier_cli.cli.version", "register"),
    ("chat", "carrier_cli.cli.chat", "register"),
    ("run", "carrier_cli.cli.run", "register"),
    ("serve", "carrier_cli.cli.serve", "register"),
    ("usage", "carrier_cli.cli.usage", "register"),
    ("character", "carrier_cli.cli.character", "app"),
    ("keys", "carrier_cli.cli.keys", "app"),
    ("config", "carrier_cli.cli.config", "app"),
    ("models", "carrier_cli.cli.models", "app"),
    ("plugins", "carrier_cli.cli.plugins", "app"),
    ("memory", "carrier_cli.cli.memory", "app"),
    ("db", "carrier_cli.cli.db", "app"),
    ("instagram", "carrier_cli.cli.instagram", "app"),
    ("logs", "carrier_cli.cli.logs", "app"),
    ("api-keys", "carrier_cli.cli.api_keys", "app"),
    ("webhooks", "carrier_cli.cli.webhooks", "app"),
]


# What `carrier --help` lists for each command without importing its module: the first
# paragraph of its help (tests/cli/test_app.py checks these against the built
# commands, so a changed docstring fails the suite until this follows).
SUMMARIES: dict[str, str] = {
    "version": "Show Carrier's version and the Python it runs on.",
    "chat": "Chat with a character. Type /help inside for commands.",
    "run": "Serve characters on Discord (and other clients) until SIGINT/SIGTERM.",
    "serve": "Serve characters over HTTP and WebSocket until SIGINT/SIGTERM.",
    "usage": "Totals of the recorded model calls (calls, tokens, cost) and, by default or "
    "with --by day, a bar chart of the days.",
    "character": "Validate, import, list and create character files.",
    "keys": "Store API keys and tokens in the system keyring (or a private 0600 file).",
    "config": "Show and create configuration.",
    "models": "Show the model Carrier picks (and why) and list the provider's models.",
    "plugins": "List runtime plugins (actions, providers, evaluators).",
    "memory": "Search and manage long-term memory and knowledge.",
    "db": "Create, upgrade, inspect or reset the memory database (SQLite by default, "
    "PostgreSQL + pgvector with DATABASE_URL).",
    "instagram": "Publish photos, carousels, Reels and stories to Instagram (Graph API + FTP).",
    "logs": "Recent model calls with tokens, latency and cost (`carrier logs show ID` for one).",
    "api-keys": "Keys for Carrier's HTTP API: create (shown once), list, revoke.",
    "webhooks": "Webhooks: the configured receivers, a signed test delivery, the delivery log.",
}


def _app() -> typer.Typer:
    return app


app = typer.Typer(
    cls=lazy_group(_app, COMMANDS, SUMMARIES),
    name="carrier",
    help="Carrier: bring an ElizaOS-style character to life in the terminal, on Discord "
    "and on Instagram, with long-term memory.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


@app.callback()
def _global_options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks and debug logging.")
    ] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More logging (-vv for debug).")
    ] = 0,
    config_path: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Config file to use instead of ./config.yaml or the user one.",
            dir_okay=False,
        ),
    ] = None,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            help="Keep all Carrier files under this directory (CARRIER_HOME).",
            file_okay=False,
        ),
    ] = None,
) -> None:
    if home is not None:
        os.environ["CARRIER_HOME"] = str(home.expanduser().resolve())
    STATE.debug = debug
    STATE.verbose = verbose
    STATE.config_path = config_path
    from carrier_cli.state import setup_logging

    setup_logging(debug, verbose)


def _print_error(message: str, hint: str | None = None) -> None:
    import textwrap

    from carrier_cli.state import scrub

    text = scrub(message + (f" {hint}" if hint else ""))
    width = 100
    # Paths, URLs and flags are never split: a hyphen in /tmp/pytest-of-root is not a place
    # to break a line, and a long path stays whole so it can be copied.
    body = textwrap.fill(
        text,
        width=width,
        initial_indent="error: ",
        subsequent_indent="  ",
        break_on_hyphens=False,
        break_long_words=False,
    )
    sys.stderr.write(body + "\n")


def main(argv: list[str] | None = None) -> None:
    """Run the app and turn failures into a paragraph and an exit code. The process's
    entry is carrier_cli/__main__.py's `run`, which holds the collector back before this
    module is imported (carrier_cli/startup_gc.py); a library caller keeps its own."""
    from carrier_cli.errors import CarrierError

    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        # Without standalone mode click returns `typer.Exit(code)`'s code instead of exiting.
        rc = app(args=args, prog_name="carrier", standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.stderr.write("Aborted.\n")
        sys.exit(130)
    except typer.TyperException as exc:
        # Typer vendors click: its ClickException/UsageError live under typer._click.
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            sys.stderr.write(f"Error: {exc.format_message()}\n")
        sys.exit(exc.exit_code)
    except CarrierError as exc:
        if debug:
            _print_traceback()
        _print_error(exc.message, exc.hint)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        sys.exit(130)
    except Exception as exc:
        if debug:
            _print_traceback()
        from carrier_cli.memory.backends import escaped_failure

        failure = escaped_failure(exc)
        if failure is not None:  # a database failure raised outside a statement
            _print_error(failure.message, failure.hint)
            sys.exit(failure.exit_code)
        _print_error(
            f"Unexpected error: {type(exc).__name__}: {exc}.",
            "This is a bug in Carrier; run again with --debug for the traceback and report it.",
        )
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)


def _print_traceback() -> None:
    import traceback

    from carrier_cli.state import scrub

    sys.stderr.write(scrub(traceback.format_exc()))
