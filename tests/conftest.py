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


# The slowest files of the suite, slowest first (summed test time in a `make test` run on
# 4 workers, 2026-12-03, load ~12: 538 s, 410 s, 344 s, 331 s, 304 s, 286 s, 242 s, ...).
# Under xdist (`make test` runs `-n 4 --dist loadfile --no-loadscope-reorder`) they are
# handed out first, so no worker starts a 4-minute file when the rest are nearly done: run
# in collection order, test_logs_usage.py and the OpenAPI fuzz started in the last tenth
# and the final 3% of tests took 8 of the 43 minutes. A file missing from this list only
# runs later; a stale entry only costs balance, never correctness.
SLOWEST_FILES = [
    "tests/cli/test_logs_usage.py",
    "tests/clients/terminal/test_chat_piped_e2e.py",
    "tests/memory/test_cli.py",
    "tests/clients/api/test_serve_startup.py",
    "tests/clients/instagram/test_cli_post.py",
    "tests/clients/discord/test_catch_up.py",
    "tests/clients/api/test_openapi_fuzz.py",
    "tests/clients/api/test_messages.py",
    "tests/cluster/test_event_relay.py",
    "tests/clients/api/test_ws.py",
    "tests/clients/discord/test_sharding.py",
    "tests/clients/instagram/test_queue.py",
    "tests/clients/api/console/test_console.py",
    "tests/memory/test_storage_failures.py",
    "tests/cluster/test_turn_queue.py",
    "tests/clients/api/test_instagram.py",
    "tests/clients/terminal/test_chat_pty_e2e.py",
    "tests/cli/test_keys_and_secrets.py",
    "tests/webhooks/test_serve_webhooks.py",
    "tests/clients/discord/test_run_discord.py",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On xdist workers only: the SLOWEST_FILES first (a stable sort keeps every file's own
    order). Every worker sorts the same way, as xdist requires; a serial run is untouched."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    rank = {path: index for index, path in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.partition("::")[0], len(rank)))
