"""`webhooks:` settings: refused with the entry's index and field, secrets never shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carrier_cli.config import load_settings
from carrier_cli.errors import ConfigError
from carrier_cli.webhooks.sender import services
from carrier_cli.webhooks.settings import resolve_secret
from tests.helpers import run_carrier

GOOD = {"url": "https://hooks.example.com/c", "events": ["message.created"], "secret_env": "HS"}


def _load(hooks: object, **extra: str) -> object:
    environ = {"CARRIER_WEBHOOKS": json.dumps(hooks), **extra}
    return load_settings(environ=environ, use_stored_keys=False).settings


def _error(hooks: object) -> str:
    with pytest.raises(ConfigError) as caught:
        _load(hooks)
    return caught.value.message


def test_a_valid_list_loads_with_a_stable_key_per_webhook() -> None:
    settings = _load([GOOD, {**GOOD, "name": "crm", "url": "http://crm.example.com/h"}])
    first, second = settings.webhooks  # type: ignore[attr-defined]
    assert first.key.startswith("url-") and second.key == "crm"
    assert first.events == ["message.created"]


@pytest.mark.parametrize(
    ("entry", "field", "says"),
    [
        ({**GOOD, "url": "ftp://files.example.com/x"}, "webhooks[1].url", "http:// or https://"),
        ({**GOOD, "url": "hooks.example.com/x"}, "webhooks[1].url", "http:// or https://"),
        ({**GOOD, "events": ["message.create"]}, "webhooks[1].events", "unknown event"),
        ({**GOOD, "events": []}, "webhooks[1].events", "at least 1"),
        ({k: v for k, v in GOOD.items() if k != "secret_env"}, "webhooks[1]", "has no secret"),
        ({**GOOD, "secret": "abc"}, "webhooks[1]", "both secret and secret_env"),
        ({**GOOD, "secret_key": "openai"}, "webhooks[1].secret_key", "webhook:"),
        ({**GOOD, "secret_env": "not-an-env"}, "webhooks[1].secret_env", "environment variable"),
        ({**GOOD, "name": "has space"}, "webhooks[1].name", "letters, digits"),
        ({**GOOD, "token": "x"}, "webhooks[1].token", "Extra inputs"),
    ],
)
def test_bad_entries_are_refused_naming_index_and_field(
    entry: dict[str, object], field: str, says: str
) -> None:
    message = _error([{**GOOD, "name": "fine"}, entry])
    assert f"`{field}` (from env CARRIER_WEBHOOKS)" in message
    assert says in message


def test_two_webhooks_with_one_name_are_refused() -> None:
    message = _error([{**GOOD, "name": "a"}, {**GOOD, "name": "a", "url": "https://b.example"}])
    assert "webhooks[0] and webhooks[1]" in message and "'a'" in message


def test_the_environment_must_give_json() -> None:
    with pytest.raises(ConfigError, match="as JSON"):
        load_settings(environ={"CARRIER_WEBHOOKS": "https://x"}, use_stored_keys=False)


def test_a_missing_secret_stops_the_command_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _load([GOOD])
    with pytest.raises(ConfigError, match=r"`webhooks\[0\].secret_env` names \$HS"):
        services(settings)  # type: ignore[arg-type]
    monkeypatch.setenv("HS", "from-the-env-0123")
    assert resolve_secret(settings.webhooks[0], 0) == "from-the-env-0123"  # type: ignore[attr-defined]
    assert [name for name, _ in services(settings)] == ["webhooks"]  # type: ignore[arg-type]


def test_a_stored_key_can_hold_the_secret() -> None:
    stored = run_carrier(["keys", "set", "webhook:crm"], input="stored-secret-0123456\n")
    assert stored.returncode == 0, stored.stderr
    settings = _load([{**GOOD, "secret_env": None, "secret_key": "webhook:crm"}])
    assert resolve_secret(settings.webhooks[0], 0) == "stored-secret-0123456"  # type: ignore[attr-defined]
    bare = run_carrier(["keys", "set", "webhook"], input="x\n")
    assert bare.returncode == 2 and "webhook:" in bare.stderr


def test_config_show_and_webhooks_list_never_print_a_secret(tmp_path: Path) -> None:
    secret = "literal-secret-value-987654"
    (tmp_path / "config.yaml").write_text(
        "webhooks:\n"
        "  - name: crm\n"
        "    url: https://user:pw-in-url-123@hooks.example.com/c\n"
        "    events: [message.created, agent.error]\n"
        f"    secret: {secret}\n"
        "  - url: https://other.example.com/h\n"
        "    events: [reply.completed]\n"
        "    secret_env: OTHER_SECRET\n",
        encoding="utf-8",
    )
    env = {"OTHER_SECRET": "env-secret-value-4567890"}
    for args in (
        ["config", "show"],
        ["config", "show", "--json"],
        ["webhooks", "list"],
        ["webhooks", "list", "--json"],
    ):
        result = run_carrier(args, cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr
        both = result.stdout + result.stderr
        assert secret not in both and "env-secret-value-4567890" not in both
        assert "pw-in-url-123" not in both
        assert "crm" in both
    listed = json.loads(run_carrier(["webhooks", "list", "--json"], cwd=tmp_path, env=env).stdout)
    assert listed[0] == {
        "name": "crm",
        "url": listed[0]["url"],
        "events": ["message.created", "agent.error"],
        "secret": "(set, hidden)",
    }
    assert listed[1]["secret_env"] == "OTHER_SECRET" and listed[1]["name"].startswith("url-")


@pytest.mark.parametrize("command", [["run", "--client", "discord"], ["serve", "--port", "0"]])
def test_run_and_serve_refuse_a_webhook_without_its_secret_before_starting(
    command: list[str],
) -> None:
    env = {"CARRIER_WEBHOOKS": json.dumps([GOOD]), "DISCORD_API_TOKEN": "x" * 40}
    result = run_carrier(command, env=env, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "`webhooks[0].secret_env` names $HS, which is not set" in result.stderr
    assert "Traceback" not in result.stderr
    assert "listening" not in result.stdout
