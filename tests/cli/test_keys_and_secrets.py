from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from carrier_cli.state import register_secret, scrub
from tests.helpers import run_carrier

PLANTED = "sk-planted-Zq8vXw3LmN0pR5tY7uJ2"


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


def test_planted_secret_never_printed_even_with_debug(tmp_path: Path) -> None:
    env = {"OPENAI_API_KEY": PLANTED, "CARRIER_FTP_PASSWORD": "hunter2-but-longer-pass"}
    for args in (["--debug", "-vv", "config", "show"], ["--debug", "config", "show", "--json"]):
        result = run_carrier(args, env=env)
        assert result.returncode == 0, result.stderr
        blob = result.stdout + result.stderr
        assert PLANTED not in blob and "hunter2-but-longer-pass" not in blob


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
