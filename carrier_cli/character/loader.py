"""Load, validate and find character files.

Validation collects every problem of a file (and of the files it `extends`) before
reporting, each with file:line:column, so one run of `carrier character validate` is
enough to fix a file rather than one error per run.
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carrier_cli.character.marks import Document, KeyPath, Mark, Problem, format_path, read_document
from carrier_cli.errors import InputError

if TYPE_CHECKING:
    from carrier_cli.character.eliza import Conversion
    from carrier_cli.character.model import Character

# The checks, the ElizaOS converter and the model (whose pydantic schema is built when it
# is imported, ~25 ms) are imported by the functions that validate a file: finding one by
# name, or finding there is none (`carrier memory search --character NAME` for an agent
# without a file), needs none of them.

log = logging.getLogger("carrier.character")

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "data" / "characters"
SUFFIXES = (".yaml", ".yml", ".json")
_PATHLIKE_KNOWLEDGE = re.compile(r"^[\w./~\\-]+(\.(md|txt|pdf|json|ya?ml|csv|html?|rst)|/)$", re.I)


@dataclass
class ValidationReport:
    file: Path
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    character: Character | None = None
    # ElizaOS fields that were not carried over, as "path: reason" (also among warnings).
    dropped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def problems(self) -> list[Problem]:
        return sorted(
            [*self.errors, *self.warnings],
            key=lambda p: (str(p.mark.file), p.mark.line, p.mark.column),
        )

    def add(self, problem: Problem) -> None:
        (self.errors if problem.severity == "error" else self.warnings).append(problem)

    def require(self) -> Character:
        """The character, or InputError listing every error with file:line:column."""
        return _character_or_raise(self)


@dataclass
class _Layer:
    """One file's contribution: its data in Carrier layout and how to locate its keys."""

    doc: Document
    data: dict[str, Any]
    conversion: Conversion | None = None

    def original(self, path: KeyPath) -> KeyPath:
        return self.conversion.original(path) if self.conversion else path

    def locate(self, path: KeyPath) -> tuple[Mark, str]:
        original = self.original(path)
        return self.doc.mark_for(original), format_path(original)


def _has(data: Any, path: KeyPath) -> bool:
    for part in path:
        if isinstance(data, dict):
            if part not in data:
                return False
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return False
    return True


class _Locator:
    def __init__(self, layers: list[_Layer]) -> None:
        self.layers = layers  # parents first, the file itself last

    def locate(self, path: KeyPath) -> tuple[Mark, str]:
        for end in range(len(path), -1, -1):
            for layer in reversed(self.layers):
                if _has(layer.data, path[:end]):
                    mark = layer.doc.mark_for(layer.original(path[:end]))
                    return mark, format_path(layer.original(path))
        return self.layers[-1].locate(path)


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`extends` semantics: mappings merge key by key, everything else (lists too) replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _absolutise_paths(layer: _Layer) -> None:
    """A parent's relative knowledge/media paths stay relative to the parent's file."""
    base = layer.doc.file.parent
    knowledge = layer.data.get("knowledge")
    if isinstance(knowledge, list):
        for index, entry in enumerate(knowledge):
            if isinstance(entry, str) and _PATHLIKE_KNOWLEDGE.match(entry.strip()):
                candidate = Path(entry).expanduser()
                if not candidate.is_absolute() and (base / candidate).exists():
                    knowledge[index] = str((base / candidate).resolve())
    instagram = (
        (layer.data.get("clients") or {}).get("instagram")
        if isinstance(layer.data.get("clients"), dict)
        else None
    )
    if isinstance(instagram, dict) and isinstance(instagram.get("media_folder"), str):
        folder = Path(instagram["media_folder"]).expanduser()
        if not folder.is_absolute():
            instagram["media_folder"] = str((base / folder).resolve())


