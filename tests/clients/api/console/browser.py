"""Headless Debian Chromium driven by Playwright for Python, for the console's tests.

Playwright's own browser download cannot work here (no internet), so the browser is the
system's /usr/bin/chromium (Debian's `chromium` package, installed by .ci/run), launched
through `executable_path` with a fresh profile and everything that would phone home off.
The tests skip, saying why, only when that binary is missing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("CARRIER_TEST_CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS = Path(__file__).resolve().parents[4] / "docs" / "console"
# CARRIER_CONSOLE_SCREENSHOTS=1 writes the screenshots into docs/console/ (the README's);
# else they go to tmp. Read at import: the suite's conftest clears CARRIER_* per test.
UPDATE_SCREENSHOTS = bool(os.environ.get("CARRIER_CONSOLE_SCREENSHOTS"))


def require_chromium() -> Path:
    if not CHROMIUM.is_file():
        pytest.skip(
            f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does), or set "
            "CARRIER_TEST_CHROMIUM to a Chromium binary."
        )
    return CHROMIUM


def launch(tmp: Path) -> Iterator[Any]:
    """One browser (a generator for a module fixture), with its own user-data-dir."""
    from playwright.sync_api import sync_playwright

    binary = require_chromium()
    profile = tmp / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(binary),
            args=ARGS,
            headless=True,
            viewport={"width": 1100, "height": 720},
        )
        try:
            yield context
        finally:
            context.close()
    shutil.rmtree(profile, ignore_errors=True)


def screenshot(page: Any, name: str, tmp: Path) -> Path:
    """A small PNG of the page: 64 colours (a console page is flat colours and text)."""
    from PIL import Image

    target_dir = DOCS if UPDATE_SCREENSHOTS else tmp
    target_dir.mkdir(parents=True, exist_ok=True)
    raw = tmp / f"{name}.raw.png"
    page.screenshot(path=str(raw))
    target = target_dir / f"{name}.png"
    with Image.open(raw) as image:
        image.convert("RGB").quantize(colors=64).save(target, optimize=True)
    raw.unlink()
    return target
