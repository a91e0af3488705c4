"""Reading operator files as text: one place that turns "not text" into a clear InputError.

Every file Carrier reads as text (config.yaml, .env, memory exports, documents to ingest)
goes through `read_text` (character files report the same `not_utf8` reason, as a problem
with a position), so a binary file, a file in another encoding or an unreadable path is
always reported the same way: which file, what is wrong, what to do. Without this, a stray
PNG passed to `memory import` surfaced as "Unexpected error: UnicodeDecodeError" and told
the operator it was a bug in Carrier.
"""

from __future__ import annotations

from pathlib import Path

from carrier_cli.errors import InputError


def not_utf8(exc: UnicodeDecodeError) -> str:
    """Why bytes are not text, with the byte offset: "not UTF-8 text (<reason> at byte N)"
    (also the wording of a character file's problem, `character.marks.read_document`)."""
    return f"not UTF-8 text ({exc.reason} at byte {exc.start})"


def describe_decode_error(path: Path | str, exc: UnicodeDecodeError, what: str) -> str:
    """The one-sentence reason a file is not UTF-8 text, with the byte offset."""
    return (
        f"{path}: the {what} is {not_utf8(exc)}; it looks like a binary file or another encoding."
    )


def read_text(path: Path, *, what: str = "file", hint: str | None = None) -> str:
    """The file's text (UTF-8, a leading byte-order mark tolerated) or an InputError.

    `what` names the file's role in the message ("config file", "export", ".env file").
    """
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise InputError(f"{path}: the {what} is a directory, not a file.") from None
    except FileNotFoundError:
        raise InputError(f"{path}: the {what} does not exist.", hint=hint) from None
    except OSError as exc:
        raise InputError(
            f"{path}: cannot read the {what} ({exc.strerror or exc}).",
            hint="Check the path and its permissions.",
        ) from None
    return decode_text(raw, path, what=what, hint=hint)


def decode_text(
    raw: bytes, path: Path | str, *, what: str = "file", hint: str | None = None
) -> str:
    """Decode bytes read from `path` as UTF-8 (BOM tolerated) or raise an InputError."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            describe_decode_error(path, exc, what),
            hint=hint or "Save it as UTF-8 text, or give the right file.",
        ) from None