def _load_layers(path: Path, chain: list[Path], report: ValidationReport) -> list[_Layer] | None:
    from carrier_cli.character import checks
    from carrier_cli.character.eliza import convert, is_eliza

    doc = read_document(path)
    for problem in doc.problems:
        report.add(problem)
    if doc.data is None:
        if not doc.problems:
            report.add(
                Problem(
                    Mark(path, 1, 1),
                    "",
                    "the file is empty; a character needs at "
                    "least `name` (try `carrier character new NAME`)",
                )
            )
        return None
    if any(p.severity == "error" for p in doc.problems):
        return None
    if not isinstance(doc.data, dict):
        found = checks.describe(doc.data)
        report.add(
            Problem(
                Mark(path, 1, 1),
                "",
                f"expected a mapping of field: value at the top level, found {found}",
            )
        )
        return None
    layer = _Layer(doc, doc.data)
    if is_eliza(doc.data):
        layer.conversion = convert(doc.data)
        layer.data = layer.conversion.data

        def not_carried(old: KeyPath, dropped: str, message: str, code: str) -> None:
            where = format_path(old)
            report.dropped.append(f"{where}: {dropped}")
            report.add(Problem(doc.mark_for(old), where, message, "warning", code))

        for old, why in layer.conversion.dropped:
            not_carried(old, why, f"ElizaOS field not carried over: {why}", "eliza-dropped")
        for old, value in layer.conversion.secrets:
            from carrier_cli.redact import register_secret

            register_secret(value)
            message = "secret not copied. " + checks.secret_hint(old)
            not_carried(old, "secret, not copied", message, "secret")

    layers: list[_Layer] = []
    if "extends" in layer.data:
        layers = _load_parents(layer, path, chain, report)
    layers.append(layer)
    return layers


def _load_parents(
    layer: _Layer, path: Path, chain: list[Path], report: ValidationReport
) -> list[_Layer]:
    from carrier_cli.character import checks

    raw = layer.data.pop("extends")
    refs: list[tuple[KeyPath, Any]]
    if isinstance(raw, list):
        refs = [(("extends", i), ref) for i, ref in enumerate(raw)]
    else:
        refs = [(("extends",), raw)]
    layers: list[_Layer] = []
    for key_path, ref in refs:
        mark, where = layer.locate(key_path)
        if not isinstance(ref, str) or not ref.strip():
            report.add(
                Problem(
                    mark,
                    where,
                    f"expected a character file path or name, found {checks.describe(ref)}",
                    code="extends",
                )
            )
            continue
        visiting = [*chain, path.resolve()]
        try:
            parent = _find_parent(ref.strip(), path.parent, visiting)
        except InputError as exc:
            report.add(Problem(mark, where, exc.message, code="extends"))
            continue
        if parent in visiting:
            cycle = " -> ".join(p.name for p in [*visiting[visiting.index(parent) :], parent])
            report.add(
                Problem(
                    mark,
                    where,
                    f"extends cycle: {cycle}; remove one of the `extends` entries",
                    code="extends",
                )
            )
            continue
        parent_layers = _load_layers(parent, visiting, report)
        if parent_layers:
            for parent_layer in parent_layers:
                _absolutise_paths(parent_layer)
            layers.extend(parent_layers)
    return layers


def _find_parent(ref: str, base: Path, skip: list[Path]) -> Path:
    if _is_path_like(ref):
        candidate = Path(ref).expanduser()
        candidate = candidate if candidate.is_absolute() else base / candidate
        if not candidate.is_file():
            raise InputError(f"extends: {candidate} does not exist")
        return candidate.resolve()
    # A sibling file by that name first, then the usual lookup. Files already being loaded
    # are skipped, so ./characters/carrier.yaml can say `extends: carrier` to build on the
    # built-in character of the same name.
    for suffix in SUFFIXES:
        for stem in (ref, f"{ref}.character"):
            sibling = (base / f"{stem}{suffix}").resolve()
            if sibling.is_file() and sibling not in skip:
                return sibling
    for entry in list_characters():
        if entry.name.lower() == ref.lower() and entry.path.resolve() not in skip:
            return entry.path.resolve()
    return find_character(ref).resolve()  # raises the usual "no character named" error


