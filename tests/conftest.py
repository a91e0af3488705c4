"""Suite-wide fixtures. Every test gets its own CARRIER_HOME and a clean environment, so no
test reads the developer's real keys, config or database."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Shared fixtures of one area that others reuse live in tests/support/*.py; list them here.
pytest_plugins: list[str] = [
    "tests.support.fake_discord",
    "tests.support.model_server",
    "tests.support.postgres",
    "tests.support.instagram_servers",
]

_CLEARED = [
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "DISCORD_API_TOKEN",
    "INSTAGRAM_ACCOUNT_ID",
    "INSTAGRAM_ACCESS_TOKEN",
    "INSTAGRAM_APP_SECRET",
    "INSTAGRAM_WEBHOOK_VERIFY_TOKEN",
    "FTP_SERVER",
    "FTP_USERNAME",
    "FTP_PASSWORD",
    "FTP_PORT",
    "FTP_TLS",
    "FTP_DIRECTORY",
    "HTTP_SERVER",
    "DATABASE_URL",
    "OLLAMA_BASE_URL",
]


@pytest.fixture(autouse=True)
def carrier_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "carrier-home"
    monkeypatch.setenv("CARRIER_HOME", str(home))
    monkeypatch.setenv("CARRIER_KEYRING", "file")
    for name in list(os.environ):
        if name.startswith("CARRIER_") and name not in {
            "CARRIER_HOME",
            "CARRIER_KEYRING",
            "CARRIER_TEST_DATABASE_URL",
        }:
            monkeypatch.delenv(name)
    for name in _CLEARED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    yield home
