"""Printing for the command line: results to stdout, diagnostics to stderr, JSON on request.

Most of what Carrier prints comes from outside: character files, memories, model replies,
server error messages, file names. Rich would read `[bold]`, `[/]` (a MarkupError) or
`[link=...]` in such text as markup and `:x:` as an emoji code, so the shared printing
paths here make that text literal by construction:

* every console is made with `emoji=False`: Carrier never writes emoji codes itself, so
  nothing is lost, and an escaped string can no longer turn `root:x:0:0` into `root❌0:0`;
* `table()` (use it instead of `rich.table.Table`) turns every `str` cell into plain
  `Text`; a cell that should be styled is passed as a `Text` with a style;
* `plain()` is the `Text` for an untrusted string where a renderable is built (panel
  titles and bodies, which Rich would otherwise parse with markup *and* emoji codes on).

Our own markup (`[dim]...[/dim]`) stays available in `print()` for fixed strings; anything
interpolated there goes through `rich.markup.escape`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from functools import cache
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text


def console(file: TextIO | None = None, *, stderr: bool = False) -> Console:
    """A console with Carrier's settings: no emoji codes, no guessing highlights."""
    from rich.console import Console

    return Console(file=file, stderr=stderr, highlight=False, emoji=False)


@cache
def out() -> Console:
    return console()


@cache
def err() -> Console:
    return console(stderr=True)


def plain(text: str, style: str = "") -> Text:
    """Untrusted text as a renderable that is shown exactly as written."""
    from rich.text import Text

    return Text(text, style=style)


def table(*headers: str, **options: Any) -> Table:
    """A `rich.table.Table` (same arguments) whose string cells are literal text, never
    markup: cells hold memories, setting values, URLs and server errors, and Rich parses
    a `str` cell as markup when the table is printed. A cell meant to be styled is passed
    as a `rich.text.Text` with a style."""
    return _plain_table_class()(*headers, **options)


def key_value_table(rows: Iterable[tuple[str, str | Text]] = (), *, grid: bool = False) -> Table:
    """Name/value pairs as a two-column table: names bold, no header, no borders, values
    literal (see `table()`); more rows with `add_row(name, value)`. `db status` and
    `memory stats` print one as it is; `grid` spaces it as `rich.table.Table.grid` does
    (no padding at the edges, two spaces between the columns), for a table inside a
    panel such as `character show`'s."""
    kv = _plain_table_class().grid(padding=(0, 2)) if grid else table(show_header=False, box=None)
    kv.add_column(style="bold")
    kv.add_column()
    for name, value in rows:
        kv.add_row(name, value)
    return kv


def key_value_lines(rows: Iterable[tuple[str, object]]) -> list[str]:
    """Name/value pairs as plain lines, the values aligned two spaces after the longest
    name: for output a script may read as well as a person (`models show`, `instagram
    status`, `config path`), where a rich table would add padding and wrap."""
    pairs = list(rows)
    width = max((len(name) for name, _ in pairs), default=0)
    return [f"{name.ljust(width)}  {value}" for name, value in pairs]


@cache
def _plain_table_class() -> type[Table]:
    from rich.table import Table
    from rich.text import Text

    class PlainTable(Table):
        def add_row(self, *renderables: Any, **options: Any) -> None:
            cells = [Text(cell) if isinstance(cell, str) else cell for cell in renderables]
            super().add_row(*cells, **options)

    return PlainTable


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def notice(message: str) -> None:
    """A one-line diagnostic on stderr (never mixed into results on stdout)."""
    from carrier_cli.redact import scrub

    err().print(plain(scrub(message), style="dim"))


def warn(message: str) -> None:
    from rich.text import Text

    from carrier_cli.redact import scrub

    err().print(Text.assemble(("warning:", "yellow"), " ", scrub(message)))
