"""Choosing provider and models: precedence, auto-detection and the error messages."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from carrier_cli.config import Settings, load_settings
from carrier_cli.errors import InputError
from carrier_cli.llm.anthropic_chat import AnthropicChatModel
from carrier_cli.llm.base import ChatMessage, ChatModel
from carrier_cli.llm.errors import MissingApiKey, NoProviderConfigured, provider_options
from carrier_cli.llm.factory import create_models, resolve_model_config
from carrier_cli.llm.openai_chat import OpenAIChatModel
from tests.support.model_server import FakeModelServer

OPENAI_KEY = "sk-openai-key-1234567890"
ANTHROPIC_KEY = "sk-ant-key-1234567890"


def settings(**values: Any) -> Settings:
    return Settings(**values)


def character_model(**values: Any) -> SimpleNamespace:
    base = {
        "provider": None,
        "name": None,
        "small": None,
        "temperature": 0.7,
        "max_tokens": 1024,
        "embedding": None,
    }
    base.update(values)
    return SimpleNamespace(**base)


def test_auto_detect_prefers_openai_then_anthropic() -> None:
    both = resolve_model_config(
        settings(openai_api_key=OPENAI_KEY, anthropic_api_key=ANTHROPIC_KEY), None
    )
    assert (both.provider, both.large, both.small) == ("openai", "gpt-4o-mini", "gpt-4o-mini")
    assert both.source == "auto-detect"
    only_anthropic = resolve_model_config(settings(anthropic_api_key=ANTHROPIC_KEY), None)
    assert only_anthropic.provider == "anthropic"
    assert only_anthropic.large.startswith("claude")
    assert only_anthropic.context_window == 200_000


def test_no_provider_lists_the_three_ways() -> None:
    with pytest.raises(NoProviderConfigured) as info:
        resolve_model_config(settings(), None)
    message = str(info.value)
    for expected in (
        "carrier keys set openai",
        "OPENAI_API_KEY",
        "carrier keys set anthropic",
        "ANTHROPIC_API_KEY",
        "ollama serve",
        "--provider ollama",
    ):
        assert expected in message
    assert info.value.exit_code == 2
    assert [o.provider for o in provider_options()] == ["openai", "anthropic", "ollama"]


def test_missing_key_for_the_chosen_provider() -> None:
    with pytest.raises(MissingApiKey) as info:
        resolve_model_config(
            settings(openai_api_key=OPENAI_KEY), character_model(provider="anthropic")
        )
    assert "carrier keys set anthropic" in str(info.value)
    assert "ANTHROPIC_API_KEY" in str(info.value)


def test_precedence_flags_then_settings_then_character() -> None:
    char = character_model(
        provider="openai", name="gpt-4o", small="gpt-4o-mini", temperature=0.2, max_tokens=300
    )
    base = {"openai_api_key": OPENAI_KEY, "anthropic_api_key": ANTHROPIC_KEY}

    from_char = resolve_model_config(settings(**base), char)
    assert (from_char.provider, from_char.large, from_char.small) == (
        "openai",
        "gpt-4o",
        "gpt-4o-mini",
    )
    assert (from_char.temperature, from_char.max_tokens, from_char.source) == (
        0.2,
        300,
        "character",
    )

    from_settings = resolve_model_config(settings(**base, model_name="gpt-4.1"), char)
    assert (from_settings.large, from_settings.small) == ("gpt-4.1", "gpt-4o-mini")

    from_flag = resolve_model_config(
        settings(**base, model_provider="openai"),
        char,
        provider="anthropic",
        model="claude-sonnet-4-5",
    )
    # The character's OpenAI names are not sent to Anthropic.
    assert (from_flag.provider, from_flag.large, from_flag.source) == (
        "anthropic",
        "claude-sonnet-4-5",
        "flag",
    )
    assert from_flag.small.startswith("claude")


def test_model_name_implies_the_provider() -> None:
    config = resolve_model_config(
        settings(openai_api_key=OPENAI_KEY, anthropic_api_key=ANTHROPIC_KEY),
        None,
        model="claude-opus-4-5",
    )
    assert config.provider == "anthropic"


def test_ollama_needs_no_key_and_uses_its_url() -> None:
    config = resolve_model_config(
        settings(ollama_base_url="http://127.0.0.1:9/v1"), None, provider="ollama", model="qwen2.5"
    )
    assert (config.provider, config.large, config.small) == ("ollama", "qwen2.5", "qwen2.5")
    assert config.base_url == "http://127.0.0.1:9/v1"
    assert config.context_window == 8192


def test_compatible_server_needs_a_url_and_a_model() -> None:
    with pytest.raises(InputError, match="openai_base_url"):
        resolve_model_config(settings(), None, provider="openai-compatible", model="x")
    with pytest.raises(InputError, match="--model"):
        resolve_model_config(
            settings(openai_base_url="http://h/v1"), None, provider="openai-compatible"
        )
    vllm = resolve_model_config(settings(), None, provider="vllm", model="meta/llama")
    assert vllm.base_url == "http://localhost:8000/v1"
    with pytest.raises(MissingApiKey):
        resolve_model_config(settings(), None, provider="openrouter", model="openai/gpt-4o")


def test_unknown_provider_names_the_choices() -> None:
    with pytest.raises(InputError) as info:
        resolve_model_config(settings(), character_model(provider="gemini"))
    assert "model.provider" in str(info.value)
    assert "anthropic" in str(info.value)


def test_config_never_shows_the_key() -> None:
    config = resolve_model_config(settings(openai_api_key=OPENAI_KEY), None)
    assert OPENAI_KEY not in repr(config)
    assert OPENAI_KEY not in str(config)
    assert config.api_key is not None and config.api_key.get_secret_value() == OPENAI_KEY
    params = config.params(small=True, max_tokens=10)
    assert (params.model, params.max_tokens, params.temperature) == ("gpt-4o-mini", 10, 0.7)


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.setenv("CARRIER_SMALL_MODEL", "claude-haiku-4-5")
    loaded = load_settings()
    config = resolve_model_config(loaded.settings, character_model(name="claude-opus-4-5"))
    assert (config.provider, config.large, config.small) == (
        "anthropic",
        "claude-opus-4-5",
        "claude-haiku-4-5",
    )


async def test_create_models_builds_working_providers(model_server: FakeModelServer) -> None:
    char = SimpleNamespace(model=character_model(provider="openai", name="gpt-4o"))
    model, config = create_models(
        settings(openai_api_key=OPENAI_KEY, openai_base_url=model_server.openai_base_url), char
    )
    assert isinstance(model, OpenAIChatModel) and isinstance(model, ChatModel)
    assert config.large == "gpt-4o"
    try:
        reply = await model.complete([ChatMessage("user", "ping")], config.params())
    finally:
        await model.aclose()
    assert "Echo: ping" in reply

    claude, claude_config = create_models(
        settings(
            anthropic_api_key=ANTHROPIC_KEY, anthropic_base_url=model_server.anthropic_base_url
        ),
        None,
        provider="anthropic",
    )
    assert isinstance(claude, AnthropicChatModel)
    try:
        reply = await claude.complete([ChatMessage("user", "pong")], claude_config.params())
    finally:
        await claude.aclose()
    assert "Echo: pong" in reply
    assert [r.path for r in model_server.requests()] == ["/v1/chat/completions", "/v1/messages"]


def test_names_of_another_provider_are_skipped_even_without_a_provider() -> None:
    config = resolve_model_config(
        settings(openai_api_key=OPENAI_KEY, model_name="claude-opus-4-5"),
        None,
        provider="openai",
    )
    assert (config.provider, config.large) == ("openai", "gpt-4o-mini")


def test_context_window_setting_overrides_the_table() -> None:
    config = resolve_model_config(
        settings(context_window=32_768), None, provider="vllm", model="my-model"
    )
    assert config.context_window == 32_768
    assert config.window_for("another") == 32_768
    default = resolve_model_config(settings(openai_api_key=OPENAI_KEY), None)
    assert default.window_override is None
    assert default.window_for("gpt-4") == 8_192


def test_flag_model_name_outranks_a_configured_provider() -> None:
    config = resolve_model_config(
        settings(
            openai_api_key=OPENAI_KEY, anthropic_api_key=ANTHROPIC_KEY, model_provider="openai"
        ),
        None,
        model="claude-sonnet-4-5",
    )
    assert (config.provider, config.large, config.source) == (
        "anthropic",
        "claude-sonnet-4-5",
        "flag (model name)",
    )
    custom = resolve_model_config(
        settings(anthropic_api_key=ANTHROPIC_KEY, model_provider="anthropic"),
        None,
        model="my-finetune",
    )
    assert (custom.provider, custom.large) == ("anthropic", "my-finetune")
