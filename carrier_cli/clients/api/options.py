"""What the API reads of the settings, as one small frozen object.

`carrier serve`'s entry (server.py) takes the settings and builds this once; the app and
its routes take `ApiOptions`. This module is the only place the API code reads `Settings`
fields by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from carrier_cli.config import Settings


@dataclass(frozen=True, kw_only=True)
class ApiOptions:
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 1_048_576  # 413 past it
    max_upload_bytes: int = 104_857_600  # Instagram media uploads
    rate_limit: int = 120  # requests per minute per key; 0: unlimited
    auth_failure_limit: int = 30  # wrong keys per minute per client address; 0: unlimited
    shutdown_grace: float = 10.0  # seconds to finish in-flight requests on stop
    sse_ping_seconds: float = 15.0  # a `: ping` comment on a quiet event stream
    extra: dict[str, object] = field(default_factory=dict)  # for features' own knobs
    # Meta's webhooks (/webhooks/instagram): the app secret signs them, the verify token
    # answers the subscription handshake. None: that endpoint answers 503 not_configured.
    instagram_app_secret: str | None = field(default=None, repr=False)
    instagram_webhook_verify_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiOptions:
        return cls(
            cors_origins=tuple(settings.api_cors_origins),
            max_body_bytes=settings.api_max_body_bytes,
            max_upload_bytes=settings.api_max_upload_bytes,
            rate_limit=settings.api_rate_limit,
            auth_failure_limit=settings.api_auth_failure_limit,
            shutdown_grace=settings.shutdown_grace,
            sse_ping_seconds=settings.api_sse_ping_seconds,
            instagram_app_secret=settings.secret("instagram_app_secret"),
            instagram_webhook_verify_token=settings.secret("instagram_webhook_verify_token"),
        )
