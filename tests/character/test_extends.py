from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from carrier_cli.character import load_character, validate_character_file
from carrier_cli.errors import InputError

Write = Callable[[str, str], Path]

PARENT = """\
name: Base
bio: [parent bio]
adjectives: [calm]
style:
  all: [plain]
  chat: [short]
model:
  provider: openai
  temperature: 0.2
settings:
  a: 1
  b: 2
knowledge: [notes/facts.md, inline fact]
clients:
  instagram:
    media_folder: media
"""


def test_child_overrides_field_by_field(write: Write, tmp_path: Path) -> None:
    write("base/notes/facts.md", "facts")
    write("base/base.yaml", PARENT)
    child = write(
        "child/child.yaml",
        "extends: ../base/base.yaml\nname: Child\nbio: [child bio]\n"
        "style:\n  chat: [chatty]\nmodel:\n  temperature: 0.9\nsettings:\n  b: 3\n",
    )
    c = load_character(child)
    assert c.name == "Child"
    assert c.bio == ["child bio"]  # lists replace
    assert c.adjectives == ["calm"]  # inherited
    assert c.style.all == ["plain"] and c.style.chat == ["chatty"]  # mappings merge
    assert c.model.provider == "openai" and c.model.temperature == 0.9
    assert c.settings == {"a": 1, "b": 3}
    # The parent's relative paths stay relative to the parent file.
    assert c.knowledge_paths() == [(tmp_path / "base" / "notes" / "facts.md").resolve()]
    assert c.media_folder_path() == (tmp_path / "base" / "media").resolve()
    assert c.source_path == child.resolve()


def test_extends_by_name_and_list(write: Write) -> None:
    write("characters/base.yaml", PARENT)
    write("characters/extra.yaml", "name: Extra\ntopics: [ships]\n")
    child = write("elsewhere/c.yaml", "extends: [base, extra]\nname: C\n")
    c = load_character(child)
    assert c.topics == ["ships"] and c.adjectives == ["calm"] and c.name == "C"


def test_extends_builtin_character(write: Write) -> None:
    c = load_character(write("c.yaml", "extends: carrier\nname: Carrier Jr\n"))
    assert c.name == "Carrier Jr" and len(c.bio) > 3


def test_cycle_is_detected(write: Write) -> None:
    a = write("a.yaml", "name: A\nextends: b.yaml\n")
    write("b.yaml", "name: B\nextends: a.yaml\n")
    report = validate_character_file(a)
    [problem] = report.errors
    assert "cycle" in problem.message and "a.yaml -> b.yaml -> a.yaml" in problem.message
    assert problem.mark.file.name == "b.yaml" and problem.mark.line == 2


def test_self_extension_is_a_cycle(write: Write) -> None:
    report = validate_character_file(write("a.yaml", "name: A\nextends: a.yaml\n"))
    assert "cycle" in report.errors[0].message


def test_errors_in_parent_point_into_the_parent(write: Write) -> None:
    write("p.yaml", "name: P\nmodel:\n  max_tokens: lots\n")
    report = validate_character_file(write("c.yaml", "extends: p.yaml\nname: C\n"))
    [problem] = report.errors
    assert problem.mark.file.name == "p.yaml" and problem.mark.line == 3


def test_missing_parent(write: Write) -> None:
    with pytest.raises(InputError, match=r"c.yaml:1:1: extends: .*nothere.yaml does not exist"):
        load_character(write("c.yaml", "extends: nothere.yaml\nname: C\n"))


def test_local_file_can_extend_the_builtin_of_the_same_name(write: Write) -> None:
    local = write("characters/carrier.yaml", "extends: carrier\nname: Carrier\nbio: [local]\n")
    c = load_character(local)
    assert c.bio == ["local"] and len(c.lore) > 3  # lore from the built-in


def test_extends_by_name_that_is_only_itself(write: Write) -> None:
    report = validate_character_file(write("characters/solo.yaml", "extends: solo\nname: S\n"))
    assert "extends cycle: solo.yaml -> solo.yaml" in report.errors[0].message
