"""`printf ... | carrier chat` imports no ORM: the memory it writes and searches every
turn is Core on Carrier's own async engine (memory/async_engine.py). sqlalchemy.ext.asyncio
and the ORM it pulls in were ~15% of a chat start's CPU, paid before the first reply."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.clients.terminal.conftest import script
from tests.support.loaded_modules import matching, run_watched
from tests.support.model_server import ModelServerProcess

pytestmark = [pytest.mark.service, pytest.mark.slow]


def test_a_piped_chat_imports_no_orm(
    chat_server: ModelServerProcess, openai_env: dict[str, str], tmp_path: Path
) -> None:
    script(chat_server, "Nice to meet you, Ada.", "Your name is Ada.")
    result, modules = run_watched(
        ["chat", "--room", "r1"],
        tmp_path / "modules.json",
        input="My name is Ada\nWhat is my name?\n",
        env=openai_env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["Nice to meet you, Ada.", "Your name is Ada."]
    assert "carrier_cli.memory.store" in modules  # memory was used, and listed
    assert matching(modules) == []
