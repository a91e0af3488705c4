"""Typer command modules: one per command group. They parse and print; logic lives below.

Typer's Rich help renderer costs about 130 ms of imports on every `--help`; the plain
click renderer keeps `carrier --help` under the 150 ms budget. Set TYPER_USE_RICH=1 to get
the boxed help back.
"""

import os

os.environ.setdefault("TYPER_USE_RICH", "0")
