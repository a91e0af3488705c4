"""The runtime tests' fixtures (a SQLite store, a character, a scripted-model runtime)."""

from tests.runtime.conftest import character, make_runtime, sqlite_store, sqlite_url

__all__ = ["character", "make_runtime", "sqlite_store", "sqlite_url"]
