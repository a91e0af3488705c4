"""Character files: the Carrier YAML format, ElizaOS import, validation and lookup.

Import cost matters (the CLI imports this inside commands only), and everything here is
usable as a library: `resolve_character(None)` gives the configured default character.
"""

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
