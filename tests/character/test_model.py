from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from carrier_cli.character import Character
from carrier_cli.memory.types import stable_id


def test_strings_become_lists_and_defaults_fill_in() -> None:
    c = Character(name="  Ada ", bio="one line", style={"all": "terse"})
    assert c.name == "Ada"
    assert c.bio == ["one line"]
    assert c.style.all == ["terse"]
    assert c.model.temperature == 0.7
    assert c.model.max_tokens == 1024
    assert c.clients.discord.ignore_bots is True
    assert c.clients.discord.respond_only_to_mentions is False
    assert c.clients.instagram.post_interval_minutes == 240


def test_id_is_stable_per_name() -> None:
    assert Character(name="Ada").id == stable_id("character", "Ada")
    assert Character(name="Ada").id != Character(name="Bob").id


def test_discord_ids_and_hashtags_are_normalised() -> None:
    c = Character(
        name="x",
        clients={
            "discord": {"allowed_channel_ids": [1234567890123, "55"]},
            "instagram": {"hashtags": ["#sea", " knots "]},
        },
    )
    assert c.clients.discord.allowed_channel_ids == ["1234567890123", "55"]
    assert c.clients.instagram.hashtags == ["sea", "knots"]


@pytest.mark.parametrize(
    "bad",
    [
        {"name": ""},
        {"name": "x", "oops": 1},
        {"name": "x", "model": {"temperature": 3}},
        {"name": "x", "clients": {"discord": {"token_key": "openai"}}},
    ],
)
def test_invalid_values_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Character.model_validate(bad)


def test_knowledge_splits_paths_from_inline_facts(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "faq.md").write_text("# FAQ")
    c = Character(
        name="x",
        knowledge=["docs/faq.md", "docs", "The sea is salty.", "x" * 5000, "missing.md"],
        source_path=tmp_path / "char.yaml",
    )
    assert c.knowledge_paths() == [tmp_path / "docs" / "faq.md", tmp_path / "docs"]
    assert c.knowledge_texts() == ["The sea is salty.", "x" * 5000, "missing.md"]


def test_source_path_is_not_dumped(tmp_path: Path) -> None:
    c = Character(name="x", source_path=tmp_path / "x.yaml")
    assert "source_path" not in c.model_dump()
    assert c.media_folder_path() is None
    c.clients.instagram.media_folder = "media"
    assert c.media_folder_path() == tmp_path / "media"


def test_empty_sections_count_as_unset() -> None:
    # `model:` followed only by commented-out lines is null in YAML.
    c = Character.model_validate(
        {
            "name": "x",
            "model": None,
            "style": None,
            "clients": {"discord": None},
            "templates": None,
            "settings": None,
            "message_examples": None,
            "bio": None,
        }
    )
    assert c.model.temperature == 0.7 and c.clients.discord.ignore_bots is True
    assert c.bio == [] and c.message_examples == [] and c.settings == {}


def test_dump_round_trips_the_examples_and_awkward_text(tmp_path: Path) -> None:
    from carrier_cli.character import dump_character_yaml, load_character
    from tests.character.conftest import REPO

    awkward = Character(
        name="yes",
        bio=["key: value inside", "multi\nline\n", "trailing space \nx", "  ", "# not a comment"],
        topics=["on", "null", "1.5"],
        message_examples=[[{"name": "{{user1}}", "text": "emoji 😀 and 'quotes' \"double\""}]],
        settings={"nested": {"list": [1, None, True]}},
    )
    for original in [
        load_character(REPO / "characters" / "carrier.yaml"),
        load_character(REPO / "characters" / "captain.yaml"),
        awkward,
    ]:
        path = tmp_path / "out.yaml"
        text = dump_character_yaml(original, header=["line one", "", "line\nthree"])
        path.write_text(text, encoding="utf-8")
        again = load_character(path)
        assert again.model_dump() == original.model_dump()
    assert "😀" in text and text.startswith("# line one\n#\n# line three\n")
