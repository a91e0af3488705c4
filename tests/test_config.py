from __future__ import annotations

from pathlib import Path

import pytest

from carrier_cli.config import (
    SECRET_FIELDS,
    Settings,
    env_names,
    load_settings,
    mask_secret,
)
from carrier_cli.config_template import render_config_yaml, render_env_example
from carrier_cli.errors import ConfigError
from carrier_cli.secrets import SecretStore

ROOT = Path(__file__).resolve().parent.parent


def test_priority_flag_over_env_over_dotenv_over_yaml(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("log_level: ERROR\nftp_port: 2121\ncharacter: a\n")
    (tmp_path / ".env").write_text("CARRIER_LOG_LEVEL=WARNING\nCARRIER_CHARACTER=b\n")
    loaded = load_settings(
        environ={"CARRIER_LOG_LEVEL": "DEBUG"}, overrides={"character": "c"}, cwd=tmp_path
    )
    s = loaded.settings
    assert (s.log_level, s.ftp_port, s.character) == ("DEBUG", 2121, "c")
    assert loaded.sources["log_level"] == "env CARRIER_LOG_LEVEL"
    assert loaded.sources["character"] == "flag"
    assert loaded.sources["ftp_port"].startswith("config ")
    assert "request_timeout" not in loaded.sources  # shown as "default"


def test_dotenv_beats_yaml(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("log_level: ERROR\n")
    (tmp_path / ".env").write_text("CARRIER_LOG_LEVEL=WARNING\n")
    loaded = load_settings(environ={}, cwd=tmp_path)
    assert loaded.settings.log_level == "WARNING"
    assert loaded.sources["log_level"].startswith(".env")


def test_standard_env_names(tmp_path: Path) -> None:
    env = {
        "OPENAI_API_KEY": "sk-test-1234567890abcd",
        "DATABASE_URL": "postgresql://x/y",
        "FTP_PORT": "2100",
    }
    s = load_settings(environ=env, cwd=tmp_path).settings
    assert s.secret("openai_api_key") == "sk-test-1234567890abcd"
    assert s.database_url == "postgresql://x/y"
    assert s.ftp_port == 2100


def test_carrier_prefix_wins_over_standard_name(tmp_path: Path) -> None:
    env = {"CARRIER_DATABASE_URL": "sqlite:///a.db", "DATABASE_URL": "postgresql://x/y"}
    assert load_settings(environ=env, cwd=tmp_path).settings.database_url == "sqlite:///a.db"


def test_stored_key_is_below_env(tmp_path: Path) -> None:
    SecretStore().set("openai", "sk-stored-000000000000zzzz")
    loaded = load_settings(environ={}, cwd=tmp_path)
    assert loaded.settings.secret("openai_api_key") == "sk-stored-000000000000zzzz"
    assert "stored key 'openai'" in loaded.sources["openai_api_key"]
    env = {"OPENAI_API_KEY": "sk-env-1111111111111yyyy"}
    assert load_settings(environ=env, cwd=tmp_path).settings.secret("openai_api_key") == (
        "sk-env-1111111111111yyyy"
    )


def test_invalid_value_names_setting_and_source(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("ftp_port: not-a-number\n")
    with pytest.raises(ConfigError) as info:
        load_settings(environ={}, cwd=tmp_path)
    assert "ftp_port" in str(info.value) and "config.yaml" in str(info.value)


def test_unknown_setting_suggests(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("ftp_prot: 21\n")
    with pytest.raises(ConfigError, match="did you mean `ftp_port`"):
        load_settings(environ={}, cwd=tmp_path)


def test_yaml_syntax_error_has_position(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("log_level: [unclosed\n")
    with pytest.raises(ConfigError, match=r"config\.yaml:\d+:\d+"):
        load_settings(environ={}, cwd=tmp_path)


def test_missing_explicit_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--config"):
        load_settings(config_file=tmp_path / "nope.yaml", environ={}, cwd=tmp_path)


def test_mask_secret() -> None:
    assert mask_secret("sk-abcdefghijklmnop1234") == "sk-…1234"
    assert "abcdef" not in mask_secret("abcdefgh")


def test_secret_fields_detected() -> None:
    assert {
        "openai_api_key",
        "anthropic_api_key",
        "discord_api_token",
        "instagram_access_token",
        "ftp_password",
    } <= SECRET_FIELDS


def test_examples_list_every_setting_and_are_current() -> None:
    yaml_text = (ROOT / "config.example.yaml").read_text()
    env_text = (ROOT / ".env.example").read_text()
    for name in Settings.model_fields:
        assert f"# {name}:" in yaml_text, f"{name} missing from config.example.yaml"
        assert f"{env_names(name)[-1]}=" in env_text, f"{name} missing from .env.example"
    assert yaml_text == render_config_yaml(), "run `make examples` to regenerate"
    assert env_text == render_env_example(), "run `make examples` to regenerate"
