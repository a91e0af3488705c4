"""`/usage` and the `--verbose` footer in a piped `carrier chat`, against the fake server
reporting usage through the real openai SDK."""

from __future__ import annotations

import re

import pytest

from carrier_cli.usage.format import format_cost
from carrier_cli.usage.prices import PRICES
from carrier_cli.usage.records import TokenUsage
from tests.clients.terminal.conftest import run_chat_cli, script
from tests.support.model_server import ModelServerProcess

pytestmark = [pytest.mark.service, pytest.mark.slow]


def test_usage_shows_the_tokens_the_server_reported_and_their_cost(
    chat_server: ModelServerProcess, openai_env: dict[str, str]
) -> None:
    script(chat_server, "Hello!", "Hello again!")
    result = run_chat_cli(["--verbose"], "hi there\nand again\n/usage\n", openai_env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["Hello!", "Hello again!"]
    reported = [r.usage for r in chat_server.requests("/v1/chat/completions")]
    assert len(reported) == 2 and all(reported)
    prompt = sum(u["prompt_tokens"] for u in reported if u)
    completion = sum(u["completion_tokens"] for u in reported if u)
    cost = PRICES["openai:gpt-4o-mini"].cost(TokenUsage(prompt, completion))
    assert lines[2] == (
        f"This session: 2 model calls, {prompt:,} in (0 cached), {completion:,} out; "
        f"cost {format_cost(cost)}"
    )
    assert lines[3].startswith("  openai gpt-4o-mini: 2 calls")
    # --verbose: each turn's footer on stderr, never mixed into the replies on stdout.
    footers = re.findall(r"^\(1 model call · ([\d,]+) in .*\)$", result.stderr, re.M)
    first = reported[0]
    assert first is not None
    assert footers[0] == f"{first['prompt_tokens']:,}"
    assert len(footers) == 2


def test_unpriced_model_says_so_and_model_prices_prices_it(
    chat_server: ModelServerProcess, openai_env: dict[str, str]
) -> None:
    script(chat_server, "Local hello.")
    unpriced = run_chat_cli(["--model", "my-local-model"], "hi\n/usage\n", openai_env)
    assert unpriced.returncode == 0, unpriced.stderr
    assert "cost unknown price for my-local-model" in unpriced.stdout
    assert "(1 model call" not in unpriced.stderr  # no footer without --verbose

    script(chat_server, "Local hello.")
    env = dict(openai_env, CARRIER_MODEL_PRICES='{"my-local-model": {"input": 0, "output": 0}}')
    priced = run_chat_cli(["--model", "my-local-model"], "hi\n/usage\n", env)
    assert priced.returncode == 0, priced.stderr
    assert "cost $0.00" in priced.stdout


def test_usage_before_any_message(
    chat_server: ModelServerProcess, openai_env: dict[str, str]
) -> None:
    result = run_chat_cli([], "/usage\n", openai_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "No model calls yet in this session.\n"