def validate_character_file(path: Path, *, strict: bool = False) -> ValidationReport:
    """Every problem in one file; `strict` turns warnings (unknown keys...) into errors."""
    path = Path(path)
    report = ValidationReport(file=path)
    if not path.is_file():
        report.add(
            Problem(
                Mark(path, 1, 1), "", "file does not exist" if not path.exists() else "not a file"
            )
        )
        return report
    layers = _load_layers(path, [], report)
    if layers is not None:
        _validate_layers(layers, path, report)
    if strict:
        for warning in report.warnings:
            warning.severity = "error"
        report.errors.extend(report.warnings)
        report.warnings = []
        if report.errors:
            report.character = None
    return report


def _validate_layers(layers: list[_Layer], path: Path, report: ValidationReport) -> None:
    from pydantic import ValidationError

    from carrier_cli.character import checks
    from carrier_cli.character.model import Character

    merged: dict[str, Any] = {}
    for layer in layers:
        merged = _deep_merge(merged, layer.data)
    locator = _Locator(layers)

    unknown = list(checks.find_unknown_keys(merged))
    for key_path, message in unknown:
        mark, where = locator.locate(key_path)
        report.add(Problem(mark, where, message, "warning", "unknown-key"))
    for key_path, _ in sorted(unknown, key=lambda item: -len(item[0])):
        checks.remove_path(merged, key_path)
    for key_path, message in checks.unknown_template_names(merged):
        mark, where = locator.locate(key_path)
        report.add(Problem(mark, where, message, "warning", "unknown-template"))
    for key_path, value in checks.find_secrets(merged):
        from carrier_cli.redact import register_secret

        register_secret(value)
        mark, where = locator.locate(key_path)
        report.add(Problem(mark, where, checks.secret_hint(key_path), "warning", "secret"))

    try:
        character = Character.model_validate(merged)
    except ValidationError as exc:
        for error in exc.errors():
            mark, where = locator.locate(tuple(error["loc"]))
            report.add(Problem(mark, where, checks.explain(error)))
        return
    character.source_path = path.resolve()
    provider = character.model.provider
    if provider and checks.supported_provider(provider) is None:
        mark, where = locator.locate(("model", "provider"))
        report.add(
            Problem(
                mark,
                where,
                f"'{provider}' is not a model provider Carrier supports; use one of "
                f"{', '.join(checks.known_providers())}, or leave it unset to use whichever "
                "provider has a key configured",
                code="provider",
            )
        )
    for index, entry in enumerate(character.knowledge):
        if _PATHLIKE_KNOWLEDGE.match(entry.strip()) and character.existing_path(entry) is None:
            mark, where = locator.locate(("knowledge", index))
            report.add(
                Problem(
                    mark,
                    where,
                    f"looks like a file path but "
                    f"{character.resolve_path(entry)} does not exist; it will be used "
                    "as inline text",
                    "warning",
                    "missing-knowledge",
                )
            )
    if not report.errors:
        report.character = character


def load_character(path: Path) -> Character:
    """The validated character in `path` (YAML, JSON, or an ElizaOS file). Warnings are
    logged; any error raises InputError listing every problem with file:line:column."""
    path = Path(path)
    if not path.exists():
        raise InputError(
            f"Character file {path} does not exist.",
            hint="Check the path, or list the available characters with `carrier character list`.",
        )
    report = validate_character_file(path)
    for warning in report.warnings:
        # Dropped ElizaOS fields are expected on every load of such a file: not alarming.
        log.log(logging.INFO if warning.code == "eliza-dropped" else logging.WARNING, "%s", warning)
    return _character_or_raise(report)


