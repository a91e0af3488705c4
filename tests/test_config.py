from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from carrier_cli.config import (
    SECRET_FIELDS,
    URL_FIELDS,
    Settings,
    env_names,
    load_settings,
    mask_secret,
)
from carrier_cli.config_template import render_config_yaml, render_env_example
from carrier_cli.errors import ConfigError, InputError
from carrier_cli.secrets import SecretStore
from tests.helpers import run_carrier

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


# -- files that are not text ----------------------------------------------------------------
BINARY = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe"


@pytest.mark.parametrize("name", ["config.yaml", ".env"])
def test_binary_config_or_dotenv_is_named(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(BINARY)
    with pytest.raises(InputError) as info:
        load_settings(environ={}, cwd=tmp_path)
    assert str(tmp_path / name) in info.value.message
    assert "not UTF-8 text" in info.value.message

    result = run_carrier(["config", "show"], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    flat = " ".join(result.stderr.split())
    assert name in flat and "not UTF-8 text" in flat
    assert "Traceback" not in result.stderr and "Unexpected error" not in result.stderr


# -- URL-valued settings ----------------------------------------------------------------------
def _load_with(tmp_path: Path, source: str, name: str, value: str) -> Any:
    """load_settings with `name` = `value` coming from one source; returns the error text."""
    environ: dict[str, str] = {}
    overrides: dict[str, Any] = {}
    var = env_names(name)[-1]
    if source == "env":
        environ[var] = value
    elif source == ".env":
        (tmp_path / ".env").write_text(f"{var}='{value}'\n")
    elif source == "config":
        (tmp_path / "config.yaml").write_text(f"{name}: '{value}'\n")
    else:
        overrides[name] = value
    return load_settings(environ=environ, overrides=overrides, cwd=tmp_path)


SOURCE_LABELS = {"env": "env ", ".env": ".env (", "config": "config ", "flag": "flag"}


@pytest.mark.parametrize("source", list(SOURCE_LABELS))
@pytest.mark.parametrize(
    "value",
    [
        "postgresql://u:SECRETPW@[::1/db",  # unclosed IPv6 bracket: was a raw ValueError
        "notaurl",  # was a SQLite file named `notaurl` in the working directory
        "mysql://u:SECRETPW@h/db",
        "postgresql://u:SECRET@PW@h/db",  # unencoded @: part of the password read as host
        "postgresql://u:SECRETPW@h:99999/db",
        "sqlite://relative.db",
        "postgresql://u:SECRETPW@h /db",
    ],
)
def test_bad_database_url_refused_naming_setting_and_source(
    tmp_path: Path, source: str, value: str
) -> None:
    with pytest.raises(ConfigError) as info:
        _load_with(tmp_path, source, "database_url", value)
    text = info.value.message
    assert "`database_url`" in text and f"(from {SOURCE_LABELS[source]}" in text
    assert "SECRET" not in text + (info.value.hint or "")  # the password is never echoed
    assert "postgresql://user:password@host:5432/dbname" in (info.value.hint or "")
    assert not (tmp_path / "notaurl").exists()


def test_bad_database_url_on_the_command_line_is_exit_2(tmp_path: Path) -> None:
    for value in ("notaurl", "postgresql://u:p@[::1/db"):
        result = run_carrier(["db", "status"], env={"DATABASE_URL": value}, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        flat = " ".join(result.stderr.split())
        assert "`database_url` (from env DATABASE_URL)" in flat
        assert "Traceback" not in result.stderr and "ValueError" not in result.stderr
        assert not (tmp_path / "notaurl").exists()
    flag = run_carrier(["db", "status", "--database-url", "notaurl"], cwd=tmp_path)
    assert flag.returncode == 2 and "(from flag)" in flag.stderr
    assert not (tmp_path / "notaurl").exists()


@pytest.mark.parametrize(
    "value",
    [
        "sqlite:///rel.db",
        "sqlite:////abs/path.db",
        "sqlite+aiosqlite:///rel.db",
        "/var/lib/carrier/carrier.db",
        "~/carrier.db",
        "./carrier.db",
        "postgres://u:p@h/db?sslmode=require",
        "postgresql://u:p%40ss@[::1]:5432/db",
        "postgresql+asyncpg://postgres:@/c?host=/tmp/s",
        "postgresql://x/y",
    ],
)
def test_good_database_urls_accepted(tmp_path: Path, value: str) -> None:
    assert _load_with(tmp_path, "env", "database_url", value).settings.database_url == value


def test_every_url_setting_is_checked() -> None:
    # A setting named like a URL must be marked as one, so it is validated and masked.
    named_like_urls = {
        n for n in Settings.model_fields if n.endswith(("_url", "_base")) or n == "http_server"
    }
    assert named_like_urls <= URL_FIELDS
    assert "database_url" in URL_FIELDS and "ollama_base_url" in URL_FIELDS


@pytest.mark.parametrize("name", sorted(URL_FIELDS - {"database_url"}))
def test_bad_http_url_settings_refused(tmp_path: Path, name: str) -> None:
    for bad in ("not a url", "localhost:8080", "ftp://h/x", "http://[::1:80/v1", "http://h:x/"):
        with pytest.raises(ConfigError) as info:
            _load_with(tmp_path, "config", name, bad)
        assert f"`{name}` (from config " in info.value.message
        assert f"`{name}` takes a URL" in (info.value.hint or "")
    good = {
        "discord_gateway_url": "ws://127.0.0.1:9/gw",
        "redis_url": "redis://:pw@127.0.0.1:6379/0",
    }.get(name, "http://127.0.0.1:9/v1")
    assert getattr(_load_with(tmp_path, "env", name, good).settings, name) == good


# -- non-finite numbers ------------------------------------------------------------------------
FLOAT_FIELDS = sorted(n for n, i in Settings.model_fields.items() if i.annotation is float)


def test_float_fields_found() -> None:
    assert "request_timeout" in FLOAT_FIELDS and "shutdown_grace" in FLOAT_FIELDS


@pytest.mark.parametrize("name", FLOAT_FIELDS)
def test_non_finite_float_settings_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / "config.yaml").write_text(f"{name}: .nan\n")
    with pytest.raises(ConfigError) as info:
        load_settings(environ={}, cwd=tmp_path)
    assert f"`{name}` (from config " in info.value.message
    assert "finite" in info.value.message
    (tmp_path / "config.yaml").unlink()
    for value in ("inf", "-inf", "nan", "NaN"):
        with pytest.raises(ConfigError) as info:
            load_settings(environ={env_names(name)[0]: value}, cwd=tmp_path)
        assert f"`{name}` (from env {env_names(name)[0]})" in info.value.message


def test_non_finite_request_timeout_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("request_timeout: .nan\n")
    result = run_carrier(["config", "show"], cwd=tmp_path)
    assert result.returncode == 2 and "request_timeout" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_retries", "-1"),
        ("max_retries", "1000"),
        ("request_timeout", "0"),
        ("discord_max_concurrent_turns", "0"),
        ("discord_turn_timeout", "-5"),
        ("ftp_port", "70000"),
        ("instagram_poll_interval", "0"),
        ("embedding_dimensions", "0"),
        ("context_window", "10"),
    ],
)
def test_numeric_settings_out_of_range_are_refused_with_their_source(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """-1 retries or a 0 s timeout would make every call fail at once or never end; the
    error names the setting and where the value came from."""
    monkeypatch.setenv(f"CARRIER_{name.upper()}", value)
    with pytest.raises(ConfigError) as info:
        load_settings(use_stored_keys=False)
    assert f"`{name}`" in str(info.value) and f"CARRIER_{name.upper()}" in str(info.value)
