"""Keeping secrets out of everything Carrier prints or logs.

A leaf module (the standard library only) so that output, logging and every layer below
the settings can scrub text without importing `config` (which would make config ->
secrets -> output -> config a cycle). Secrets are registered as they are loaded: API keys,
tokens, the passwords in URL settings, a character's inline secrets.
"""

from __future__ import annotations

import logging
import re


def mask_secret(value: str) -> str:
    """`sk-…abcd`: enough to tell keys apart, never enough to use one."""
    if len(value) < 12:
        return "…" if len(value) < 6 else f"…{value[-2:]}"
    return f"{value[:3]}…{value[-4:]}"


_SECRETS: set[str] = set()


def register_secret(value: str) -> None:
    """Remember a secret so that `scrub` removes it from anything we print or log."""
    if value and len(value) >= 4:
        _SECRETS.add(value)


def scrub(text: str) -> str:
    """Replace every known secret (and bearer-looking tokens) in text with a mask."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, mask_secret(secret))
    return _BEARER.sub(r"\1[redacted]", text)


_BEARER = re.compile(r"((?:Bearer|Bot|access_token=)\s?)[A-Za-z0-9._\-]{16,}")


class ScrubFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            import traceback

            record.exc_text = scrub("".join(traceback.format_exception(*record.exc_info)))
            record.exc_info = None
        return True
