"""The sender against a real local receiver: signed deliveries, retries with the same
delivery id, failures that are final, timeouts up to the maximum age, SSRF refusals."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from carrier_cli.config import Settings, load_settings
from carrier_cli.memory import outbox
from carrier_cli.memory.store import MemoryStore
from carrier_cli.webhooks.options import WebhookOptions
from carrier_cli.webhooks.policy import OutboxPolicy
from carrier_cli.webhooks.sender import Sender, backoff, targets
from tests.webhooks.receiver import Receiver

SECRET = "sender-test-secret-0123"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(SECRET).start()
    try:
        yield server
    finally:
        server.stop()


def _settings(url: str, **extra: Any) -> Settings:
    hook = {"name": "rx", "url": url, "events": ["agent.error"], "secret": SECRET}
    environ = {
        "CARRIER_WEBHOOKS": json.dumps([hook]),
        "CARRIER_WEBHOOKS_ALLOW_PRIVATE": "true",
        "CARRIER_WEBHOOK_RETRY_DELAY": "0.05",
        "CARRIER_WEBHOOK_TIMEOUT": "2",
        **{f"CARRIER_{k.upper()}": str(v) for k, v in extra.items()},
    }
    return load_settings(environ=environ, use_stored_keys=False).settings


class Running:
    def __init__(self, store: MemoryStore, settings: Settings) -> None:
        self.store = store
        self.policy = OutboxPolicy(settings.webhooks)
        options = WebhookOptions.from_settings(settings)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(
            Sender(store, targets(settings.webhooks), options, self.policy).run(self.stop)
        )

    async def event(self, data: dict[str, Any]) -> None:
        await self.policy.enqueue(self.store, "agent.error", data)

    async def row(self, status: str, timeout: float = 20) -> outbox.Delivery:
        for _ in range(int(timeout / 0.05)):
            rows = await outbox.list_deliveries(self.store)
            if rows and rows[0].status == status:
                return rows[0]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {status} row: {await outbox.list_deliveries(self.store)}")

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 10)


@pytest.fixture
async def sqlite_store(tmp_path: Any) -> AsyncIterator[MemoryStore]:
    store = await MemoryStore.open(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        yield store
    finally:
        await store.close()


async def test_a_receiver_failing_twice_gets_it_on_the_third_attempt(
    store: MemoryStore, receiver: Receiver
) -> None:
    receiver.script[:] = [500, 503]
    running = Running(store, _settings(receiver.url))
    try:
        await running.event({"error": {"type": "Boom"}})
        done = await running.row("delivered")
    finally:
        await running.close()
    got = receiver.requests()
    assert [r.status for r in got] == [500, 503, 200]
    assert all(r.verified for r in got)  # each attempt signed (its own timestamp)
    assert {r.delivery for r in got} == {done.id}
    assert {r.body for r in got} == {got[0].body}  # the same body every time
    assert got[0].json["type"] == "agent.error" and got[0].json["data"]["error"]["type"] == "Boom"
    assert got[0].event == "agent.error"
    assert done.attempts == 3 and done.last_status == 200 and done.last_error is None


async def test_a_4xx_fails_at_once_but_408_and_429_are_retried(
    sqlite_store: MemoryStore, receiver: Receiver
) -> None:
    receiver.script[:] = [408, 429, 410]
    running = Running(sqlite_store, _settings(receiver.url))
    try:
        await running.event({"n": 1})
        failed = await running.row("failed")
    finally:
        await running.close()
    assert [r.status for r in receiver.requests()] == [408, 429, 410]
    assert failed.attempts == 3 and failed.last_status == 410 and failed.last_error == "HTTP 410"


async def test_timeouts_are_retried_until_the_maximum_age_then_failed(
    sqlite_store: MemoryStore, receiver: Receiver
) -> None:
    receiver.delay = 1.0
    settings = _settings(receiver.url, webhook_timeout="0.3", webhook_max_age_hours="0.0005")
    running = Running(sqlite_store, settings)
    try:
        await running.event({"n": 1})
        failed = await running.row("failed")
    finally:
        await running.close()
    assert failed.attempts >= 2
    assert "timed out after 0.3 s" in (failed.last_error or "")
    assert "gave up after" in (failed.last_error or "")
    assert failed.last_status is None


async def test_a_loopback_receiver_is_refused_without_allow_private(
    sqlite_store: MemoryStore, receiver: Receiver
) -> None:
    running = Running(sqlite_store, _settings(receiver.url, webhooks_allow_private="false"))
    try:
        await running.event({"n": 1})
        failed = await running.row("failed")
    finally:
        await running.close()
    assert receiver.requests() == []
    assert failed.attempts == 1 and "loopback address: refused" in (failed.last_error or "")
    assert SECRET not in (failed.last_error or "")


async def test_a_connection_error_is_retried_and_its_error_recorded(
    sqlite_store: MemoryStore,
) -> None:
    import socket

    with socket.socket() as holder:  # a port nobody listens on
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
    settings = _settings(f"http://127.0.0.1:{port}/h", webhook_max_age_hours="0.0002")
    running = Running(sqlite_store, settings)
    try:
        await running.event({"n": 1})
        failed = await running.row("failed")
    finally:
        await running.close()
    assert failed.attempts >= 2 and "Connect" in (failed.last_error or "")


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    delays = [backoff(n, 1.0) for n in range(1, 6)]
    for n, delay in enumerate(delays, start=1):
        assert 2 ** (n - 1) * 0.5 <= delay <= 2 ** (n - 1)
    assert backoff(40, 10.0) <= 3600
    assert backoff(1, 1.0, retry_after=30) == 30


async def test_two_senders_on_one_database_deliver_each_row_once(
    db_url: str, receiver: Receiver
) -> None:
    url = db_url
    settings = _settings(receiver.url)
    first, second = await MemoryStore.open(url), await MemoryStore.open(url)
    try:
        a, b = Running(first, settings), Running(second, settings)
        try:
            for n in range(12):
                await (a if n % 2 else b).event({"n": n})
            await receiver.async_wait_for(lambda: len(receiver.requests()) >= 12)
            await asyncio.sleep(0.5)  # a double delivery would arrive by now
        finally:
            await a.close()
            await b.close()
        deliveries = [r.delivery for r in receiver.requests()]
        assert len(deliveries) == len(set(deliveries)) == 12
        rows = await outbox.list_deliveries(first, limit=None)
        assert {r.status for r in rows} == {"delivered"} and {r.attempts for r in rows} == {1}
    finally:
        await first.close()
        await second.close()
