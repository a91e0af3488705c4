"""The one way Carrier parses YAML (and JSON, which is YAML): bounded before anything is built.

`yaml.safe_load` is "safe" only against code execution. Aliases let a 1 KB file stand for
billions of values ("billion laughs": nine anchors of nine aliases each), an alias inside
its own anchor (`bio: &r [*r]`) makes a structure that contains itself, and `[[[[...]]]]`
100,000 deep overflows every recursive walk. Character files are shared and downloaded, so
each of those reached Carrier as gigabytes of memory, a segfault, a hang or a
`RecursionError` shown as "Unexpected error".

This module composes the node graph itself, without recursion, from the parser's events and
refuses a document while it is being read, as soon as it crosses a limit:

* `max_chars`   - the text is refused before parsing when it is longer;
* `max_depth`   - nesting, counted as if every alias were written out;
* `max_nodes`   - values in the document as if every alias were written out (the size
  anything walking the data will see, so an alias bomb is caught at its first level that
  exceeds it, long before it expands);
* `max_aliases` - `*alias` references;
* an alias inside the node it refers to (a recursive structure) is always refused.

Every refusal is a `YamlLimitError` (an InputError, exit 2) naming the file, the line and
column and the limit. Syntax errors stay `yaml.YAMLError`, as with PyYAML, so callers keep
their own wording for those. The caller gets the loader back so it can construct values
(and resolve `<<` merges) from the composed nodes exactly as PyYAML would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carrier_cli.errors import InputError


@dataclass(frozen=True)
class Limits:
    """What one YAML document may amount to. The defaults fit any hand-written file many
    times over (a character or config file uses a few hundred values, a handful of levels)."""

    max_chars: int = 2 * 1024 * 1024
    max_depth: int = 50
    max_nodes: int = 200_000
    max_aliases: int = 10_000


DEFAULT_LIMITS = Limits()


class YamlLimitError(InputError):
    """A document that is too big, too deep or recursive. Exit code 2."""

    def __init__(
        self, path: Path | str, line: int, column: int, reason: str, *, hint: str | None = None
    ) -> None:
        super().__init__(f"{path}:{line}:{column}: {reason}.", hint=hint)
        self.path = path
        self.line = line  # 1-based
        self.column = column  # 1-based
        self.reason = reason


def make_loader(text: str) -> Any:
    """A safe loader over `text` (libyaml's when PyYAML was built with it: same marks,
    several times faster)."""
    import yaml

    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return loader_class(text)


def check_size(text: str, path: Path | str, limits: Limits = DEFAULT_LIMITS) -> None:
    """Refuse text longer than `limits.max_chars` before any parsing."""
    if len(text) > limits.max_chars:
        raise YamlLimitError(
            path,
            1,
            1,
            f"the file is {len(text):,} characters long, more than the {limits.max_chars:,} "
            "Carrier reads from such a file",
            hint="This is far more than a hand-written file needs; check that it is the "
            "right file, or move large texts (knowledge) into separate documents.",
        )


class _Open:
    """A collection node being composed, with what its children add up to so far."""

    __slots__ = ("anchor", "height", "node", "pending_key", "size")

    def __init__(self, node: Any, anchor: str | None) -> None:
        self.node = node
        self.anchor = anchor
        self.size = 1  # values below and including this node, aliases expanded
        self.height = 1  # levels below and including this node, aliases expanded
        self.pending_key: Any = None  # mapping: the key waiting for its value


def compose(loader: Any, path: Path | str, limits: Limits = DEFAULT_LIMITS) -> Any:
    """The single document's root node (None for an empty stream), composed within
    `limits`. Raises YamlLimitError past a limit and yaml.YAMLError on bad syntax."""
    import yaml

    try:
        return _compose_stream(loader, path, limits)
    except yaml.MarkedYAMLError as exc:
        # libyaml stops at 1,000 open brackets with a scanner error; that is this limit too.
        if "nesting depth" in str(exc.problem or "") and exc.problem_mark is not None:
            mark = exc.problem_mark
            raise too_deep(path, limits, mark.line + 1, mark.column + 1) from None
        raise


def too_deep(path: Path | str, limits: Limits, line: int = 1, column: int = 1) -> YamlLimitError:
    """The refusal of a document nested deeper than `limits.max_depth`, wherever found."""
    return YamlLimitError(
        path,
        line,
        column,
        f"values are nested more than {limits.max_depth} levels deep",
        hint="No Carrier file needs that much nesting; flatten the structure.",
    )


def _compose_stream(loader: Any, path: Path | str, limits: Limits) -> Any:
    import yaml
    from yaml.composer import ComposerError

    loader.get_event()  # StreamStartEvent
    root = None
    if not loader.check_event(yaml.StreamEndEvent):
        root = _compose_document(loader, path, limits)
    if not loader.check_event(yaml.StreamEndEvent):
        event = loader.get_event()
        raise ComposerError(
            "expected a single document in the stream",
            root.start_mark if root is not None else None,
            "but found another document",
            event.start_mark,
        )
    loader.get_event()  # StreamEndEvent
    return root


def _compose_document(loader: Any, path: Path | str, limits: Limits) -> Any:
    import yaml
    from yaml.composer import ComposerError

    loader.get_event()  # DocumentStartEvent
    anchors: dict[str, Any] = {}
    # Expanded size and height of every anchored node once it is complete.
    measured: dict[int, tuple[int, int]] = {}
    open_anchors: set[str] = set()
    stack: list[_Open] = []
    aliases = 0
    root: Any = None

    def refuse(mark: Any, reason: str, hint: str) -> YamlLimitError:
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        return YamlLimitError(path, line, column, reason, hint=hint)

    def refuse_depth(mark: Any) -> YamlLimitError:
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        return too_deep(path, limits, line, column)

    def attach(node: Any, size: int, height: int, mark: Any) -> None:
        """Hang a finished node (or an alias's target) on its parent and count it."""
        nonlocal root
        if not stack:
            root = node
            total = size
        else:
            parent = stack[-1]
            if isinstance(parent.node, yaml.MappingNode):
                if parent.pending_key is None:
                    parent.pending_key = node
                else:
                    parent.node.value.append((parent.pending_key, node))
                    parent.pending_key = None
            else:
                parent.node.value.append(node)
            parent.size += size
            parent.height = max(parent.height, height + 1)
            total = sum(entry.size for entry in stack)
        if total > limits.max_nodes:
            raise refuse(
                mark,
                f"the document expands to more than {limits.max_nodes:,} values "
                "(counting every *alias as the values it stands for)",
                "This is what an alias bomb looks like; write the values out or use far "
                "fewer *alias references.",
            )
        if len(stack) + height > limits.max_depth:
            raise refuse_depth(mark)

    while True:
        if loader.check_event(yaml.AliasEvent):
            event = loader.get_event()
            name = event.anchor
            if name in open_anchors:
                raise refuse(
                    event.start_mark,
                    f"the alias *{name} is inside the value &{name} it refers to, which "
                    "would make a value that contains itself",
                    f"Remove *{name} from inside &{name}, or write the value out.",
                )
            if name not in anchors:
                raise ComposerError(None, None, f"found undefined alias {name!r}", event.start_mark)
            aliases += 1
            if aliases > limits.max_aliases:
                raise refuse(
                    event.start_mark,
                    f"the document uses more than {limits.max_aliases:,} *alias references",
                    "Write the values out instead of referring to them so often.",
                )
            target = anchors[name]
            size, height = measured[id(target)]
            attach(target, size, height, event.start_mark)
        elif loader.check_event(yaml.ScalarEvent):
            event = loader.get_event()
            _check_anchor(event, anchors)
            tag = event.tag
            if tag is None or tag == "!":
                tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
            node = yaml.ScalarNode(
                tag, event.value, event.start_mark, event.end_mark, style=event.style
            )
            if event.anchor is not None:
                anchors[event.anchor] = node
                measured[id(node)] = (1, 1)
            attach(node, 1, 1, event.start_mark)
        elif loader.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent):
            event = loader.get_event()
            _check_anchor(event, anchors)
            kind = (
                yaml.SequenceNode
                if isinstance(event, yaml.SequenceStartEvent)
                else yaml.MappingNode
            )
            tag = event.tag
            if tag is None or tag == "!":
                tag = loader.resolve(kind, None, event.implicit)
            collection = kind(tag, [], event.start_mark, None, flow_style=event.flow_style)
            if event.anchor is not None:
                anchors[event.anchor] = collection
                open_anchors.add(event.anchor)
            if len(stack) + 1 > limits.max_depth:
                raise refuse_depth(event.start_mark)
            stack.append(_Open(collection, event.anchor))
        elif loader.check_event(yaml.SequenceEndEvent, yaml.MappingEndEvent):
            event = loader.get_event()
            done = stack.pop()
            done.node.end_mark = event.end_mark
            if done.anchor is not None:
                open_anchors.discard(done.anchor)
                measured[id(done.node)] = (done.size, done.height)
            attach(done.node, done.size, done.height, done.node.start_mark)
        else:
            break  # DocumentEndEvent (a well-formed stream has nothing else here)
        if not stack and root is not None:
            break
    loader.get_event()  # DocumentEndEvent
    return root


def _check_anchor(event: Any, anchors: dict[str, Any]) -> None:
    from yaml.composer import ComposerError

    if event.anchor is not None and event.anchor in anchors:
        raise ComposerError(
            f"found duplicate anchor {event.anchor!r}; first occurrence",
            anchors[event.anchor].start_mark,
            "second occurrence",
            event.start_mark,
        )


def load(text: str, path: Path | str, limits: Limits = DEFAULT_LIMITS) -> Any:
    """`yaml.safe_load(text)` within `limits` (see the module docstring)."""
    check_size(text, path, limits)
    loader = make_loader(text)
    try:
        node = compose(loader, path, limits)
        return None if node is None else loader.construct_document(node)
    finally:
        loader.dispose()


def check_depth(data: Any, path: Path | str, limits: Limits = DEFAULT_LIMITS) -> None:
    """Refuse plain data (from a JSON parser) nested deeper than `limits.max_depth`,
    walked without recursion."""
    todo: list[tuple[Any, int]] = [(data, 1)]
    while todo:
        value, depth = todo.pop()
        if depth > limits.max_depth:
            raise too_deep(path, limits)
        if isinstance(value, dict):
            todo.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            todo.extend((v, depth + 1) for v in value)
