"""What the webhook sender reads of the settings, as one small frozen object.

The edges (`sender.services`, `sender.webhook_service`, `admin.send_test`) take the
settings and build this once; the sender and the HTTP code take `WebhookOptions`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from carrier_cli.webhooks.settings import Webhook

if TYPE_CHECKING:
    from carrier_cli.config import Settings


@dataclass(frozen=True, kw_only=True)
class WebhookOptions:
    hooks: tuple[Webhook, ...] = ()
    allow_private: bool = False  # loopback/private receivers allowed (SSRF off)
    timeout: float = 10.0  # seconds a receiver has to answer
    max_age_hours: float = 24.0  # retried this long, then failed
    retry_delay: float = 5.0  # seconds before the first retry; doubles
    concurrency: int = 4  # deliveries at once

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookOptions:
        return cls(
            hooks=tuple(settings.webhooks),
            allow_private=settings.webhooks_allow_private,
            timeout=settings.webhook_timeout,
            max_age_hours=settings.webhook_max_age_hours,
            retry_delay=settings.webhook_retry_delay,
            concurrency=settings.webhook_concurrency,
        )
