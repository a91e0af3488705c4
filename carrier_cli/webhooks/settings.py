"""One `webhooks:` entry, validated on load so a typo is refused naming its index and field.

The secret should not sit in config.yaml: `secret_env` names an environment variable and
`secret_key` a `carrier keys set webhook:NAME` entry; both are read when the sender starts
(`resolve_secret`), so the value never passes through the settings that `carrier config
show` prints. A literal `secret` is accepted (a SecretStr, masked everywhere) for tests and
.env-only set-ups.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from carrier_cli.errors import ConfigError
from carrier_cli.memory.urls import check_url

WEBHOOK_EVENTS: tuple[str, ...] = (
    "message.created",
    "reply.completed",
    "instagram.published",
    "instagram.failed",
    "agent.error",
    "budget.reached",
)
TEST_EVENT = "webhook.test"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Webhook(BaseModel):
    """A receiver: where to POST, which events, and where its signing secret is kept."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="http(s) URL the deliveries are POSTed to.")
    events: list[str] = Field(min_length=1, description="Event types sent to this receiver.")
    name: str | None = Field(None, description="Short name (deliveries are keyed by it).")
    secret: SecretStr | None = None
    secret_env: str | None = None
    secret_key: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        check_url(value, "http")
        return value.strip()

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        unknown = [e for e in value if e not in WEBHOOK_EVENTS]
        if unknown:
            raise ValueError(
                f"unknown event {', '.join(repr(e) for e in unknown)}; known events: "
                f"{', '.join(WEBHOOK_EVENTS)}"
            )
        return list(dict.fromkeys(value))

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError("must be 1-64 letters, digits, '.', '-' or '_'")
        return value

    @field_validator("secret_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV.match(value):
            raise ValueError("must be an environment variable name such as HOOK_SECRET")
        return value

    @field_validator("secret_key")
    @classmethod
    def _key_name(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("webhook:"):
            raise ValueError(
                "must be a stored key name starting with 'webhook:' (store it with "
                "`carrier keys set webhook:NAME`)"
            )
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> Webhook:
        given = [f for f in ("secret", "secret_env", "secret_key") if getattr(self, f) is not None]
        if len(given) != 1:
            problem = "has no secret" if not given else f"has both {' and '.join(given)}"
            raise ValueError(
                f"{problem}: give exactly one of secret_env (an environment variable), "
                "secret_key (`carrier keys set webhook:NAME`) or secret"
            )
        return self

    @property
    def key(self) -> str:
        """What deliveries are keyed by: the name, else a short hash of the URL."""
        return self.name or "url-" + url_hash(self.url)[:12]

    def display(self) -> dict[str, Any]:
        """What `carrier config show` and `carrier webhooks list` print: never the secret."""
        from carrier_cli.memory.urls import mask_url

        shown: dict[str, Any] = {"name": self.key, "url": mask_url(self.url), "events": self.events}
        if self.secret_env:
            shown["secret_env"] = self.secret_env
        elif self.secret_key:
            shown["secret_key"] = self.secret_key
        else:
            shown["secret"] = "(set, hidden)"
        return shown


def url_hash(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def resolve_secret(hook: Webhook, index: int) -> str:
    """The signing secret, from wherever the entry says it is; registered for scrubbing."""
    from carrier_cli.redact import register_secret

    where = f"webhooks[{index}]"
    if hook.secret is not None:
        value: str | None = hook.secret.get_secret_value()
        if not value:
            raise ConfigError(f"`{where}.secret` is empty.", hint="Give the receiver's secret.")
    elif hook.secret_env is not None:
        value = os.environ.get(hook.secret_env)
        if not value:
            raise ConfigError(
                f"`{where}.secret_env` names ${hook.secret_env}, which is not set.",
                hint=f"Export {hook.secret_env} with the receiver's secret, or use secret_key.",
            )
    else:
        from carrier_cli.secrets import SecretStore

        assert hook.secret_key is not None
        found = SecretStore().get(hook.secret_key)
        value = found.value if found is not None else None
        if not value:
            raise ConfigError(
                f"`{where}.secret_key` names the stored key '{hook.secret_key}', which does "
                "not exist.",
                hint=f"Store it with `carrier keys set {hook.secret_key}`.",
            )
    register_secret(value)
    return value
