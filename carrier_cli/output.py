"""Printing for the command line: results to stdout, diagnostics to stderr, JSON on request."""

from __future__ import annotations

import json
import sys
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


@cache
def out() -> Console:
    from rich.console import Console

    return Console(highlight=False)


@cache
def err() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def notice(message: str) -> None:
    """A one-line diagnostic on stderr (never mixed into results on stdout)."""
    from rich.markup import escape

    from carrier_cli.state import scrub

    err().print(f"[dim]{escape(scrub(message))}[/dim]")


def warn(message: str) -> None:
    from rich.markup import escape

    from carrier_cli.state import scrub

    err().print(f"[yellow]warning:[/yellow] {escape(scrub(message))}")
