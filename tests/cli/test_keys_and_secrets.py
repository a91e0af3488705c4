from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from carrier_cli.config import SECRET_FIELDS, URL_FIELDS, env_names
from carrier_cli.state import register_secret, scrub
from tests.helpers import run_carrier

PLANTED = "sk-planted-Zq8vXw3LmN0pR5tY7uJ2"
WIDE = {"COLUMNS": "1000"}


def test_keys_set_without_keyring_uses_0600_file(carrier_home: Path) -> None:
    result = run_carrier(["keys", "set", "openai"], input=PLANTED + "\n")
    assert result.returncode == 0, result.stderr
    secrets_file = carrier_home / "config" / "secrets.json"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert json.loads(secrets_file.read_text())["openai"] == PLANTED
    assert "0600" in result.stderr
    assert PLANTED not in result.stdout + result.stderr

    shown = run_carrier(["config", "show"])
    assert shown.returncode == 0
    assert "sk-…JuJ2"[:3] in shown.stdout and PLANTED[-4:] in shown.stdout
    assert PLANTED not in shown.stdout + shown.stderr
    assert "stored key 'openai'" in shown.stdout

    as_json = json.loads(run_carrier(["config", "show", "--json"]).stdout)
    assert as_json["openai_api_key"]["value"] == "sk-…" + PLANTED[-4:]


def test_keys_list_get_remove(carrier_home: Path) -> None:
    assert run_carrier(["keys", "set", "discord"], input="token-abcdefghijklmnop").returncode == 0
    listed = run_carrier(["keys", "list", "--json"])
    rows = json.loads(listed.stdout)
    assert rows[0]["name"] == "discord" and "secrets.json" in rows[0]["stored_in"]
    assert "token-abcdefghijklmnop" not in listed.stdout
    got = run_carrier(["keys", "get", "discord"])
    assert got.stdout.strip() == "tok…mnop"
    assert run_carrier(["keys", "get", "discord", "--reveal"]).stdout.strip() == (
        "token-abcdefghijklmnop"
    )
    assert run_carrier(["keys", "remove", "discord"]).returncode == 0
    missing = run_carrier(["keys", "get", "discord"])
    assert missing.returncode == 2 and "carrier keys set discord" in missing.stderr


def test_unknown_key_name_is_usage_error() -> None:
    result = run_carrier(["keys", "set", "opnai"], input="x")
    assert result.returncode == 2
    assert "Unknown key name 'opnai'" in result.stderr and "Traceback" not in result.stderr


def test_empty_key_refused() -> None:
    result = run_carrier(["keys", "set", "openai"], input="\n")
    assert result.returncode == 2 and "No value" in result.stderr


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("openai", "sk-one-0123456789\nsk-two-0123456789", "a line break"),
        ("openai", "sk-\x1b[201~pasted-0123456789", "control character (U+001B)"),
        ("discord", "Bearer abc.def.ghi", "contains a space"),
        ("anthropic", "sk-ant-" + "x" * 5000, "5,007 characters"),
    ],
)
def test_mangled_key_values_are_refused(
    carrier_home: Path, name: str, value: str, says: str
) -> None:
    result = run_carrier(["keys", "set", name], input=value + "\n")
    assert result.returncode == 2, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr
    assert value[:12] not in result.stderr  # the (partial) secret is not echoed back
    assert run_carrier(["keys", "get", name]).returncode == 2  # nothing was stored


def test_ftp_password_may_hold_spaces(carrier_home: Path) -> None:
    assert run_carrier(["keys", "set", "ftp"], input="correct horse battery\n").returncode == 0
    shown = run_carrier(["keys", "get", "ftp", "--reveal"])
    assert shown.stdout.strip() == "correct horse battery"


def _planted_settings() -> tuple[dict[str, str], dict[str, str]]:
    """Env giving every secret-bearing setting a planted value: every secret field, and a
    password in every URL-valued setting. Returns (env, setting -> planted secret)."""
    env: dict[str, str] = {}
    planted: dict[str, str] = {}
    for index, name in enumerate(sorted(SECRET_FIELDS | URL_FIELDS)):
        secret = f"PLANTED{index:03d}-{name}"
        planted[name] = secret
        if name in SECRET_FIELDS:
            value = secret
        elif name == "database_url":
            value = f"postgresql://carrier:{secret}@127.0.0.1:1/db"
        elif name == "discord_gateway_url":
            value = f"ws://bot:{secret}@127.0.0.1:9/gateway"
        elif name == "redis_url":
            value = f"redis://:{secret}@127.0.0.1:1/0"
        else:
            value = f"http://user:{secret}@127.0.0.1:9/v1"
        env[env_names(name)[-1]] = value
    return env, planted


def test_planted_secret_never_printed_even_with_debug(tmp_path: Path) -> None:
    env, planted = _planted_settings()
    assert {"openai_api_key", "ftp_password", "database_url", "openai_base_url"} <= set(planted)
    env["COLUMNS"] = "400"  # a wide terminal: nothing is hidden by truncation
    for args in (
        ["config", "show"],
        ["config", "show", "--json"],
        ["--debug", "-vv", "config", "show"],
        ["--debug", "config", "show", "--json"],
    ):
        result = run_carrier(args, env=env)
        assert result.returncode == 0, result.stderr
        blob = result.stdout + result.stderr
        for name, secret in planted.items():
            assert secret not in blob, f"{name}'s secret printed by {args}"
        assert "PLANTED" not in blob
    shown = json.loads(run_carrier(["config", "show", "--json"], env=env).stdout)
    assert shown["database_url"]["value"] == "postgresql://carrier:***@127.0.0.1:1/db"
    assert shown["database_url"]["source"] == "env DATABASE_URL"
    assert shown["openai_base_url"]["value"] == "http://user:***@127.0.0.1:9/v1"


