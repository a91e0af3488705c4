"""`carrier character ...` end to end, as a subprocess: exit codes and messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.character.conftest import ELIZA_FIXTURES, REPO

pytestmark = pytest.mark.slow


def carrier(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "carrier_cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
    )


def test_validate_the_shipped_examples() -> None:
    examples = sorted((REPO / "characters").glob("*.yaml"))
    result = carrier("character", "validate", *examples)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok (Carrier)" in result.stdout and "ok (Captain Brannock)" in result.stdout
    assert "0 errors, 0 warnings" in result.stdout
    as_directory = carrier("character", "validate", REPO / "characters")
    assert as_directory.returncode == 0 and "2 files checked" in as_directory.stdout


def test_import_trump_then_validate(tmp_path: Path) -> None:
    out = tmp_path / "t.yaml"
    result = carrier("character", "import", ELIZA_FIXTURES / "trump.character.json", "-o", out)
    assert result.returncode == 0, result.stderr
    assert "settings.voice" in result.stderr and "Wrote" in result.stderr
    assert out.read_text().startswith("# Imported from trump.character.json")
    again = carrier("character", "import", ELIZA_FIXTURES / "trump.character.json", "-o", out)
    assert again.returncode == 2 and "--force" in again.stderr
    result = carrier("character", "validate", out)
    assert result.returncode == 0 and "ok (trump)" in result.stdout


def test_import_to_stdout() -> None:
    result = carrier("character", "import", ELIZA_FIXTURES / "dobby.character.json")
    assert result.returncode == 0
    assert "name: Dobby" in result.stdout and "{{user1}}" in result.stdout


def test_broken_file_exit_2_with_positions_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("bio: [a]\nmodel:\n  temperature: hot\nadjectivs: [x]\n")
    syntax = tmp_path / "syntax.yaml"
    syntax.write_text("name: x\nbio: [a\n")
    result = carrier("character", "validate", bad, syntax)
    assert result.returncode == 2
    assert f"{bad}:1:1: error: name: is required" in result.stdout
    assert f"{bad}:3:3: error: model.temperature: expected a number" in result.stdout
    assert (
        f"{bad}:4:1: warning: adjectivs: unknown key `adjectivs` (did you mean `adjectives`?)"
        in result.stdout
    )
    assert f"{syntax}:3:1: error: invalid YAML" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert "3 errors in 2 character files" in result.stderr


def test_unknown_key_warns_but_passes_unless_strict(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: Ada\ntopcs: [sea]\n")
    result = carrier("character", "validate", path)
    assert result.returncode == 0 and "did you mean `topics`?" in result.stdout
    strict = carrier("character", "validate", "--strict", "--json", path)
    assert strict.returncode == 2
    [report] = json.loads(strict.stdout)
    assert report["errors"][0]["line"] == 2 and report["errors"][0]["path"] == "topcs"


def test_new_list_show(tmp_path: Path) -> None:
    result = carrier("character", "new", "Ada Lovelace")
    assert result.returncode == 0, result.stderr
    created = Path("characters/ada-lovelace.yaml")
    assert created.is_file()
    assert carrier("character", "new", "Ada Lovelace").returncode == 2
    assert carrier("character", "validate", created).returncode == 0

    listed = json.loads(carrier("character", "list", "--json").stdout)
    names = {(e["name"], e["source"]) for e in listed}
    [captain] = [e for e in listed if e["name"] == "captain"]
    assert captain["character"] == "Captain Brannock" and captain["status"] == "ok"
    assert {
        ("ada-lovelace", "./characters"),
        ("carrier", "built-in"),
        ("captain", "built-in"),
    } <= names

    shown = carrier("character", "show", "ada-lovelace", "--json")
    assert shown.returncode == 0
    data = json.loads(shown.stdout)
    assert data["name"] == "Ada Lovelace" and data["id"]
    pretty = carrier("character", "show", "captain")
    assert pretty.returncode == 0 and "Captain Brannock" in pretty.stdout
    default = carrier("character", "show")
    assert default.returncode == 0 and "Carrier" in default.stdout

    missing = carrier("character", "show", "ghost")
    assert missing.returncode == 2 and "No character named 'ghost'" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_show_broken_file_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: [x]\n")
    result = carrier("character", "show", path)
    assert result.returncode == 2
    assert f"{path}:1:1: name: expected text" in result.stderr.replace("\n  ", " ")
