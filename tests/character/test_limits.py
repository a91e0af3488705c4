"""Size limits of character fields and files (README.md, "Character limits").

A 20 MB `name` used to validate and then cost 2 GB in `chat` and a 413 from the model
server. Each limit is checked where every loader passes (validation), and a problem names
the field path, the size found and the limit.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from carrier_cli.character import import_eliza, load_character, validate_character_file
from carrier_cli.character import model as m
from carrier_cli.character.marks import MAX_FILE_BYTES
from carrier_cli.errors import InputError
from tests.character.conftest import ELIZA_FIXTURES, REPO, SHARED_FIXTURES
from tests.character.test_hostile_files import assert_refused, carrier


def test_a_20_mb_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("name: " + "x" * 20_000_000 + "\n", encoding="utf-8")
    report = validate_character_file(path)
    assert [p.code for p in report.errors] == ["limit"]
    assert f"more than the {MAX_FILE_BYTES:,}" in report.errors[0].message
    assert_refused(carrier(["character", "validate", str(path)], tmp_path), path, "bytes")
    assert_refused(carrier(["chat", "--character", str(path)], tmp_path), path, "bytes")


def test_a_long_name_within_the_file_limit_is_refused_by_field(tmp_path: Path) -> None:
    path = tmp_path / "long.yaml"
    path.write_text("bio: [hi]\nname: " + "x" * 1_000_000 + "\n", encoding="utf-8")
    report = validate_character_file(path)
    [problem] = report.errors
    assert problem.path == "name" and problem.mark.line == 2
    assert "1,000,000 characters long, more than the limit of 100" in problem.message
    with pytest.raises(InputError, match=r"long\.yaml:2:1: name: is 1,000,000 characters"):
        load_character(path)  # what `chat` and `run` use


def test_each_kind_of_limit_names_the_field_path(tmp_path: Path, write) -> None:  # type: ignore[no-untyped-def]
    data = {
        "name": "Ok",
        "bio": ["fine", "y" * (m.MAX_LINE + 1)],
        "topics": ["t"] * (m.MAX_LINES + 1),
        "style": {"chat": ["s" * (m.MAX_STYLE_LINE + 1)]},
        "message_examples": [[{"name": "a", "text": "hi"}] * (m.MAX_TURNS + 1)],
        "templates": {f"t{i}": "x" for i in range(m.MAX_TEMPLATES + 1)},
        "system": "s" * (m.MAX_LONG + 1),
        "clients": {"instagram": {"hashtags": ["h" * 101]}},
    }
    path = write("many.json", json.dumps(data, indent=1))
    found = {p.path: p.message for p in validate_character_file(path).errors}
    assert set(found) == {
        "bio[1]",
        "topics",
        "style.chat[0]",
        "message_examples[0]",
        "templates",
        "system",
        "clients.instagram.hashtags[0]",
    }, found
    assert "4,001 characters long, more than the limit of 4,000" in found["bio[1]"]
    assert "has 501 items, more than the limit of 500" in found["topics"]
    assert "has 51 items, more than the limit of 50" in found["message_examples[0]"]
    assert "has 51 entries, more than the limit of 50" in found["templates"]


def test_at_the_limits_a_character_is_valid(tmp_path: Path, write) -> None:  # type: ignore[no-untyped-def]
    data = {
        "name": "n" * m.MAX_NAME,
        "bio": ["b" * m.MAX_LINE] * 10,
        "topics": [f"t{i}" for i in range(m.MAX_LINES)],
        "message_examples": [[{"name": "a", "text": "hi"}] * m.MAX_TURNS] * 4,
        "knowledge": ["k" * m.MAX_LONG],
    }
    assert validate_character_file(write("edge.json", json.dumps(data))).ok


def test_elizaos_import_reports_limits_at_the_original_path(tmp_path: Path, write) -> None:  # type: ignore[no-untyped-def]
    data = {
        "name": "Eliza",
        "modelProvider": "openai",
        "clients": [],
        "plugins": [],
        "messageExamples": [],
        "postExamples": ["p" * (m.MAX_LINE + 1)],
    }
    path = write("eliza.character.json", json.dumps(data, indent=2))
    with pytest.raises(InputError, match=r"postExamples\[0\]: is 4,001 characters long"):
        import_eliza(path)


def test_the_shipped_and_elizaos_characters_are_within_the_limits() -> None:
    files = [
        *sorted((REPO / "characters").glob("*.yaml")),
        *sorted((REPO / "carrier_cli" / "data" / "characters").glob("*.yaml")),
        *sorted(SHARED_FIXTURES.glob("*.json")),
        *sorted(ELIZA_FIXTURES.glob("*.json")),
    ]
    assert len(files) >= 10
    for file in files:
        report = validate_character_file(file)
        assert report.ok, [str(p) for p in report.errors]


def test_readme_lists_the_limits() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Character limits", 1)[1].split("\n## ", 1)[0]
    for name in dir(m):
        if re.fullmatch(r"MAX_[A-Z_]+", name) and name != "MAX_PATH":
            assert f"{getattr(m, name):,}" in section, name
