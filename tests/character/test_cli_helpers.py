"""What `carrier character validate DIR` and `carrier character new NAME` take from the
character package (formerly written inside the CLI commands)."""

from __future__ import annotations

from pathlib import Path

from carrier_cli.character import character_files, default_character_path


def test_a_directory_stands_for_its_character_files_sorted(tmp_path: Path) -> None:
    for name in ("b.yml", "a.yaml", "c.JSON", "notes.txt", "d.md"):
        (tmp_path / name).write_text("x", encoding="utf-8")
    single = tmp_path / "elsewhere.txt"  # a file given by name is kept, whatever it is
    assert character_files([tmp_path, single]) == [
        tmp_path / "a.yaml",
        tmp_path / "b.yml",
        tmp_path / "c.JSON",
        single,
    ]


def test_the_default_path_of_a_new_character_is_its_slug() -> None:
    assert default_character_path("Ada Lovelace") == Path("characters/ada-lovelace.yaml")
    assert default_character_path("  R2-D2!! ") == Path("characters/r2-d2.yaml")
    assert default_character_path("日本") == Path("characters/character.yaml")
