"""Prices: the shipped table, overrides, the date-suffix rule, and never a guess."""

from __future__ import annotations

import pytest

from carrier_cli.config import load_settings
from carrier_cli.usage.prices import CHECKED, PRICES, ModelPrice, PriceTable, base_model
from carrier_cli.usage.records import TokenUsage


def test_the_table_is_dated_and_covers_the_common_models() -> None:
    assert len(CHECKED) == 10 and CHECKED[4] == "-"
    for key in (
        "openai:gpt-4o",
        "openai:gpt-4o-mini",
        "openai:gpt-4.1",
        "openai:gpt-4.1-mini",
        "openai:gpt-4.1-nano",
        "openai:o3",
        "openai:o4-mini",
        "openai:gpt-5",
        "openai:gpt-5-mini",
        "openai:text-embedding-3-small",
        "openai:text-embedding-3-large",
        "anthropic:claude-sonnet-4-5",
        "anthropic:claude-haiku-4-5",
        "anthropic:claude-opus-4-1",
        "anthropic:claude-3-5-haiku",
    ):
        assert key in PRICES, key


def test_known_cost_with_cached_input_at_the_cached_price() -> None:
    table = PriceTable.default()
    usage = TokenUsage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert table.cost("openai", "gpt-4o-mini", usage) == pytest.approx(0.15 + 0.60)
    cached = TokenUsage(input_tokens=1_000_000, output_tokens=0, cached_tokens=400_000)
    # 600k at 0.15, 400k at 0.075
    assert table.cost("openai", "gpt-4o-mini", cached) == pytest.approx(0.09 + 0.03)


def test_no_cached_price_charges_cached_tokens_as_input() -> None:
    price = ModelPrice(input=2.0, output=4.0)
    assert price.cost(TokenUsage(1_000_000, 0, 500_000)) == pytest.approx(2.0)


def test_dated_ids_match_their_base_by_the_explicit_rule_only() -> None:
    table = PriceTable.default()
    assert base_model("gpt-4o-2024-08-06") == "gpt-4o"
    assert base_model("claude-3-5-haiku-20241022") == "claude-3-5-haiku"
    assert base_model("claude-3-5-haiku-latest") == "claude-3-5-haiku"
    assert table.lookup("openai", "gpt-4o-2024-08-06") == PRICES["openai:gpt-4o"]
    assert (
        table.lookup("anthropic", "claude-3-5-haiku-20241022")
        == PRICES["anthropic:claude-3-5-haiku"]
    )
    # No prefix guessing: a variant that is not a date suffix is unknown.
    assert table.lookup("openai", "gpt-4o-audio-preview") is None


def test_unknown_is_none_never_a_guess() -> None:
    table = PriceTable.default()
    usage = TokenUsage(100, 100)
    assert table.cost("ollama", "llama3.1", usage) is None
    # OpenAI's price is not assumed for a same-named model behind another server.
    assert table.cost("openai-compatible", "gpt-4o", usage) is None
    assert table.cost("scripted", "default", usage) is None


def test_overrides_by_provider_model_then_model() -> None:
    table = PriceTable.default(
        {
            "ollama:llama3.1": ModelPrice(0.0, 0.0),
            "gpt-4o": ModelPrice(1.0, 1.0),
            "openai:gpt-4o": ModelPrice(2.0, 2.0),
        }
    )
    usage = TokenUsage(1_000_000, 0)
    assert table.cost("ollama", "llama3.1", usage) == 0.0
    assert table.cost("openai", "gpt-4o", usage) == pytest.approx(2.0)
    assert table.cost("openai-compatible", "gpt-4o", usage) == pytest.approx(1.0)
    assert table.cost("openai", "gpt-4o-2024-11-20", usage) == pytest.approx(2.0)


def test_model_prices_setting_from_yaml_and_environment(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "config.yaml"
    config.write_text(
        "model_prices:\n"
        "  vllm:my-model: {input: 0.5, output: 1.5, cached: 0.1}\n"
        "log_prompts: true\n"
    )
    settings = load_settings(config_file=config, environ={}, use_stored_keys=False).settings
    assert settings.model_prices == {"vllm:my-model": ModelPrice(0.5, 1.5, 0.1)}
    assert settings.log_prompts is True
    assert settings.log_retention_days == 30
    env = {"CARRIER_MODEL_PRICES": '{"gpt-4o": {"input": 1, "output": 2}}'}
    from_env = load_settings(environ=env, use_stored_keys=False, cwd=tmp_path).settings
    assert from_env.model_prices == {"gpt-4o": ModelPrice(1.0, 2.0)}
