"""The `budget:` block: validated like every other character field (file:line:column,
"expected X, found Y"), the same shape in config.yaml and the environment (JSON)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from carrier_cli.character import load_character, validate_character_file
from carrier_cli.config import load_settings
from carrier_cli.errors import ConfigError
from carrier_cli.usage.caps import DEFAULT_MESSAGE, Budget, period_key, period_keys

Write = Callable[[str, str], Path]


@pytest.fixture
def write(tmp_path: Path) -> Write:
    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return _write


def test_budget_defaults_and_caps() -> None:
    budget = Budget(daily_tokens=100, monthly_cost_usd=2.5)
    assert (budget.action, budget.message) == ("refuse", DEFAULT_MESSAGE)
    assert budget.caps() == [
        ("daily_tokens", "day", "tokens", 100.0),
        ("monthly_cost_usd", "month", "cost_usd", 2.5),
    ]


def test_periods_are_utc_days_and_months() -> None:
    late = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    assert period_keys(late) == ("day:2026-12-31", "month:2026-12")
    ahead = datetime(2027, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))  # 23:30 UTC
    assert period_keys(ahead) == ("day:2026-12-31", "month:2026-12")
    assert period_key("month", datetime(2027, 1, 1)) == "month:2027-01"  # naive: UTC


def test_character_budget_loads(write: Write) -> None:
    path = write(
        "c.yaml",
        "name: Ada\nbudget:\n  daily_tokens: 1000\n  action: small\n  message: Later!\n",
    )
    budget = load_character(path).budget
    assert budget is not None
    assert (budget.daily_tokens, budget.action, budget.message) == (1000, "small", "Later!")
    assert load_character(write("d.yaml", "name: Ada\nbudget:\n")).budget is None


def test_character_budget_problems_point_at_the_key(write: Write) -> None:
    path = write(
        "c.yaml",
        "name: Ada\nbudget:\n  daily_tokens: lots\n  monthly_cost_usd: -1\n"
        "  action: deny\n  dailytokens: 5\n",
    )
    report = validate_character_file(path)
    errors = {p.path: (p.mark.line, p.message) for p in report.errors}
    assert errors["budget.daily_tokens"][0] == 3
    assert "expected a whole number, found the text 'lots'" in errors["budget.daily_tokens"][1]
    assert "greater than or equal to 0" in errors["budget.monthly_cost_usd"][1]
    assert "'refuse', 'small' or 'warn', found the text 'deny'" in errors["budget.action"][1]
    [warning] = report.warnings
    assert warning.path == "budget.dailytokens" and "did you mean `daily_tokens`" in (
        warning.message
    )


def test_a_budget_without_caps_is_an_error(write: Write) -> None:
    report = validate_character_file(write("c.yaml", "name: Ada\nbudget:\n  action: warn\n"))
    [problem] = report.errors
    assert problem.path == "budget" and "expected at least one cap" in problem.message


def test_global_budget_from_config_and_environment(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("budget:\n  monthly_cost_usd: 30\n  action: warn\n")
    settings = load_settings(environ={}, cwd=tmp_path, use_stored_keys=False).settings
    assert settings.budget == Budget(monthly_cost_usd=30, action="warn")
    env = {"CARRIER_BUDGET": '{"daily_tokens": 500, "message": "Closed."}'}
    settings = load_settings(environ=env, cwd=tmp_path, use_stored_keys=False).settings
    assert settings.budget == Budget(daily_tokens=500, message="Closed.")


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ('{"daily_tokens": 5', "expected a mapping, in the environment as JSON"),
        ('{"daily_tokens": -5}', "`budget.daily_tokens` (from env CARRIER_BUDGET)"),
        ('{"daily_token": 5}', "`budget.daily_token` (from env CARRIER_BUDGET)"),
    ],
)
def test_bad_global_budget_names_the_setting(tmp_path: Path, value: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"CARRIER_BUDGET": value}, cwd=tmp_path, use_stored_keys=False)
    assert words in info.value.message


def test_config_show_gives_the_global_budget_as_json(tmp_path: Path) -> None:
    import json

    (tmp_path / "config.yaml").write_text("budget:\n  daily_tokens: 5\n")
    loaded = load_settings(environ={}, cwd=tmp_path, use_stored_keys=False)
    [(_, shown, source)] = [row for row in loaded.display_rows() if row[0] == "budget"]
    assert json.loads(shown) == {"daily_tokens": 5, "action": "refuse", "message": DEFAULT_MESSAGE}
    assert source.startswith("config ")
