"""The signature on every delivery, and a `verify` receivers can copy.

    X-Carrier-Timestamp: 1764763200
    X-Carrier-Signature: sha256=<hex HMAC-SHA256(secret, "1764763200." + raw body)>
    X-Carrier-Event: message.created
    X-Carrier-Delivery: <unique delivery id; the same on every retry of it>

The timestamp is inside the signed text, so a captured request cannot be replayed later
with a fresh timestamp; receivers refuse timestamps older than `tolerance` seconds
(5 minutes, as Stripe) and dedupe by the delivery id (delivery is at least once). A retry
is signed again with its own timestamp. `verify` uses only the standard library, so it
can be copied into a receiver as it is.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

SIGNATURE = "X-Carrier-Signature"
TIMESTAMP = "X-Carrier-Timestamp"
EVENT = "X-Carrier-Event"
DELIVERY = "X-Carrier-Delivery"
TOLERANCE = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`sha256=<hex>` over "<timestamp>.<body>"."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def sign(
    secret: str, body: bytes, *, event: str, delivery: str, now: float | None = None
) -> dict[str, str]:
    """The headers of one attempt."""
    timestamp = int(time.time() if now is None else now)
    return {
        "Content-Type": "application/json",
        EVENT: event,
        DELIVERY: delivery,
        TIMESTAMP: str(timestamp),
        SIGNATURE: signature(secret, timestamp, body),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    tolerance: int = TOLERANCE,
    now: float | None = None,
) -> bool:
    """Whether a request came from Carrier with this secret, recently. Pass the raw body
    as received (before any JSON parsing) and the headers (any letter case)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    given = lowered.get(SIGNATURE.lower(), "")
    stamp = lowered.get(TIMESTAMP.lower(), "")
    if not given.startswith("sha256=") or not stamp.isdigit():
        return False
    timestamp = int(stamp)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False  # too old (a replay) or from the future
    return hmac.compare_digest(given, signature(secret, timestamp, body))
