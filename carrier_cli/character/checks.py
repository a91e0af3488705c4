"""Checks a character mapping gets before and after pydantic: unknown keys, secrets, and
turning pydantic's errors into "expected X, found Y" sentences.

ElizaOS users' top complaint was cryptic validation errors ("Expected array, received
object"), so every message here names the field, what was expected and what was found.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from carrier_cli.character.marks import KeyPath, format_path
from carrier_cli.character.model import Character
from carrier_cli.text import clip

# Keys accepted in a file but not fields of the model (handled by the loader).
_LOADER_KEYS: dict[KeyPath, set[str]] = {(): {"extends"}}


def _models_in(annotation: Any) -> tuple[type[BaseModel] | None, int]:
    """The model class inside e.g. list[list[ExampleMessage]] and how many lists wrap it."""
    depth = 0
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:  # a size-limited type: look at what it limits
            annotation = typing.get_args(annotation)[0]
            continue
        if origin is list:
            annotation = typing.get_args(annotation)[0]
            depth += 1
            continue
        if origin in (typing.Union, types.UnionType):
            inner = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(inner) == 1:
                annotation = inner[0]
                continue
            return None, depth
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation, depth
        return None, depth


def _suggest(key: str, choices: list[str]) -> str | None:
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower().replace("-", "_")
    if snake in choices:
        return snake
    close = difflib.get_close_matches(snake, choices, n=1, cutoff=0.6)
    return close[0] if close else None


def find_unknown_keys(
    data: Any, model: type[BaseModel] = Character, path: KeyPath = ()
) -> Iterator[tuple[KeyPath, str]]:
    """(path, message) for every key the model does not have, at any depth."""
    if not isinstance(data, dict):
        return
    fields = {n: f for n, f in model.model_fields.items() if not f.exclude}
    allowed = set(fields) | _LOADER_KEYS.get(path, set())
    for key, value in data.items():
        if key not in allowed:
            hint = _suggest(str(key), sorted(allowed))
            where = f" in {format_path(path)}" if path else ""
            message = f"unknown key `{key}`{where}"
            message += (
                f" (did you mean `{hint}`?)"
                if hint
                else f"; valid keys: {', '.join(sorted(allowed))}"
            )
            yield (*path, key), message
            continue
        if key not in fields:
            continue
        inner, depth = _models_in(fields[key].annotation)
        if inner is not None:
            yield from _descend(value, inner, (*path, key), depth)


def _descend(
    value: Any, model: type[BaseModel], path: KeyPath, depth: int
) -> Iterator[tuple[KeyPath, str]]:
    if depth == 0:
        yield from find_unknown_keys(value, model, path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _descend(item, model, (*path, index), depth - 1)


def remove_path(data: Any, path: KeyPath) -> None:
    for part in path[:-1]:
        data = data[part]
    del data[path[-1]]


def unknown_template_names(data: Any) -> Iterator[tuple[KeyPath, str]]:
    """Template overrides the runtime would silently ignore (a typo costs a whole prompt)."""
    templates = data.get("templates") if isinstance(data, dict) else None
    if not isinstance(templates, dict):
        return
    try:
        from carrier_cli.runtime.templates import ALIASES, DEFAULTS
    except ImportError:  # the runtime is optional for validating files
        return
    known = sorted({*DEFAULTS, *ALIASES})
    for key in templates:
        if key not in known:
            hint = _suggest(str(key), known) or difflib.get_close_matches(str(key), known, n=1)
            hint = hint[0] if isinstance(hint, list) and hint else hint
            message = f"`{key}` is not a template Carrier uses; it will be ignored"
            message += (
                f" (did you mean `{hint}`?)" if hint else f" (known: {', '.join(sorted(DEFAULTS))})"
            )
            yield ("templates", key), message


# --- model provider -------------------------------------------------------------------------

_FALLBACK_PROVIDERS = ("openai", "anthropic", "ollama")


def known_providers() -> tuple[str, ...]:
    try:
        from carrier_cli.llm.factory import PROVIDERS
    except ImportError:
        return _FALLBACK_PROVIDERS
    return tuple(PROVIDERS)


def supported_provider(name: str) -> str | None:
    """The provider name the model factory accepts for `name`, or None if it has none."""
    try:
        from carrier_cli.llm.factory import normalize_provider
    except ImportError:
        lowered = name.strip().lower()
        return lowered if lowered in _FALLBACK_PROVIDERS else None
    from carrier_cli.errors import InputError

    try:
        return normalize_provider(name, origin="character")
    except InputError:
        return None


# --- secrets --------------------------------------------------------------------------------

_SECRET_VALUE = re.compile(
    r"^(?:sk-(?:ant-|proj-)?[A-Za-z0-9_\-]{20,}"  # OpenAI / Anthropic
    r"|(?:ghp|gho|github_pat|xox[abpr])_?[A-Za-z0-9_\-]{20,}"  # GitHub, Slack
    r"|EAA[A-Za-z0-9]{40,}|IG[A-Za-z0-9]{60,}"  # Facebook / Instagram Graph tokens
    r"|[MNO][A-Za-z0-9_\-]{23,27}\.[A-Za-z0-9_\-]{6}\.[A-Za-z0-9_\-]{27,})$"  # Discord bot
)
_SECRET_KEY = re.compile(r"(api_?key|apikey|token|password|passwd|secret|private_?key)s?$", re.I)
_NOT_SECRET_KEYS = {"token_key", "max_tokens", "daily_tokens", "monthly_tokens"}


def looks_like_secret(key: str | int | None, value: Any) -> bool:
    if not isinstance(value, str) or not value.strip():
        return False
    if _SECRET_VALUE.match(value.strip()):
        return True
    if isinstance(key, str) and key not in _NOT_SECRET_KEYS:
        normal = re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()
        return bool(_SECRET_KEY.search(normal)) and " " not in value.strip()
    return False


def find_secrets(data: Any, path: KeyPath = ()) -> Iterator[tuple[KeyPath, str]]:
    """(path, value) of every secret-looking value. Callers must never print the value."""
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, dict | list):
                yield from find_secrets(value, (*path, key))
            elif looks_like_secret(key, value):
                yield (*path, key), value
    elif isinstance(data, list):
        for index, value in enumerate(data):
            if isinstance(value, dict | list):
                yield from find_secrets(value, (*path, index))
            elif looks_like_secret(None, value):
                yield (*path, index), value


def secret_hint(path: KeyPath) -> str:
    lowered = " ".join(str(p) for p in path).lower()
    name = next(
        (n for n in ("openai", "anthropic", "discord", "instagram", "ftp") if n in lowered), "NAME"
    )
    return (
        "looks like a secret (API key, token or password). Character files get shared and "
        f"committed: remove it and store it with `carrier keys set {name}` instead"
    )


# --- pydantic errors ------------------------------------------------------------------------

_EXPECTED = {
    "missing": "is required",
    "string_type": "expected text",
    "list_type": "expected a list",
    "dict_type": "expected a mapping (key: value)",
    "model_type": "expected a mapping (key: value)",
    "model_attributes_type": "expected a mapping (key: value)",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "int_parsing": "expected a whole number",
    "int_type": "expected a whole number",
    "int_from_float": "expected a whole number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "string_too_short": "must not be empty",
}


def describe(value: Any) -> str:
    """How a YAML author would describe the value they wrote."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        if looks_like_secret(None, value):
            return "a secret-looking value"
        shown = clip(value, 40, ellipsis="...")
        return f"the text {shown!r}"
    if isinstance(value, list):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, dict):
        return "a mapping (key: value)"
    return type(value).__name__


