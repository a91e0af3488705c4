"""docs/library.md's 30-line program is run as a user would run it: a separate Python
process, the fake OpenAI server on 127.0.0.1 reached through the official SDK, SQLite
memory in a fresh CARRIER_HOME. If the page and the library drift apart, this fails."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.model_server import ModelServerProcess

DOC = Path(__file__).resolve().parents[1] / "docs" / "library.md"
ROOT = DOC.parents[1]


def _program() -> str:
    section = DOC.read_text(encoding="utf-8").split("## In 30 lines", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "docs/library.md lost its '## In 30 lines' program"
    return match.group(1)


def test_the_program_is_about_thirty_lines() -> None:
    code = [
        line
        for line in _program().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert len(code) <= 32, f"{len(code)} lines of code: the page promises about 30"


@pytest.mark.service
def test_the_library_program_runs(model_server_process: ModelServerProcess, tmp_path: Path) -> None:
    script = tmp_path / "my_bot.py"
    script.write_text(_program(), encoding="utf-8")
    env = {
        **os.environ,
        "OPENAI_API_KEY": "sk-test-library-doc-0000",
        "OPENAI_BASE_URL": model_server_process.openai_base_url,
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Echo: Hi, I'm Ada."  # the fake echoes the new message
    assert lines[1] == "Echo: What's my name?"  # streamed, then the newline
    replies = [
        r for r in model_server_process.requests("/v1/chat/completions") if r.body.get("stream")
    ]
    assert replies, "the second turn was not streamed"
    assert "Hi, I'm Ada." in replies[-1].prompt_text  # the first message is in memory
    assert (tmp_path / "carrier-home").exists()  # memory went to the test's own home
