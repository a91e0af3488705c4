"""SSRF: loopback, private, link-local, multicast and unspecified targets are refused
(names resolving to them too) unless webhooks_allow_private; redirects are not followed."""

from __future__ import annotations

import pytest

from carrier_cli.config import load_settings
from carrier_cli.webhooks.admin import send_test
from carrier_cli.webhooks.ssrf import RefusedAddress, resolve
from tests.webhooks.receiver import Receiver


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("172.16.5.4", "private"),
        ("169.254.169.254", "link-local"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fd00::1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("localhost", "loopback"),  # a name resolving to loopback
    ],
)
async def test_refused_targets_name_the_reason(host: str, reason: str) -> None:
    with pytest.raises(RefusedAddress, match=f"a {reason} address") as caught:
        await resolve(host, 443, allow_private=False)
    assert "webhooks_allow_private" in (caught.value.hint or "")


async def test_allow_private_lets_them_through_and_public_addresses_always_pass() -> None:
    assert (await resolve("127.0.0.1", 80, allow_private=True))[0]["host"] == "127.0.0.1"
    assert (await resolve("localhost", 80, allow_private=True))[0]["host"] in ("127.0.0.1", "::1")
    found = await resolve("93.184.215.14", 443, allow_private=False)
    assert found[0]["host"] == "93.184.215.14" and found[0]["port"] == 443


def _settings(**values: object) -> object:
    environ = {f"CARRIER_{k.upper()}": str(v) for k, v in values.items()}
    return load_settings(environ=environ, use_stored_keys=False).settings


async def test_a_test_delivery_to_loopback_is_refused_without_allow_private() -> None:
    receiver = Receiver("s3cret-value-123").start()
    try:
        settings = _settings()
        with pytest.raises(RefusedAddress):
            await send_test(settings, receiver.url, "s3cret-value-123")  # type: ignore[arg-type]
        assert receiver.requests() == []  # nothing reached it
        allowed = _settings(webhooks_allow_private="true")
        result = await send_test(allowed, receiver.url, "s3cret-value-123")  # type: ignore[arg-type]
        assert result.outcome.delivered and result.outcome.status == 200
        [got] = receiver.requests()
        assert got.verified and got.event == "webhook.test" and got.delivery == result.delivery
    finally:
        receiver.stop()


async def test_a_redirect_is_not_followed() -> None:
    receiver = Receiver("s3cret-value-123", script=[302]).start()
    try:
        settings = _settings(webhooks_allow_private="true")
        result = await send_test(settings, receiver.url, "s3cret-value-123")  # type: ignore[arg-type]
        assert not result.outcome.delivered and result.outcome.status == 302
        assert not result.outcome.retry and "redirect" in (result.outcome.error or "")
        assert len(receiver.requests()) == 1  # the Location (port 1) was never tried
    finally:
        receiver.stop()


async def test_a_host_that_does_not_resolve_is_a_retryable_failure_not_a_crash() -> None:
    result = await send_test(_settings(), "https://no-such-host.invalid/h", "s3cret-value-123")  # type: ignore[arg-type]
    outcome = result.outcome
    assert not outcome.delivered and outcome.retry and outcome.status is None
    assert "cannot resolve no-such-host.invalid" in (outcome.error or "")