def explain(error: Any) -> str:
    """One sentence for one pydantic error dict."""
    kind = error["type"]
    if kind == "missing":
        return "is required but missing"
    limit = (error.get("ctx") or {}).get("max_length")
    if kind == "string_too_long" and isinstance(error.get("input"), str):
        return (
            f"is {len(error['input']):,} characters long, more than the limit of {limit:,}; "
            f'shorten it (limits: README.md, "Character limits")'
        )
    if kind == "too_long" and isinstance(error.get("input"), list | dict):
        unit = "entries" if isinstance(error["input"], dict) else "items"
        return (
            f"has {len(error['input']):,} {unit}, more than the limit of {limit:,}; "
            f'keep the best ones (limits: README.md, "Character limits")'
        )
    expected = _EXPECTED.get(kind)
    if expected is None:
        msg = str(error["msg"])
        msg = msg.removeprefix("Value error, ")
        expected = msg[:1].lower() + msg[1:]
    found = describe(error.get("input"))
    text = f"{expected}, found {found}"
    if kind == "string_type" and isinstance(error.get("input"), bool):
        text += " (YAML reads yes/no/on/off/true/false as booleans: quote the text)"
    if kind == "string_type" and isinstance(error.get("input"), dict) and len(error["input"]) == 1:
        text += " (a ': ' inside unquoted text starts a mapping in YAML: quote the text)"
    if kind == "string_type" and isinstance(error.get("input"), int | float):
        text += " (quote it to make it text)"
    return text
