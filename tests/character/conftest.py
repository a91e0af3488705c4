from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Copies of the six ElizaOS 0.x files from ../shared/fixtures/eliza-characters (see
# SOURCES.md there), kept in the repository so a fresh checkout's CI has them too.
ELIZA_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "eliza-characters"
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures" / "eliza-characters"


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a file under tmp_path and return its path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return _write
