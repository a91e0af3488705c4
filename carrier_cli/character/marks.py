"""Read a YAML or JSON document and remember where every key and item sits in the file.

pydantic reports errors by field path; operators need file:line:column. Composing the
YAML node tree (JSON is YAML) and walking it gives a position for every path, so each
problem can point at the offending key instead of at "somewhere in the file".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carrier_cli.safe_yaml import Limits, YamlLimitError

KeyPath = tuple[str | int, ...]

# A character file larger than this is refused before it is read (README: character limits).
MAX_FILE_BYTES = 2 * 1024 * 1024
# What a character document may expand to; the defaults of carrier_cli.safe_yaml.
LIMITS = Limits(max_chars=MAX_FILE_BYTES)


@dataclass(frozen=True)
class Mark:
    file: Path
    line: int  # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass
class Problem:
    """One finding about a character file. `path` is the field path inside the file."""

    mark: Mark
    path: str
    message: str
    severity: str = "error"  # "error" | "warning"
    # Machine-readable kind: syntax, type, unknown-key, unknown-template, secret,
    # eliza-dropped, duplicate-key, missing-knowledge, extends, limit (file too big, too
    # deep, an alias bomb or a recursive alias: see carrier_cli.safe_yaml).
    code: str = "type"

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.mark}: {self.severity}: {where}{self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": str(self.mark.file),
            "line": self.mark.line,
            "column": self.mark.column,
            "path": self.path,
            "severity": self.severity,
            "message": self.message,
            "code": self.code,
        }


@dataclass
class Document:
    """Plain data of a file plus the position of each key path (keys point at the key)."""

    file: Path
    data: Any
    marks: dict[KeyPath, Mark] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def mark_for(self, path: KeyPath) -> Mark:
        """Position of `path`, or of its nearest ancestor that has one (missing fields)."""
        for end in range(len(path), -1, -1):
            found = self.marks.get(path[:end])
            if found is not None:
                return found
        return Mark(self.file, 1, 1)


def format_path(path: KeyPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def read_document(path: Path) -> Document:
    """Parse `path`; syntax errors become problems (never exceptions) with line:column."""
    try:
        # Refused before reading: a 20 MB character reached the model as a 413 and cost 2 GB.
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return _failed(
                path,
                1,
                1,
                f"the file is {size:,} bytes, more than the {MAX_FILE_BYTES:,} a character "
                "file may be; move long texts into knowledge documents",
                code="limit",
            )
        text = path.read_text(encoding="utf-8-sig")  # tolerate a byte-order mark
    except UnicodeDecodeError as exc:
        from carrier_cli.textfile import not_utf8

        return _failed(path, 1, 1, f"file is {not_utf8(exc)}")
    except OSError as exc:
        return _failed(path, 1, 1, f"cannot read the file ({exc.strerror or exc})")
    return parse_text(text, path)


def parse_text(text: str, path: Path) -> Document:
    """Parse `text` (read from `path`) within `safe_yaml`'s limits; every failure, a limit
    included, becomes a problem with line:column rather than an exception."""
    import yaml

    from carrier_cli import safe_yaml

    looks_json = path.suffix.lower() == ".json" or text.lstrip().startswith("{")
    # JSON allows tab indentation, YAML does not. Tabs cannot occur raw inside JSON strings,
    # so replacing them one-for-one keeps every column while letting YAML read the file.
    yaml_text = text.replace("\t", " ") if looks_json else text
    try:
        safe_yaml.check_size(text, path, LIMITS)
    except safe_yaml.YamlLimitError as exc:
        return _over_limit(path, exc)
    loader = safe_yaml.make_loader(yaml_text)
    try:
        node = safe_yaml.compose(loader, path, LIMITS)
        if node is None:
            return Document(path, None)
        doc = Document(path, None)
        # The composed graph is bounded (depth, expanded size) and free of cycles, so this
        # recursive walk is too.
        doc.data = _build(node, (), doc, loader)
        return doc
    except safe_yaml.YamlLimitError as exc:
        return _over_limit(path, exc)
    except yaml.MarkedYAMLError as exc:
        if looks_json:
            return _parse_json(text, path)
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or "syntax error"
        context = ""
        if exc.context:
            where = exc.context_mark
            started = (
                f" started at line {where.line + 1}, column {where.column + 1}"
                if where is not None and where is not mark
                else ""
            )
            context = f" ({exc.context}{started})"
        return _failed(path, line, col, f"invalid YAML: {problem}{context}")
    except yaml.YAMLError as exc:
        return _failed(path, 1, 1, f"invalid YAML: {exc}")
    finally:
        loader.dispose()


def _parse_json(text: str, path: Path) -> Document:
    """JSON that YAML could not read: Python's parser, held to the same depth limit."""
    from carrier_cli import safe_yaml

    try:
        data = json.loads(text)
    except json.JSONDecodeError as jexc:
        return _failed(path, jexc.lineno, jexc.colno, f"invalid JSON: {jexc.msg}")
    except RecursionError:
        return _over_limit(path, safe_yaml.too_deep(path, LIMITS))
    try:
        safe_yaml.check_depth(data, path, LIMITS)
    except safe_yaml.YamlLimitError as exc:
        return _over_limit(path, exc)
    return Document(path, data)


def _failed(path: Path, line: int, col: int, message: str, code: str = "syntax") -> Document:
    return Document(path, None, problems=[Problem(Mark(path, line, col), "", message, code=code)])


def _over_limit(path: Path, exc: YamlLimitError) -> Document:
    return _failed(path, exc.line, exc.column, exc.reason, code="limit")


def _mark(doc: Document, node: Any) -> Mark:
    return Mark(doc.file, node.start_mark.line + 1, node.start_mark.column + 1)


def _build(node: Any, path: KeyPath, doc: Document, loader: Any) -> Any:
    import yaml

    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves `<<: *anchor` merges
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _join_surrogates(loader.construct_object(key_node, deep=True))
            key_mark = _mark(doc, key_node)
            if not isinstance(key, str):
                doc.problems.append(
                    Problem(
                        key_mark,
                        format_path(path),
                        f"key {key!r} is not text; quote it (YAML reads yes/no/on/off "
                        "and numbers as other types)",
                    )
                )
                key = str(key)
            child = (*path, key)
            if key in result:
                doc.problems.append(
                    Problem(
                        key_mark,
                        format_path(child),
                        "duplicate key; the later value wins",
                        severity="warning",
                    )
                )
            doc.marks[child] = key_mark
            result[key] = _build(value_node, child, doc, loader)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            child = (*path, index)
            doc.marks[child] = _mark(doc, item)
            items.append(_build(item, child, doc, loader))
        return items
    return _join_surrogates(loader.construct_object(node, deep=True))


_SURROGATE = re.compile("[\ud800-\udfff]")


def _join_surrogates(value: Any) -> Any:
    """JSON writes emoji as escaped UTF-16 pairs ("\\ud83d\\ude00"); YAML decodes each half
    separately, leaving unprintable lone surrogates. Recombine them like a JSON parser."""
    if isinstance(value, str) and _SURROGATE.search(value):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value