@pytest.mark.parametrize("debug", [[], ["--debug", "-vv"]])
def test_database_password_as_query_parameter_is_masked(debug: list[str]) -> None:
    # asyncpg (through SQLAlchemy) takes ?password= as well as user:password@.
    env = {"DATABASE_URL": "postgresql://u@127.0.0.1:1/db?sslmode=disable&password=PLANTED"}
    shown = run_carrier([*debug, "config", "show", "--json"], env=env)
    assert shown.returncode == 0, shown.stderr
    assert "PLANTED" not in shown.stdout + shown.stderr
    value = json.loads(shown.stdout)["database_url"]["value"]
    assert value == "postgresql://u@127.0.0.1:1/db?sslmode=disable&password=***"
    failed = run_carrier([*debug, "db", "status"], env=env)
    assert failed.returncode == 1, failed.stderr
    assert "PLANTED" not in failed.stdout + failed.stderr


@pytest.mark.parametrize("debug", [[], ["--debug", "-vv"]])
def test_database_password_not_printed_when_connecting_fails(debug: list[str]) -> None:
    # Port 1 on 127.0.0.1: nothing listens, the connection is refused at once.
    env = {"DATABASE_URL": "postgresql://u:PLANTED@127.0.0.1:1/db"}
    result = run_carrier([*debug, "db", "status"], env=env)
    assert result.returncode == 1, result.stderr
    assert "PLANTED" not in result.stdout + result.stderr
    assert "u:***@127.0.0.1:1" in " ".join(result.stderr.split())
    assert ("Traceback" in result.stderr) == bool(debug)


def test_url_password_scrubbed_from_debug_traceback_and_logs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A driver or library that prints the URL unmasked (in an exception or a log line)
    # is caught by the scrubber: loading the settings registers every URL's password,
    # percent-encoded and decoded.
    import logging

    from carrier_cli.cli.app import app, main
    from carrier_cli.state import STATE

    raw = "postgresql://carrier:PLANTED%2Fpw@127.0.0.1:1/db"
    monkeypatch.setenv("DATABASE_URL", raw)
    monkeypatch.setattr(STATE, "_loaded", {})

    @app.command("url-boom-test", hidden=True)
    def boom() -> None:
        STATE.settings()
        logging.getLogger("carrier_cli.test").warning("connecting to %s", raw)
        raise RuntimeError(f"driver said: cannot reach {raw} (password PLANTED/pw)")

    with pytest.raises(SystemExit) as exit_info:
        main(["--debug", "url-boom-test"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "connecting to" in err
    assert "PLANTED" not in err


def test_world_readable_secrets_file_warns(carrier_home: Path) -> None:
    assert run_carrier(["keys", "set", "openai"], input=PLANTED).returncode == 0
    secrets_file = carrier_home / "config" / "secrets.json"
    secrets_file.chmod(0o644)
    # Wide enough that Rich does not wrap the path in the middle.
    for args in (["keys", "list"], ["config", "show"]):
        result = run_carrier(args, env=WIDE)
        assert result.returncode == 0, result.stderr
        flat = " ".join(result.stderr.split())
        assert f"{secrets_file} has mode 0644" in flat
        assert f"chmod 600 {secrets_file}" in flat
        assert flat.count("has mode 0644") == 1
        assert PLANTED not in result.stdout + result.stderr
    secrets_file.chmod(0o640)  # group-readable is too open as well, as for ssh
    assert "has mode 0640" in run_carrier(["keys", "list"], env=WIDE).stderr
    secrets_file.chmod(0o600)
    assert "mode" not in run_carrier(["keys", "list"], env=WIDE).stderr
    # Storing a key rewrites the file private again.
    secrets_file.chmod(0o644)
    assert run_carrier(["keys", "set", "discord"], input="token-abcdefghijklmnop").returncode == 0
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600


def test_secrets_directory_is_created_private(carrier_home: Path) -> None:
    assert not (carrier_home / "config").exists()
    assert run_carrier(["keys", "set", "openai"], input=PLANTED).returncode == 0
    assert stat.S_IMODE((carrier_home / "config").stat().st_mode) == 0o700


def test_debug_traceback_is_scrubbed(capsys: pytest.CaptureFixture[str]) -> None:
    from carrier_cli.cli.app import app, main

    @app.command("boom-test", hidden=True)
    def boom() -> None:
        register_secret(PLANTED)
        raise RuntimeError(f"upstream said: bad key {PLANTED}")

    with pytest.raises(SystemExit) as exit_info:
        main(["--debug", "boom-test"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError" in err
    assert PLANTED not in err

    with pytest.raises(SystemExit):
        main(["boom-test"])
    err = capsys.readouterr().err
    assert "Traceback" not in err and PLANTED not in err and "--debug" in err


def test_scrub_masks_bearer_tokens() -> None:
    text = scrub("Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345")
    assert "abcdefghijklmnopqrstuvwxyz" not in text
