"""Meta's webhooks for Instagram: the verify handshake, the signature, the comments in them.

Setting up a webhook in the Meta app (Webhooks > Instagram > `comments`), Meta first
calls the callback URL with `GET ?hub.mode=subscribe&hub.verify_token=T&hub.challenge=C`
and expects C back as the body when T is the token typed in the dashboard. Then every
event is a `POST` with a JSON body and `X-Hub-Signature-256: sha256=<hex>`, the
HMAC-SHA256 of the raw body keyed with the app secret; anything else is not from Meta.
A `comments` change looks like

    {"object": "instagram", "entry": [{"id": "<ig-user-id>", "time": 1520383571,
      "changes": [{"field": "comments", "value": {"id": "<comment-id>", "text": "...",
        "from": {"id": "<igsid>", "username": "..."}, "media": {"id": "<media-id>",
        "media_product_type": "FEED"}, "parent_id": "<top-level comment id, replies only>"}}]}]}

The route (clients/api/routes/meta_webhooks.py) answers at once and hands the comments to
the account's replier (comment_inbox.py), so Meta never waits for a model.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from carrier_cli.clients.instagram.comments import Comment, comment_from

SIGNATURE_PREFIX = "sha256="
MAX_CHANGES = 1_000  # per delivery: Meta batches up to a few hundred


def signature_of(body: bytes, app_secret: str) -> str:
    """The X-Hub-Signature-256 value Meta sends for `body`."""
    digest = hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def signature_matches(body: bytes, header: str, app_secret: str) -> bool:
    """Constant-time comparison of the header with the body's signature."""
    expected = signature_of(body, app_secret)
    given = header.strip()
    if given[: len(SIGNATURE_PREFIX)].lower() == SIGNATURE_PREFIX:
        given = SIGNATURE_PREFIX + given[len(SIGNATURE_PREFIX) :].lower()
    return hmac.compare_digest(expected.encode("ascii"), given.encode("utf-8", "replace"))


def handshake_matches(token: str, expected: str) -> bool:
    return hmac.compare_digest(token.encode("utf-8", "replace"), expected.encode("utf-8"))


@dataclass(frozen=True)
class AccountComment:
    account_id: str
    comment: Comment


def comments_in(payload: Any) -> tuple[int, list[AccountComment]]:
    """(changes seen, the `comments` changes as comments of their account). Other
    fields, other objects and malformed changes are skipped, not refused: Meta retries a
    refused delivery for hours, and one odd change must not block the others."""
    if not isinstance(payload, dict) or payload.get("object") != "instagram":
        return 0, []
    seen = 0
    found: list[AccountComment] = []
    entries = payload.get("entry")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not entry.get("id"):
            continue
        changes = entry.get("changes")
        for change in changes if isinstance(changes, list) else []:
            seen += 1
            if seen > MAX_CHANGES:
                return seen, found
            comment = _comment(change)
            if comment is not None:
                found.append(AccountComment(str(entry["id"]), comment))
    return seen, found


def _comment(change: Any) -> Comment | None:
    if not isinstance(change, dict) or change.get("field") != "comments":
        return None
    value = change.get("value")
    if not isinstance(value, dict) or not value.get("id"):
        return None
    media = value.get("media")
    media_id = media.get("id") if isinstance(media, dict) else None
    if not media_id or not isinstance(value.get("text", ""), str):
        return None
    return comment_from(value, str(media_id))
