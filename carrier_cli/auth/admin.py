"""What `carrier api-keys` does, as library functions the CLI wraps: opening the memory
database (its URL, from the `database_url` setting), running one ApiKeys call, and the
JSON shape of a key. Takes the URL, not `Settings`: only the edges see those."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from carrier_cli.auth.keys import ApiKeys, KeyInfo

T = TypeVar("T")

CURL_URL = "http://127.0.0.1:8000/v1/agents"


def curl_line(raw: str) -> str:
    """A ready request for the operator to try the key with (`carrier serve`'s default)."""
    return f'curl -H "Authorization: Bearer {raw}" {CURL_URL}'


def key_json(info: KeyInfo) -> dict[str, Any]:
    """One key as `carrier api-keys list --json` prints it (never the key or its hash)."""
    return {
        "name": info.name,
        "scope": info.scope,
        "prefix": info.prefix,
        "created_at": info.created_at.isoformat(),
        "last_used_at": info.last_used_at.isoformat() if info.last_used_at else None,
        "revoked_at": info.revoked_at.isoformat() if info.revoked_at else None,
    }


async def with_keys(database_url: str | None, work: Callable[[ApiKeys], Awaitable[T]]) -> T:
    """Run `work` over the keys in this memory database (None: the default), then close it."""
    from carrier_cli.auth.keys import ApiKeys
    from carrier_cli.memory.store import MemoryStore

    # No embedder is needed for keys: the default local one loads nothing until asked.
    store = await MemoryStore.open(database_url)
    try:
        return await work(ApiKeys(store))
    finally:
        await store.close()


async def create_key(database_url: str | None, name: str, scope: str) -> tuple[str, KeyInfo]:
    return await with_keys(database_url, lambda keys: keys.create(name, scope))


async def list_keys(database_url: str | None) -> list[KeyInfo]:
    return await with_keys(database_url, lambda keys: keys.list())


async def revoke_key(database_url: str | None, name: str) -> KeyInfo:
    return await with_keys(database_url, lambda keys: keys.revoke(name))
