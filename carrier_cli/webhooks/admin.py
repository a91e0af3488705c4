"""What `carrier webhooks` does, as library functions the CLI wraps: the configured
webhooks (never a secret), a signed test delivery, and the outbox's rows."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from carrier_cli.errors import InputError
from carrier_cli.memory.urls import check_url
from carrier_cli.webhooks.settings import TEST_EVENT, Webhook, resolve_secret

if TYPE_CHECKING:
    from carrier_cli.config import Settings
    from carrier_cli.memory.outbox import Delivery
    from carrier_cli.memory.store import MemoryStore
    from carrier_cli.webhooks.http import Outcome

T = TypeVar("T")


def find_hook(settings: Settings, ref: str) -> tuple[int, Webhook] | None:
    """A configured webhook by name or URL."""
    for index, hook in enumerate(settings.webhooks):
        if ref in (hook.key, hook.url):
            return index, hook
    return None


@dataclass(frozen=True)
class TestResult:
    url: str
    delivery: str
    outcome: Outcome


async def send_test(settings: Settings, ref: str, secret: str | None) -> TestResult:
    """POST a signed `webhook.test` event to a configured webhook (by name or URL) or to a
    URL with `secret`; SSRF rules apply as for real deliveries."""
    from carrier_cli.webhooks import http
    from carrier_cli.webhooks.policy import body
    from carrier_cli.webhooks.signing import sign

    found = find_hook(settings, ref)
    if found is not None:
        index, hook = found
        url = hook.url
        secret = secret or resolve_secret(hook, index)
    else:
        try:
            check_url(ref, "http")
        except ValueError as exc:
            raise InputError(
                f"URL: {ref!r} is neither a configured webhook's name nor a URL: it {exc}.",
                hint="Give an http(s) URL or a name from `carrier webhooks list`.",
            ) from None
        url = ref.strip()
        if not secret:
            raise InputError(
                "URL is not a configured webhook, so there is no secret to sign with.",
                hint="Pass --secret-env VAR naming an environment variable with the "
                "receiver's secret, or test a webhook from `carrier webhooks list`.",
            )
    delivery = uuid.uuid4().hex
    data = {"message": "A test delivery from `carrier webhooks test`."}
    payload = body(TEST_EVENT, delivery, datetime.now(UTC), data).encode("utf-8")
    headers = sign(secret, payload, event=TEST_EVENT, delivery=delivery)
    async with http.session(allow_private=settings.webhooks_allow_private, concurrency=1) as client:
        outcome = await http.post(
            client,
            url,
            payload,
            headers,
            timeout=settings.webhook_timeout,
            allow_private=settings.webhooks_allow_private,
        )
    return TestResult(url=url, delivery=delivery, outcome=outcome)


async def with_store(database_url: str | None, work: Callable[[MemoryStore], Awaitable[T]]) -> T:
    from carrier_cli.memory.store import MemoryStore

    store = await MemoryStore.open(database_url)
    try:
        return await work(store)
    finally:
        await store.close()


def delivery_json(d: Delivery) -> dict[str, Any]:
    """One row as `carrier webhooks deliveries --json` prints it (with its event body)."""
    try:
        payload: Any = json.loads(d.payload)
    except ValueError:
        payload = None
    return {
        "id": d.id,
        "webhook": d.webhook,
        "event_type": d.event_type,
        "event_id": d.event_id,
        "status": d.status,
        "attempts": d.attempts,
        "last_status": d.last_status,
        "last_error": d.last_error,
        "next_attempt_at": d.next_attempt_at.isoformat() if d.status == "pending" else None,
        "created_at": d.created_at.isoformat(),
        "updated_at": d.updated_at.isoformat(),
        "delivered_at": d.delivered_at.isoformat() if d.delivered_at else None,
        "payload": payload,
    }


async def list_deliveries(database_url: str | None, *, failed: bool, limit: int) -> list[Delivery]:
    from carrier_cli.memory import outbox

    return await with_store(
        database_url,
        lambda store: outbox.list_deliveries(
            store, status="failed" if failed else None, limit=limit
        ),
    )


async def redeliver(database_url: str | None, ref: str) -> Delivery:
    """Make the delivery with this id (or unique prefix) pending again, due now."""
    from carrier_cli.memory import outbox

    digits = ref.strip().lower().replace("-", "")
    if len(digits) < 4 or any(c not in "0123456789abcdef" for c in digits):
        raise InputError(
            f"ID: {ref!r} is not a delivery id.",
            hint="Give the id or at least its first 4 characters, as `carrier webhooks "
            "deliveries` shows them.",
        )

    async def work(store: MemoryStore) -> Delivery:
        found = await outbox.find(store, digits)
        if len(found) != 1:
            problem = "No delivery has" if not found else "Several deliveries have"
            raise InputError(
                f"{problem} an id starting with {ref!r}.",
                hint="See `carrier webhooks deliveries`; give more characters or the full id.",
            )
        await outbox.redeliver(store, found[0].id, datetime.now(UTC))
        return found[0]

    return await with_store(database_url, work)
