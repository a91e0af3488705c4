"""Run the real `carrier` command in a subprocess against the local servers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def carrier(
    *args: str, cwd: Path, extra_env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)  # the test's CARRIER_HOME and instagram_env settings
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, "-m", "carrier_cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def popen(
    *args: str,
    cwd: Path,
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.update(extra_env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "carrier_cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def noisy_jpeg(path: Path, size: tuple[int, int] = (1200, 1200), seed: int = 1) -> Path:
    """Random pixels: compresses badly, so the file is large enough to interrupt (~1-2 MB)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(path, "JPEG", quality=90)
    return path


def run_cli(
    *args: str,
    cwd: Path,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """The same `main()` as the `carrier` script, in this process (no interpreter start-up).

    Exit code, stdout and stderr are what a subprocess would see; use `carrier()` where the
    process boundary itself matters (crashes, concurrency, the acceptance run).
    """
    import contextlib
    import io
    import logging

    from carrier_cli import output
    from carrier_cli.cli.app import main
    from carrier_cli.state import STATE

    def fresh_consoles() -> None:
        # Rich reads COLUMNS when a console is made, and output.out()/err() are made once
        # per process: without this, a run's COLUMNS was ignored whenever an earlier test
        # in the same worker had printed first (tables wrapped at 80 columns).
        output.out.cache_clear()
        output.err.cache_clear()

    root = logging.getLogger()
    saved_logging = (list(root.handlers), root.level)
    saved = dict(os.environ)
    os.environ.update(extra_env or {})
    STATE._loaded.clear()
    fresh_consoles()
    stdout, stderr = io.StringIO(), io.StringIO()
    old_cwd = Path.cwd()
    code = 0
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                main(list(args))
            except SystemExit as exc:
                code = int(exc.code or 0)
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(saved)
        STATE._loaded.clear()
        fresh_consoles()
        root.handlers[:], level = saved_logging
        root.setLevel(level)
    return subprocess.CompletedProcess(list(args), code, stdout.getvalue(), stderr.getvalue())
