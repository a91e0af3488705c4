"""Character files built to exhaust Carrier: alias bombs, recursive aliases, deep nesting.

Each is refused as bad input (exit 2, the file named, no traceback) by every way a
character is read: `character validate`, `chat --character`, the loader `run` uses and
`character import`. Runs are subprocesses with their address space capped, so the bound
is checked for real and a regression fails the test instead of eating the machine.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_safe_yaml import MEMORY_LIMIT, alias_bomb

pytestmark = pytest.mark.slow


def bounded(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python ARGS` with the address space capped at MEMORY_LIMIT, isolated dirs."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    env = {
        **os.environ,
        "CARRIER_CONFIG_DIR": str(cwd / "config"),
        "CARRIER_DATA_DIR": str(cwd / "data"),
        "OPENAI_API_KEY": "",
        "ANTHROPIC_API_KEY": "",
    }
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
        stdin=subprocess.DEVNULL,
        preexec_fn=cap,
    )


def carrier(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return bounded(["-m", "carrier_cli", *args], cwd)


def shown(result: subprocess.CompletedProcess[str]) -> str:
    return " ".join((result.stdout + result.stderr).split())


def squeezed(text: str) -> str:
    """Without whitespace: error paragraphs are wrapped at 100 columns, paths included."""
    return "".join(text.split())


def assert_refused(result: subprocess.CompletedProcess[str], file: Path, words: str) -> None:
    text = shown(result)
    assert result.returncode == 2, text
    assert squeezed(f"{file}:") in squeezed(text) and words in text, text
    assert "Traceback" not in text and "Unexpected error" not in text


@pytest.fixture
def evil(tmp_path: Path) -> Path:
    path = tmp_path / "characters" / "evil.yaml"
    path.parent.mkdir()
    path.write_text("name: Evil\nbio: [hi]\n" + alias_bomb(), encoding="utf-8")
    return path


def test_alias_bomb_validate_refuses_within_a_second_and_the_memory_cap(
    evil: Path, tmp_path: Path
) -> None:
    assert_refused(carrier(["character", "validate", str(evil)], tmp_path), evil, "200,000")
    # The time of the refusal itself, without the interpreter's start-up.
    script = (
        "import time, sys\n"
        "from carrier_cli.character import validate_character_file\n"
        "t = time.perf_counter()\n"
        "report = validate_character_file(sys.argv[1])\n"
        "print(time.perf_counter() - t, len(report.errors), report.errors[0].code)\n"
    )
    result = bounded(["-c", script, str(evil)], tmp_path)
    assert result.returncode == 0, result.stderr
    seconds, errors, code = result.stdout.split()
    assert float(seconds) < 1.0 and errors == "1" and code == "limit"


def test_alias_bomb_chat_and_run_loader_refuse(evil: Path, tmp_path: Path) -> None:
    assert_refused(carrier(["chat", "--character", str(evil)], tmp_path), evil, "200,000")
    script = (
        "import sys\n"
        "from carrier_cli.character import resolve_character\n"
        "from carrier_cli.errors import InputError\n"
        "try:\n"
        "    resolve_character(sys.argv[1])\n"
        "except InputError as exc:\n"
        "    print(exc.exit_code, exc.message)\n"
    )
    result = bounded(["-c", script, "characters/evil.yaml"], tmp_path)
    assert result.stdout.startswith("2 ") and "evil.yaml:" in result.stdout, result.stderr


def test_recursive_alias_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("name: Loop\nbio: &r [*r]\n", encoding="utf-8")
    assert_refused(carrier(["character", "validate", str(path)], tmp_path), path, "inside the")
    assert_refused(carrier(["chat", "--character", str(path)], tmp_path), path, "inside the")


def test_json_nested_100k_deep_is_bad_input_for_validate_and_import(tmp_path: Path) -> None:
    path = tmp_path / "deep.character.json"
    depth = 100_000
    path.write_text('{"name": "x", "bio": ' + "[" * depth + "]" * depth + "}", encoding="utf-8")
    assert_refused(carrier(["character", "validate", str(path)], tmp_path), path, "nested")
    out = tmp_path / "out.yaml"
    result = carrier(["character", "import", str(path), "-o", str(out)], tmp_path)
    assert_refused(result, path, "nested")
    assert not out.exists()
    # ElizaOS layout, deep inside a field the importer converts.
    eliza = tmp_path / "deep-eliza.json"
    eliza.write_text(
        '{"name": "x", "modelProvider": "openai", "clients": [], "plugins": [], '
        '"settings": {"voice": ' + "[" * depth + "]" * depth + "}}",
        encoding="utf-8",
    )
    assert_refused(carrier(["character", "import", str(eliza)], tmp_path), eliza, "nested")


def test_json_that_only_python_parses_is_held_to_the_depth_limit(tmp_path: Path) -> None:
    # YAML refuses a key longer than 1,024 characters in a flow mapping; JSON does not, so
    # this file is read by the JSON fallback, which must apply the same depth limit.
    path = tmp_path / "longkey.json"
    key = "k" * 1100
    path.write_text(
        '{"name": "x", "settings": {"' + key + '": 1}, "bio": ' + "[" * 60 + "]" * 60 + "}",
        encoding="utf-8",
    )
    from carrier_cli.character import validate_character_file

    report = validate_character_file(path)
    assert [(p.code, p.message) for p in report.errors] == [
        ("limit", "values are nested more than 50 levels deep")
    ]
    path.write_text('{"name": "x", "settings": {"' + key + '": 1}}', encoding="utf-8")
    assert validate_character_file(path).ok


def test_modest_aliases_and_merges_still_work(tmp_path: Path) -> None:
    path = tmp_path / "aliases.yaml"
    path.write_text(
        "name: Al\n"
        "bio: &b [one, two]\n"
        "lore: *b\n"
        "model: &m {temperature: 0.3}\n"
        "clients:\n  discord: &d {ignore_bots: false}\n"
        "settings:\n  base: &s {a: 1, b: [x, y]}\n  more:\n    <<: *s\n    c: 3\n",
        encoding="utf-8",
    )
    from carrier_cli.character import load_character

    character = load_character(path)
    assert character.lore == ["one", "two"] and character.model.temperature == 0.3
    assert character.settings["more"] == {"a": 1, "b": ["x", "y"], "c": 3}
