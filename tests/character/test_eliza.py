"""ElizaOS character files (0.x fixtures from the ElizaOS repository, and v1) load and import."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from carrier_cli.character import (
    Character,
    dump_character_yaml,
    import_eliza,
    load_character,
    validate_character_file,
)
from tests.character.conftest import ELIZA_FIXTURES, SHARED_FIXTURES

Write = Callable[[str, str], Path]
FIXTURES = sorted(ELIZA_FIXTURES.glob("*.character.json"))


def test_all_six_fixtures_are_present() -> None:
    assert len(FIXTURES) == 6
    if SHARED_FIXTURES.is_dir():  # the copies are the shared originals, unchanged
        for fixture in FIXTURES:
            assert fixture.read_bytes() == (SHARED_FIXTURES / fixture.name).read_bytes()


def _same(a: Character, b: Character) -> bool:
    return a.model_dump() == b.model_dump()


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.name)
def test_fixture_loads_imports_and_round_trips(fixture: Path, tmp_path: Path) -> None:
    raw = json.loads(fixture.read_text())
    loaded = load_character(fixture)
    assert loaded.name == raw["name"]
    assert loaded.bio == [b for b in raw["bio"] if b.strip()]
    assert loaded.lore == raw["lore"]
    assert loaded.style.all == raw["style"]["all"]
    assert loaded.post_examples == raw["postExamples"]
    assert len(loaded.message_examples) == len(raw["messageExamples"])
    first = raw["messageExamples"][0][0]
    assert loaded.message_examples[0][0].name == first["user"]
    assert loaded.message_examples[0][0].text == first["content"]["text"]
    if raw["modelProvider"] in ("openai", "anthropic"):
        assert loaded.model.provider == raw["modelProvider"]
    else:  # groq, eternalai: Carrier cannot serve them, so the runtime picks from the keys
        assert loaded.model.provider is None

    character, dropped = import_eliza(fixture)
    assert _same(character, loaded)
    assert any(d.startswith("settings.voice") for d in dropped)
    out = tmp_path / "imported.yaml"
    out.write_text(dump_character_yaml(character, header=["imported"]))
    report = validate_character_file(out)
    assert report.ok and report.warnings == [], [str(p) for p in report.problems]
    assert report.character is not None and _same(report.character, character)


def test_placeholders_and_actions_survive() -> None:
    sbf, _ = import_eliza(ELIZA_FIXTURES / "sbf.character.json")
    assert sbf.message_examples[0][0].name == "{{user1}}"
    assert sbf.message_examples[0][1].actions == ["SEND_SOL"]
    eternal, dropped = import_eliza(ELIZA_FIXTURES / "eternalai.character.json")
    assert eternal.system == "Roleplay and generate interesting on behalf of TrollDetective.Exe."
    assert any("twitter" in d for d in dropped)
    assert any(d.startswith("settings.secrets") for d in dropped)


def test_unsupported_provider_is_dropped_and_reported() -> None:
    character, dropped = import_eliza(ELIZA_FIXTURES / "cosmosHelper.character.json")
    assert character.model.provider is None
    assert any(d.startswith("modelProvider: model provider 'groq'") for d in dropped)


def test_dropped_fields_are_reported_with_positions() -> None:
    report = validate_character_file(ELIZA_FIXTURES / "c3po.character.json")
    spaces = [p for p in report.warnings if p.path == "twitterSpaces"]
    assert spaces and spaces[0].mark.line > 1 and "Twitter" in spaces[0].message
    sbf = validate_character_file(ELIZA_FIXTURES / "sbf.character.json")
    [plugin] = [p for p in sbf.warnings if p.path == "plugins[0]"]
    assert "@elizaos/plugin-solana" in plugin.message
    assert sbf.character is not None and sbf.character.plugins == []


ELIZA_0X = {
    "id": "8f0e7c1a-0000-0000-0000-000000000000",
    "name": "Eliza",
    "username": "eliza",
    "modelProvider": "Anthropic",
    "clients": ["discord"],
    "plugins": [],
    "settings": {
        "model": "claude-3-5-sonnet",
        "embeddingModel": "text-embedding-3-small",
        "modelConfig": {"temperature": 0.4, "maxOutputTokens": 2048, "frequency_penalty": 0.1},
        "secrets": {"OPENAI_API_KEY": "sk-abcdefghijklmnopqrstuvwxyz0123456789"},
        "voice": {"model": "x"},
        "chains": {"evm": ["base"]},
    },
    "clientConfig": {
        "discord": {
            "shouldIgnoreBotMessages": False,
            "shouldRespondOnlyToMentions": True,
            "shouldIgnoreDirectMessages": True,
            "isPartOfTeam": True,
        },
        "telegram": {"shouldIgnoreBotMessages": True},
    },
    "templates": {"messageHandlerTemplate": "{{agentName}} says hi to {{senderName}}"},
    "bio": "A single-string bio.",
    "lore": [],
    "knowledge": ["plain fact", {"path": "docs/a.md", "shared": True}, {"directory": "kb"}],
    "messageExamples": [
        [
            {"user": "{{user1}}", "content": {"text": "hi", "attachments": []}},
            {"user": "Eliza", "content": {"text": "hello", "action": "NONE"}},
        ]
    ],
    "postExamples": [],
    "topics": [""],
    "adjectives": [],
    "style": {"all": [], "chat": [], "post": []},
}


def test_0x_mapping(write: Write) -> None:
    path = write("eliza.character.json", json.dumps(ELIZA_0X, indent=2))
    character, dropped = import_eliza(path)
    assert character.model.provider == "anthropic"
    assert character.model.name == "claude-3-5-sonnet"
    assert character.model.embedding == "text-embedding-3-small"
    assert character.model.temperature == 0.4 and character.model.max_tokens == 2048
    discord = character.clients.discord
    assert (discord.ignore_bots, discord.respond_only_to_mentions, discord.ignore_dms) == (
        False,
        True,
        True,
    )
    assert character.bio == ["A single-string bio."]
    assert character.topics == []
    assert character.knowledge == ["plain fact", "docs/a.md", "kb"]
    assert character.message_examples[0][1].actions == ["NONE"]
    assert character.templates == ELIZA_0X["templates"]
    assert character.settings == {"chains": {"evm": ["base"]}}
    text = "\n".join(dropped)
    for expected in (
        "id:",
        "settings.voice",
        "settings.modelConfig.frequency_penalty",
        "clientConfig.discord.isPartOfTeam",
        "clientConfig.telegram",
        "settings.secrets.OPENAI_API_KEY",
        "messageExamples[0][0].content.attachments",
        "clients:",
    ):
        assert expected in text, expected
    dumped = dump_character_yaml(character, header=dropped)
    assert "sk-abcdef" not in dumped and "OPENAI_API_KEY" in dumped
    report = validate_character_file(path)
    [secret] = [p for p in report.warnings if p.path == "settings.secrets.OPENAI_API_KEY"]
    assert "carrier keys set openai" in secret.message and "sk-" not in str(secret)


def test_wrong_type_in_eliza_file_points_at_original_key(write: Write) -> None:
    data = dict(ELIZA_0X, messageExamples=[[{"user": "u", "content": {"text": 5}}]])
    path = write("e.json", json.dumps(data, indent=2))
    [problem] = validate_character_file(path).errors
    assert problem.path == "messageExamples[0][0].content.text"
    lines = path.read_text().splitlines()
    assert '"text": 5' in lines[problem.mark.line - 1]


V1 = {
    "name": "Nova",
    "username": "nova",
    "system": "You are Nova.",
    "bio": ["Nova is a v1 agent."],
    "messageExamples": [
        [
            {"name": "{{name1}}", "content": {"text": "hey"}},
            {"name": "Nova", "content": {"text": "hi!", "actions": ["REPLY"]}},
        ]
    ],
    "postExamples": ["a post"],
    "topics": ["space"],
    "plugins": ["@elizaos/plugin-sql", "carrier-weather"],
    "settings": {"secrets": {}, "avatar": "nova.png"},
    "secrets": {
        "DISCORD_API_TOKEN": "MTAxMjM0NTY3ODkwMTIzNDU2.GhIjKl.abcdefghijklmnopqrstuvwxyz12345"
    },
    "style": {"all": ["brief"]},
}


def test_v1_format(write: Write) -> None:
    path = write("nova.json", json.dumps(V1))
    character, dropped = import_eliza(path)
    assert character.message_examples[0][0].name == "{{name1}}"
    assert character.message_examples[0][1].actions == ["REPLY"]
    assert character.plugins == ["carrier-weather"]
    assert character.settings == {"avatar": "nova.png"}
    assert character.system == "You are Nova."
    assert any("secrets.DISCORD_API_TOKEN" in d for d in dropped)
    assert "MTAxMjM0" not in dump_character_yaml(character)
    report = validate_character_file(path)
    assert any("carrier keys set discord" in p.message for p in report.warnings)


def test_v1_yaml_with_only_name_and_bio(write: Write) -> None:
    c = load_character(write("min.yaml", "name: Min\nbio: short\n"))
    assert c.bio == ["short"]


def test_typo_in_eliza_file_gets_a_suggestion(write: Write) -> None:
    path = write("t.json", '{"name": "T", "modelProvider": "openai", "postExample": ["x"]}')
    [warning] = validate_character_file(path).warnings
    assert warning.path == "postExample" and "did you mean `postExamples`?" in warning.message
    strict = validate_character_file(path, strict=True)
    assert strict.character is None and len(strict.errors) == 1
