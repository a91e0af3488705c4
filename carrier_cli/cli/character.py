"""`carrier character ...` (being written)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Validate, import, list and create character files.", no_args_is_help=True)
