"""Finding characters by name: ./characters, then the user directory, then built-in."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from carrier_cli.character import (
    BUILTIN_DIR,
    find_character,
    list_characters,
    resolve_character,
    scaffold_character_yaml,
    validate_character_file,
)
from carrier_cli.errors import InputError
from carrier_cli.paths import carrier_paths
from carrier_cli.state import STATE
from tests.character.conftest import REPO

Write = Callable[[str, str], Path]


@pytest.fixture(autouse=True)
def _fresh_settings() -> None:
    STATE._loaded.clear()


def test_default_is_the_builtin_carrier() -> None:
    c = resolve_character(None)
    assert c.name == "Carrier"
    assert c.source_path == (BUILTIN_DIR / "carrier.yaml").resolve()


def test_default_follows_the_character_setting(
    write: Write, monkeypatch: pytest.MonkeyPatch
) -> None:
    write("characters/ada.yaml", "name: Ada\n")
    monkeypatch.setenv("CARRIER_CHARACTER", "ada")
    assert resolve_character(None).name == "Ada"


def test_search_order_and_shadowing(write: Write) -> None:
    user_dir = carrier_paths().characters_dir
    user_dir.mkdir(parents=True)
    (user_dir / "carrier.yaml").write_text("name: User Carrier\n")
    (user_dir / "mine.character.json").write_text('{"name": "Mine", "bio": "x"}')
    assert resolve_character("carrier").name == "User Carrier"
    assert resolve_character("MINE").name == "Mine"
    write("characters/carrier.yml", "name: Local Carrier\n")
    assert resolve_character("carrier").name == "Local Carrier"

    entries = [(e.name, e.source, e.shadowed) for e in list_characters()]
    assert entries.index(("carrier", "./characters", False)) < entries.index(
        ("carrier", "user", True)
    )
    assert ("carrier", "built-in", True) in entries
    assert ("mine", "user", False) in entries
    assert ("captain", "built-in", False) in entries


def test_paths_work_and_missing_ones_are_input_errors(write: Write) -> None:
    path = write("somewhere/x.yaml", "name: X\n")
    assert resolve_character(str(path)).name == "X"
    assert find_character("somewhere/x.yaml") == Path("somewhere/x.yaml")
    with pytest.raises(InputError, match="does not exist"):
        resolve_character("somewhere/y.yaml")
    with pytest.raises(InputError, match="No character named 'ghost'") as caught:
        resolve_character("ghost")
    assert "carrier" in str(caught.value)  # lists what is available


@pytest.mark.parametrize("name", ["carrier.yaml", "captain.yaml"])
def test_examples_are_clean_and_shipped(name: str) -> None:
    example = REPO / "characters" / name
    report = validate_character_file(example)
    assert report.ok and report.warnings == [], [str(p) for p in report.problems]
    c = report.character
    assert c is not None
    assert len(c.bio) >= 5 and len(c.lore) >= 5 and len(c.message_examples) >= 5
    assert len(c.post_examples) >= 5 and len(c.topics) >= 5 and c.style.chat
    assert c.model.provider is None  # left to settings
    assert (BUILTIN_DIR / name).read_text() == example.read_text()


def test_readme_documents_every_field() -> None:
    from carrier_cli.character import Character

    readme = (REPO / "characters" / "README.md").read_text()
    for field in Character.model_fields:
        if field != "source_path":
            assert f"`{field}`" in readme, field
    assert "extends" in readme


def test_scaffold_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "new.yaml"
    path.write_text(scaffold_character_yaml('Zoë "Z" Ko', str(path)))
    report = validate_character_file(path)
    assert report.ok and report.warnings == [], [str(p) for p in report.problems]
    assert report.character is not None and report.character.name == 'Zoë "Z" Ko'
    assert report.character.message_examples[0][0].name == "{{user1}}"
