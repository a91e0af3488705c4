"""One Instagram account per character: `instagram:NAME` keys, as Discord has per-character
bot tokens (clients/discord/runner.py `resolve_token`).

A character whose file sets `clients.instagram.account_key: instagram:marina` (and the
account's numeric id in `clients.instagram.account_id`) posts, autoposts and reads
insights as that account, with the token stored by `carrier keys set instagram:marina`.
Without an account key a character uses the global settings (INSTAGRAM_ACCOUNT_ID and
INSTAGRAM_ACCESS_TOKEN / `carrier keys set instagram`), as before.

A post journals the key and the account id (never the token) of a non-default account,
so `carrier instagram resume` and the API's restart resume continue it as the account
that began it, whatever the current settings say (`graph_for_record`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from carrier_cli.errors import ConfigError

if TYPE_CHECKING:
    from carrier_cli.character.model import Character
    from carrier_cli.clients.instagram.options import GraphOptions, InstagramOptions

GLOBAL_KEY = "instagram"


def _stored_token(key: str, who: str) -> str:
    from carrier_cli.secrets import SecretStore
    from carrier_cli.state import register_secret

    stored = SecretStore().get(key)
    if stored is None:
        raise ConfigError(
            f"{who} names the Instagram account key {key!r}, but no key of that name is stored.",
            hint=f"Store the account's access token with `carrier keys set {key}`.",
        )
    register_secret(stored.value)
    return stored.value


def character_graph(graph: GraphOptions, character: Character) -> GraphOptions:
    """`graph` (the global account) for a character without an account key; its own
    account otherwise. ConfigError names the character file's field that is missing."""
    config = character.clients.instagram
    key = config.account_key
    if not key or key == GLOBAL_KEY:
        return graph
    who = f"Character {character.name!r} (clients.instagram.account_key)"
    if not key.startswith(f"{GLOBAL_KEY}:"):
        raise ConfigError(
            f"{who}: {key!r} is not an Instagram key name; they look like instagram:NAME.",
            hint=f"E.g. account_key: instagram:{character.name.lower().replace(' ', '-')}",
        )
    account_id = config.account_id
    if not account_id:
        raise ConfigError(
            f"Character {character.name!r} has clients.instagram.account_key {key!r} but no "
            "clients.instagram.account_id: the token alone does not say which account to "
            "post as.",
            hint="Set account_id to the account's numeric Instagram user id (`carrier "
            f"instagram whoami --character {character.name}` checks the pair).",
        )
    return replace(
        graph,
        account_id=str(account_id),
        access_token=_stored_token(key, who),
        account_key=key,
    )


def for_character(options: InstagramOptions, character: Character | None) -> InstagramOptions:
    """The options with the character's account (the same options without one)."""
    if character is None:
        return options
    graph = character_graph(options.graph, character)
    return options if graph is options.graph else replace(options, graph=graph)


def journal_entry(graph: GraphOptions) -> dict[str, str] | None:
    """What the journal keeps of a non-default account: its key and id, not its token."""
    if not graph.account_key:
        return None
    return {"key": graph.account_key, "id": str(graph.account_id)}


def graph_for_record(graph: GraphOptions, entry: Any) -> GraphOptions:
    """The Graph options a journaled post continues with: its own account's when it was
    begun as a character's account, else `graph`."""
    if not isinstance(entry, dict) or not entry.get("key"):
        return graph
    if entry["key"] == graph.account_key and entry.get("id") == graph.account_id:
        return graph
    token = _stored_token(str(entry["key"]), "This post (begun as another account)")
    return replace(
        graph, account_id=str(entry.get("id")), access_token=token, account_key=entry["key"]
    )
