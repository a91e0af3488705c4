"""The signature scheme: what `sign` produces `verify` accepts, and nothing else."""

from __future__ import annotations

import hashlib
import hmac
import time

from carrier_cli.webhooks.signing import sign, signature, verify

SECRET = "whsec-test-0123456789"
BODY = b'{"id":"e1","type":"message.created","created":"2026-12-03T10:00:00+00:00","data":{}}'


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), b"1764756000." + BODY, hashlib.sha256).hexdigest()
    assert signature(SECRET, 1764756000, BODY) == "sha256=" + expected


def test_signed_headers_verify_and_name_the_event_and_delivery() -> None:
    headers = sign(SECRET, BODY, event="message.created", delivery="d1")
    assert headers["X-Carrier-Event"] == "message.created"
    assert headers["X-Carrier-Delivery"] == "d1"
    assert abs(int(headers["X-Carrier-Timestamp"]) - time.time()) < 5
    assert verify(SECRET, headers, BODY)
    # header names in any case, as a framework may lower them
    assert verify(SECRET, {k.lower(): v for k, v in headers.items()}, BODY)


def test_verify_rejects_a_wrong_secret_a_changed_body_and_a_changed_timestamp() -> None:
    headers = sign(SECRET, BODY, event="message.created", delivery="d1")
    assert not verify("another-secret", headers, BODY)
    assert not verify(SECRET, headers, BODY + b" ")
    moved = dict(headers, **{"X-Carrier-Timestamp": str(int(headers["X-Carrier-Timestamp"]) - 1)})
    assert not verify(SECRET, moved, BODY)


def test_verify_rejects_old_and_future_timestamps_even_when_correctly_signed() -> None:
    now = time.time()
    old = sign(SECRET, BODY, event="x", delivery="d", now=now - 301)
    assert not verify(SECRET, old, BODY, now=now)
    assert verify(SECRET, old, BODY, now=now, tolerance=600)
    future = sign(SECRET, BODY, event="x", delivery="d", now=now + 301)
    assert not verify(SECRET, future, BODY, now=now)
    recent = sign(SECRET, BODY, event="x", delivery="d", now=now - 299)
    assert verify(SECRET, recent, BODY, now=now)


def test_verify_rejects_missing_or_malformed_headers() -> None:
    headers = sign(SECRET, BODY, event="x", delivery="d")
    assert not verify(SECRET, {}, BODY)
    no_prefix = dict(headers, **{"X-Carrier-Signature": headers["X-Carrier-Signature"][7:]})
    assert not verify(SECRET, no_prefix, BODY)
    assert not verify(SECRET, dict(headers, **{"X-Carrier-Timestamp": "soon"}), BODY)


def test_the_snippet_in_docs_webhooks_md_verifies_what_carrier_signs() -> None:
    import re
    from pathlib import Path

    doc = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
    section = doc.read_text(encoding="utf-8").split("## Verify the signature", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "docs/webhooks.md lost its verification snippet"
    namespace: dict[str, object] = {}
    exec(compile(match.group(1), str(doc), "exec"), namespace)
    snippet = namespace["verify"]
    headers = sign(SECRET, BODY, event="message.created", delivery="d1")
    assert snippet(SECRET, headers, BODY)  # type: ignore[operator]
    assert not snippet("wrong", headers, BODY)  # type: ignore[operator]
    assert not snippet(SECRET, headers, BODY + b"x")  # type: ignore[operator]
    old = sign(SECRET, BODY, event="x", delivery="d", now=time.time() - 600)
    assert not snippet(SECRET, old, BODY)  # type: ignore[operator]
