"""Errors that the command line turns into a one-paragraph message and an exit code.

Library code raises these instead of printing, so the same logic works when Carrier is
imported as a library; only `carrier_cli.cli.app` decides how they look on a terminal.
"""

from __future__ import annotations


class CarrierError(Exception):
    """A failure the operator can act on. `exit_code` 1 = runtime failure, 2 = bad input."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return f"{self.message} {self.hint}" if self.hint else self.message


class InputError(CarrierError):
    """Bad input from the operator: a file, field, flag or value. Exit code 2."""

    exit_code = 2


class ConfigError(InputError):
    """A configuration value is missing or invalid. Exit code 2."""


class RuntimeFailure(CarrierError):
    """Something failed while running (network, server, database). Exit code 1."""

    exit_code = 1
