"""The issue's acceptance, as a new user tries it: a few piped `carrier chat` turns against
a server that reports usage, then `carrier logs` lists them with tokens and cost,
`carrier usage --by day` draws the chart and `--json` parses. Needs the llm layer's
records and the runtime's usage meter (issue 12's ucore part) to fill the table."""

from __future__ import annotations

import json

import pytest

from tests.clients.terminal.conftest import run_chat_cli, script
from tests.helpers import run_carrier
from tests.support.model_server import ModelServerProcess

pytestmark = [pytest.mark.service, pytest.mark.slow]


def test_piped_chat_turns_fill_logs_and_usage(
    chat_server: ModelServerProcess, openai_env: dict[str, str]
) -> None:
    script(chat_server, "Hello!", "Hello again!")
    chat = run_chat_cli([], "hi there\nand again\n", openai_env)
    assert chat.returncode == 0, chat.stderr
    reported = [r.usage for r in chat_server.requests("/v1/chat/completions")]
    assert len(reported) == 2 and all(reported)

    calls = json.loads(run_carrier(["logs", "--json"]).stdout)
    replies = [c for c in calls if c["purpose"] == "reply"]
    assert len(replies) == 2 and all(c["client"] == "terminal" for c in replies)
    assert sorted(c["input_tokens"] for c in replies) == sorted(
        u["prompt_tokens"] for u in reported if u
    )
    assert all(c["cost_usd"] is not None and c["outcome"] == "ok" for c in replies)
    table = run_carrier(["logs"], env={"COLUMNS": "200"})
    assert table.returncode == 0 and replies[0]["id"][:8] in table.stdout
    assert "gpt-4o-mini" in table.stdout and "$" in table.stdout

    by_day = run_carrier(["usage", "--by", "day"])
    assert by_day.returncode == 0 and "█" in by_day.stdout
    report = json.loads(run_carrier(["usage", "--json"]).stdout)
    assert report["total"]["calls"] >= 2 and report["total"]["cost_usd"] > 0
