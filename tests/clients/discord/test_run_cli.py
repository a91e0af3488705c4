"""`carrier run` argument and configuration errors: one paragraph, exit 2, before any
runtime or connection is opened (so these are fast)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.clients.discord.harness import write_character


def carrier(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "carrier_cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
    )


def test_unknown_client_lists_the_available_ones() -> None:
    result = carrier("run", "--client", "telegram")
    assert result.returncode == 2
    assert "Unknown client 'telegram'" in result.stderr and "discord" in result.stderr


def test_missing_token_says_how_to_store_one(tmp_path: Path) -> None:
    result = carrier(
        "run", "--client", "discord", "--character", str(write_character(tmp_path / "c.yaml"))
    )
    assert result.returncode == 2
    assert "No Discord bot token for character 'Carrier'" in result.stderr
    assert "carrier keys set discord" in result.stderr
    assert "Traceback" not in result.stderr


def test_two_characters_cannot_share_one_token(tmp_path: Path) -> None:
    first = write_character(tmp_path / "a.yaml", name="Alpha")
    second = write_character(tmp_path / "b.yaml", name="Beta")
    result = carrier(
        "run",
        "--character",
        str(first),
        "--character",
        str(second),
        env={"DISCORD_API_TOKEN": "shared-token-abcdefghijkl"},
    )
    assert result.returncode == 2
    assert "'Alpha' and 'Beta' would use the same Discord bot token" in result.stderr
    assert "carrier keys set discord:beta" in result.stderr
    assert "shared-token-abcdefghijkl" not in result.stderr


def test_missing_per_character_key_is_named(tmp_path: Path) -> None:
    character = write_character(tmp_path / "c.yaml", token_key="discord:gamma")
    result = carrier(
        "run", "--character", str(character), env={"DISCORD_API_TOKEN": "shared-token-abcdefghijkl"}
    )
    assert result.returncode == 2
    assert "token_key 'discord:gamma'" in result.stderr
    assert "carrier keys set discord:gamma" in result.stderr
