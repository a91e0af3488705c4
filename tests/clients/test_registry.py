"""`carrier run --client NAME` reads the `carrier.clients` entry-point group: Carrier's own
clients first, then third-party packages, which need no change to Carrier."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from carrier_cli.clients.registry import BUILTIN_CLIENTS, ENTRY_POINT_GROUP, available_clients
from carrier_cli.clients.supervisor import load_client
from carrier_cli.errors import InputError

ROOT = Path(__file__).resolve().parents[2]


def _ep(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


def test_pyproject_declares_carriers_own_clients_in_the_group():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared = pyproject["project"]["entry-points"][ENTRY_POINT_GROUP]
    assert declared == BUILTIN_CLIENTS


def test_builtins_first_then_installed_entry_points_and_builtin_names_are_kept():
    found = available_clients(
        lambda: [
            _ep("telegram", "carrier_telegram.client:run [fast]"),
            _ep("discord", "someone_else:run"),
            _ep("discord", "carrier_cli.clients.discord:run_discord_client"),
        ]
    )
    assert list(found) == ["discord", "instagram", "telegram"]
    assert found["discord"] == BUILTIN_CLIENTS["discord"]
    assert found["telegram"] == "carrier_telegram.client:run"  # extras dropped


@pytest.fixture
def broken_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "explodes_on_import.py").write_text("raise RuntimeError('boom')\n")
    (tmp_path / "no_client_here.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.mark.parametrize(
    ("target", "fragments"),
    [
        ("explodes_on_import:run", ["failed to import (RuntimeError: boom)", "explodes_on_import"]),
        ("no_client_here:run", ["does not name a client function in no_client_here"]),
        ("no_client_here", ["does not name a client function"]),
        ("not_installed_pkg_xyz:run", ["not available", "Reinstall the package that provides"]),
    ],
)
def test_a_broken_client_entry_point_is_an_input_error(broken_modules, target, fragments):
    with pytest.raises(InputError) as err:
        load_client("telegram", {"telegram": target})
    assert err.value.exit_code == 2
    assert "telegram" in str(err.value)
    for fragment in fragments:
        assert fragment in str(err.value)


def _distribution(where: Path, client_source: str) -> Path:
    """A third-party package 'installed' the way pip leaves one: a module and its
    dist-info with a `carrier.clients` entry point, found on sys.path."""
    where.mkdir(parents=True, exist_ok=True)
    (where / "carrier_telegram.py").write_text(textwrap.dedent(client_source), encoding="utf-8")
    info = where / "carrier_telegram-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: carrier-telegram\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[carrier.clients]\ntelegram = carrier_telegram:run_telegram_client\n"
    )
    return where


def _carrier(tmp_path: Path, site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CARRIER_", "DISCORD_", "OPENAI_", "ANTHROPIC_"))
    }
    env.update(
        {
            "CARRIER_HOME": str(tmp_path / "home"),
            "CARRIER_KEYRING": "file",
            "OPENAI_API_KEY": "sk-test-telegram-0123456789",
            "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",  # never called by this client
            "CARRIER_EMBEDDING_PROVIDER": "openai",
            "TELEGRAM_MARKER": str(tmp_path / "marker"),
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(site)]),
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "carrier_cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=90,
    )


TELEGRAM = """
    import os

    async def run_telegram_client(runtime, settings, stop_event):
        # A real client would poll Telegram until stop_event is set and hand each message
        # to runtime.handle_message; this one records that it ran with a live runtime.
        with open(os.environ["TELEGRAM_MARKER"], "w", encoding="utf-8") as marker:
            marker.write(f"{runtime.character.name} {runtime.agent_id}")
"""


@pytest.mark.slow
def test_a_third_party_package_adds_carrier_run_client_telegram(tmp_path: Path):
    site = _distribution(tmp_path / "site", TELEGRAM)
    character = tmp_path / "tg.yaml"
    character.write_text("name: Tele\nbio: [Talks on Telegram.]\n", encoding="utf-8")

    shown = _carrier(tmp_path, site, "run", "--help")
    assert shown.returncode == 0, shown.stderr
    assert "telegram" in shown.stdout and "discord" in shown.stdout

    unknown = _carrier(tmp_path, site, "run", "--client", "signal")
    assert unknown.returncode == 2
    assert "Unknown client 'signal' given to --client" in unknown.stderr
    assert "discord, instagram, telegram" in unknown.stderr

    ran = _carrier(tmp_path, site, "run", "--client", "telegram", "--character", str(character))
    assert ran.returncode == 0, ran.stderr
    name, agent_id = (tmp_path / "marker").read_text(encoding="utf-8").split()
    assert name == "Tele" and len(agent_id) == 36


def test_a_third_party_client_that_fails_to_import_is_one_clear_error(tmp_path: Path):
    site = _distribution(tmp_path / "site", "import telegram_sdk_that_is_missing\n")
    done = _carrier(tmp_path, site, "run", "--client", "telegram")
    assert done.returncode == 2
    assert "The telegram client is not available" in done.stderr
    assert "telegram_sdk_that_is_missing" in done.stderr
    assert "Traceback" not in done.stderr
