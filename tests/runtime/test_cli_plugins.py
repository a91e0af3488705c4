"""`carrier plugins list` end to end (subprocess: exit codes and messages as operators see them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def _carrier(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "carrier_cli", *args], capture_output=True, text=True, timeout=60
    )


def test_lists_installed_entry_points():
    done = _carrier("plugins", "list", "--json")
    assert done.returncode == 0, done.stderr
    example = next(p for p in json.loads(done.stdout) if p["name"] == "example")
    assert example["autoload"] is False and example["actions"] == ["ROLL_DICE"]
    assert "carrier_cli.runtime.example_plugin:plugin" in example["origin"]
    human = _carrier("plugins", "list")
    assert "ROLL_DICE" in human.stdout and "opt-in" in human.stdout


def test_shows_what_a_character_loads(tmp_path: Path):
    character = tmp_path / "dicey.yaml"
    character.write_text("name: Dicey\nbio: [Rolls dice.]\nplugins: [example]\n", encoding="utf-8")
    done = _carrier("plugins", "list", "--character", str(character), "--json")
    assert done.returncode == 0, done.stderr
    infos = {p["name"]: p for p in json.loads(done.stdout)}
    assert infos["builtin"]["actions"] == ["REPLY", "IGNORE", "NONE", "CONTINUE", "SEND_FILE"]
    assert infos["builtin"]["evaluators"] == ["FACTS"]
    assert infos["example"]["origin"] == "character plugins:"


def test_a_missing_plugin_is_a_clear_input_error(tmp_path: Path):
    character = tmp_path / "broken.yaml"
    character.write_text(
        "name: Broken\nbio: [x]\nplugins: [no_such_plugin_pkg]\n", encoding="utf-8"
    )
    done = _carrier("plugins", "list", "--character", str(character))
    assert done.returncode == 2
    assert "no_such_plugin_pkg" in done.stderr and "Traceback" not in done.stderr
