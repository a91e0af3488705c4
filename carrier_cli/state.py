"""Process-wide state set by the global options and read by every command.

Kept as one small object (not Typer's context) so that library code started from a
command, such as the Discord client, can find the settings and the secret scrubber too.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The scrubber lives in carrier_cli.redact, a leaf module, so output.py can use it without
# importing the settings; its names stay importable from here for existing callers.
from carrier_cli.redact import ScrubFilter, register_secret, scrub

__all__ = [
    "STATE",
    "AppState",
    "ScrubFilter",
    "register_secret",
    "register_settings_secrets",
    "scrub",
    "setup_logging",
]

if TYPE_CHECKING:
    from carrier_cli.config import LoadedSettings, Settings


@dataclass
class AppState:
    debug: bool = False
    verbose: int = 0
    config_path: Path | None = None
    _loaded: dict[tuple[tuple[str, Any], ...], LoadedSettings] = field(default_factory=dict)

    def settings(self, **overrides: Any) -> LoadedSettings:
        """Effective settings with command-line overrides; loaded once per set of flags."""
        from carrier_cli.config import load_settings

        key = tuple(sorted((k, v) for k, v in overrides.items() if v is not None))
        if key not in self._loaded:
            loaded = load_settings(config_file=self.config_path, overrides=dict(key))
            register_settings_secrets(loaded.settings)
            self._loaded[key] = loaded
        return self._loaded[key]


def register_settings_secrets(settings: Settings) -> None:
    """Register every secret a settings object holds: the secret fields and the password
    of every URL-valued setting (DATABASE_URL's above all), so `scrub` removes them from
    errors, `--debug` tracebacks and logs even where a driver prints the URL unmasked."""
    from carrier_cli.config import SECRET_FIELDS, URL_FIELDS
    from carrier_cli.memory.urls import url_password_forms

    for name in SECRET_FIELDS:
        secret = settings.secret(name)
        if secret:
            register_secret(secret)
    for name in URL_FIELDS:
        value = getattr(settings, name)
        if isinstance(value, str):
            for password in url_password_forms(value):
                register_secret(password)


STATE = AppState()


def setup_logging(debug: bool, verbose: int) -> None:
    level = logging.DEBUG if debug or verbose >= 2 else logging.INFO if verbose == 1 else None
    if level is None:
        level = getattr(logging, os.environ.get("CARRIER_LOG_LEVEL", "WARNING").upper(), 30)
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    )
    handler.addFilter(ScrubFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if not debug:
        for noisy in (
            "discord",
            "httpx",
            "httpcore",
            "openai",
            "anthropic",
            "asyncio",
            "aiosqlite",
        ):
            logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
