"""`carrier chat --json` (piped) prints the files and embeds a turn answered with, as the
HTTP API's descriptors (no bytes, no url: nothing serves them after the command)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carrier_cli.runtime.outgoing import embed_json
from tests.clients.terminal.conftest import run_chat_cli
from tests.support.api_server import ROOT, write_character
from tests.support.file_plugin import CARD, REPORT, reply_choosing
from tests.support.model_server import ModelServerProcess

pytestmark = [pytest.mark.service, pytest.mark.slow]


def test_json_lines_carry_files_and_embeds(
    chat_server: ModelServerProcess, openai_env: dict[str, str], tmp_path: Path
) -> None:
    character = write_character(
        tmp_path / "carrier.yaml",
        extra='plugins: ["tests.support.file_plugin:PLUGIN"]\n'
        "settings:\n  fact_interval: 1000000\n",
    )
    chat_server.push(reply_choosing("SHOW_REPORT"))
    env = {**openai_env, "PYTHONPATH": str(ROOT)}
    result = run_chat_cli(["--character", str(character), "--json"], "the report\n", env)
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    answer = json.loads(line)
    assert answer["text"] == "Here is the report."
    assert answer["files"] == [
        {
            "id": REPORT.file_id,
            "filename": "report.csv",
            "content_type": "text/csv",
            "size": len(REPORT.data),
            "description": "Visits per day",
        }
    ]
    assert answer["embeds"] == [embed_json(CARD)]