def _character_or_raise(report: ValidationReport) -> Character:
    if report.errors or report.character is None:
        count = len(report.errors)
        ordered = sorted(
            report.errors, key=lambda p: (str(p.mark.file), p.mark.line, p.mark.column)
        )
        listed = "; ".join(
            f"{p.mark}: {p.path + ': ' if p.path else ''}{p.message}" for p in ordered
        )
        raise InputError(
            f"Character file {report.file} has {count} problem{'s' if count != 1 else ''}: "
            f"{listed}.",
            hint=f"Fix them and check with `carrier character validate {report.file}`.",
        )
    return report.character


def import_eliza(path: Path) -> tuple[Character, list[str]]:
    """Convert an ElizaOS (0.x or v1) character; also returns what was not carried over
    ("path: reason" strings, secrets included by name only)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist.", hint="Check the path of the ElizaOS file.")
    report = validate_character_file(path)
    return _character_or_raise(report), report.dropped


# --- finding characters by name -----------------------------------------------------------


@dataclass
class CharacterEntry:
    name: str  # what `--character` accepts
    path: Path
    source: str  # "./characters" | "user" | "built-in"
    shadowed: bool = False  # an earlier directory has a character of the same name

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "source": self.source,
            "shadowed": self.shadowed,
        }


def search_dirs() -> list[tuple[str, Path]]:
    from carrier_cli.paths import carrier_paths

    return [
        ("./characters", Path.cwd() / "characters"),
        ("user", carrier_paths().characters_dir),
        ("built-in", BUILTIN_DIR),
    ]


def entry_name(path: Path) -> str:
    """`trump.character.json` -> `trump`; `carrier.yaml` -> `carrier`."""
    stem = path.stem
    return stem.removesuffix(".character")


def list_characters() -> list[CharacterEntry]:
    entries: list[CharacterEntry] = []
    seen: set[str] = set()
    for source, directory in search_dirs():
        if not directory.is_dir():
            continue
        for file in sorted(directory.iterdir()):
            if file.suffix.lower() not in SUFFIXES or not file.is_file():
                continue
            name = entry_name(file)
            key = name.lower()
            entries.append(CharacterEntry(name, file, source, shadowed=key in seen))
            seen.add(key)
    return entries


def character_files(paths: list[Path]) -> list[Path]:
    """Files as given; a directory stands for every character file in it (by suffix,
    sorted), as `carrier character validate DIR` takes it."""
    files: list[Path] = []
    for item in paths:
        if item.is_dir():
            files += sorted(p for p in item.iterdir() if p.suffix.lower() in SUFFIXES)
        else:
            files.append(item)
    return files


def _is_path_like(value: str) -> bool:
    return (
        "/" in value
        or "\\" in value
        or value.startswith(("~", "."))
        or value.lower().endswith(SUFFIXES)
    )


def find_character(name_or_path: str) -> Path:
    """The file for a `--character` value: an existing path, else a name looked up in
    ./characters, then the user characters directory, then the built-in ones."""
    value = name_or_path.strip()
    if not value:
        raise InputError("The character name is empty.", hint="Give a name or a file path.")
    candidate = Path(value).expanduser()
    if candidate.is_file():
        return candidate
    if _is_path_like(value):
        raise InputError(
            f"Character file {value} does not exist.",
            hint="Check the path, or list the available characters with `carrier character list`.",
        )
    for entry in list_characters():
        if entry.name.lower() == value.lower():
            return entry.path
    names = sorted({e.name for e in list_characters()})
    raise InputError(
        f"No character named '{value}' in ./characters, the user characters directory or the "
        "built-in characters.",
        hint=f"Available: {', '.join(names) or 'none'}. Give a file path, or create one with "
        f"`carrier character new {value}`.",
    )


def resolve_character(name_or_path: str | None = None) -> Character:
    """`--character` value -> Character. None means the `character` setting (default
    "carrier", the built-in assistant)."""
    if name_or_path is None:
        from carrier_cli.state import STATE

        name_or_path = STATE.settings().settings.character
    return load_character(find_character(name_or_path))
