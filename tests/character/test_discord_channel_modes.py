"""`clients.discord.channels` as people write it in YAML (issue 17)."""

from __future__ import annotations

from pathlib import Path

import pytest

from carrier_cli.character.loader import load_character
from carrier_cli.errors import InputError


def write(tmp_path: Path, channels: str) -> Path:
    path = tmp_path / "bot.yaml"
    path.write_text("name: Bot\nclients:\n  discord:\n    channels:\n" + channels, encoding="utf-8")
    return path


def test_unquoted_off_and_the_short_form_are_modes(tmp_path: Path) -> None:
    character = load_character(
        write(
            tmp_path,
            "      off-topic: {mode: off}\n"  # YAML 1.1 reads `off` as false
            "      general: listen\n"
            '      "1234567890123456789": {mode: mentions}\n',
        )
    )
    modes = {k: v.mode for k, v in character.clients.discord.channels.items()}
    assert modes == {"off-topic": "off", "general": "listen", "1234567890123456789": "mentions"}


def test_an_unknown_mode_names_the_field_and_the_choices(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        load_character(write(tmp_path, "      general: {mode: loud}\n"))
    message = str(caught.value) + " " + str(getattr(caught.value, "hint", ""))
    assert "channels" in message and "general" in message and "listen" in message
