"""Which modules a real `carrier` command imported: the command runs in a subprocess
whose interpreter writes the names in `sys.modules` to a file when it exits. Used to keep
heavy packages off paths that never need them (`carrier chat`, `carrier memory search`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

# What no memory-only command should import: the ORM (mapper, session, loading) and
# SQLAlchemy's asyncio extension, whose import pulls in the ORM's AsyncSession.
ORM_PREFIXES = ("sqlalchemy.orm", "sqlalchemy.ext.asyncio")

_RUN = """
import atexit, json, runpy, sys
out = sys.argv.pop(1)
def _dump():
    with open(out, "w") as f:
        json.dump(sorted(sys.modules), f)
atexit.register(_dump)
sys.argv[0] = "carrier"
runpy.run_module("carrier_cli", run_name="__main__", alter_sys=True)
"""


def run_watched(
    args: Sequence[str],
    listing: Path,
    *,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 90,
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """`carrier ARGS` as `python -m carrier_cli ARGS` would run it, and the modules it had
    imported when it exited (an empty list if it never wrote them)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    result = subprocess.run(
        [sys.executable, "-c", _RUN, str(listing), *args],
        input=input,
        capture_output=True,
        text=True,
        env=full_env,
        cwd=Path.cwd(),
        timeout=timeout,
    )
    modules = json.loads(listing.read_text()) if listing.exists() else []
    return result, modules


def matching(modules: Sequence[str], prefixes: Sequence[str] = ORM_PREFIXES) -> list[str]:
    """The modules that are one of `prefixes` or inside one."""
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes)]
