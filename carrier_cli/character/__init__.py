"""Character files: the Carrier YAML format, ElizaOS import, validation and lookup.

Import cost matters (the CLI imports this inside commands only), and everything here is
usable as a library: `resolve_character(None)` gives the configured default character.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from carrier_cli._lazy import lazy_exports

# Imported on first use (carrier_cli/_lazy.py): `carrier chat` needs the loader and the
# model, not YAML dumping, ElizaOS import or the scaffold (dump.py alone cost ~5 ms and
# pulled the model in before anything asked for it).
_EXPORTS: dict[str, str] = {
    "default_character_path": "carrier_cli.character.dump",
    "dump_character_yaml": "carrier_cli.character.dump",
    "scaffold_character_yaml": "carrier_cli.character.dump",
    "BUILTIN_DIR": "carrier_cli.character.loader",
    "CharacterEntry": "carrier_cli.character.loader",
    "ValidationReport": "carrier_cli.character.loader",
    "character_files": "carrier_cli.character.loader",
    "find_character": "carrier_cli.character.loader",
    "import_eliza": "carrier_cli.character.loader",
    "list_characters": "carrier_cli.character.loader",
    "load_character": "carrier_cli.character.loader",
    "resolve_character": "carrier_cli.character.loader",
    "search_dirs": "carrier_cli.character.loader",
    "validate_character_file": "carrier_cli.character.loader",
    "Mark": "carrier_cli.character.marks",
    "Problem": "carrier_cli.character.marks",
    "Character": "carrier_cli.character.model",
    "Clients": "carrier_cli.character.model",
    "DiscordClientSettings": "carrier_cli.character.model",
    "ExampleMessage": "carrier_cli.character.model",
    "InstagramClientSettings": "carrier_cli.character.model",
    "ModelSettings": "carrier_cli.character.model",
    "Style": "carrier_cli.character.model",
}

__all__ = [
    "BUILTIN_DIR",
    "Character",
    "CharacterEntry",
    "Clients",
    "DiscordClientSettings",
    "ExampleMessage",
    "InstagramClientSettings",
    "Mark",
    "ModelSettings",
    "Problem",
    "Style",
    "ValidationReport",
    "character_files",
    "default_character_path",
    "dump_character_yaml",
    "find_character",
    "import_eliza",
    "list_characters",
    "load_character",
    "resolve_character",
    "scaffold_character_yaml",
    "search_dirs",
    "validate_character_file",
]


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)

if TYPE_CHECKING:
    from carrier_cli.character.dump import (
        default_character_path,
        dump_character_yaml,
        scaffold_character_yaml,
    )
    from carrier_cli.character.loader import (
        BUILTIN_DIR,
        CharacterEntry,
        ValidationReport,
        character_files,
        find_character,
        import_eliza,
        list_characters,
        load_character,
        resolve_character,
        search_dirs,
        validate_character_file,
    )
    from carrier_cli.character.marks import Mark, Problem
    from carrier_cli.character.model import (
        Character,
        Clients,
        DiscordClientSettings,
        ExampleMessage,
        InstagramClientSettings,
        ModelSettings,
        Style,
    )
