"""Layered configuration: flags > environment > .env > stored keys > config.yaml > defaults.

The layering is done here rather than by pydantic-settings' own source chain because
`carrier config show` must tell the operator where every value came from, and because
secrets come from the keyring/secret file with their own precedence. pydantic-settings
still provides the model, the validation and the env-style coercion of strings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from carrier_cli.errors import ConfigError
from carrier_cli.paths import CarrierPaths, carrier_paths
from carrier_cli.redact import mask_secret
from carrier_cli.secrets import KEY_NAMES
from carrier_cli.usage.caps import Budget
from carrier_cli.usage.prices import ModelPrice
from carrier_cli.webhooks.settings import Webhook

EmbeddingProvider = Literal["local", "openai", "ollama"]


def _env(*names: str, url: str | None = None) -> dict[str, Any]:
    """Extra environment names operators already use for a setting (besides CARRIER_*).

    `url` marks a URL-valued setting with the kind of URL it takes ("database", "http",
    "ws"): every such setting is parsed and checked on load, and its password (if any) is
    masked wherever settings are shown and registered with the scrubber.
    """
    extra: dict[str, Any] = {"env": list(names)}
    if url is not None:
        extra["url"] = url
    return extra


# Filled from the field markers once the model exists; read by its validator at load time.
URL_KIND_OF: dict[str, str] = {}


def check_url(value: str, kind: str) -> None:
    """Raise ValueError saying why `value` is not a URL of `kind` (never repeating it:
    it may carry a user:password@ part). The rules live in memory/urls.py, beside the
    database URL's, so modules that must not import the settings can use them too."""
    from carrier_cli.memory.urls import check_url as check

    check(value, kind)


class Settings(BaseSettings):
    """Every setting Carrier reads. Keep `config.example.yaml` and `.env.example` in sync."""

    # allow_inf_nan=False: `request_timeout: .nan` (or "inf" in the environment) would
    # otherwise be accepted and make every wait either instant or endless. One switch
    # for every float setting, present and future.
    model_config = SettingsConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)

    # General
    character: str = Field("carrier", description="Default character: a name or a path.")
    log_level: str = Field("INFO", description="Logging level: DEBUG, INFO, WARNING, ERROR.")

    # Database
    database_url: str | None = Field(
        None,
        description="Database URL. Unset: SQLite in the data directory. "
        "postgresql://user:pass@host/db for PostgreSQL + pgvector.",
        json_schema_extra=_env("DATABASE_URL", url="database"),
    )

    # Embeddings
    embedding_provider: EmbeddingProvider = Field(
        "local", description="local (offline wordllama), openai, or ollama."
    )
    embedding_model: str | None = Field(
        None, description="Embedding model; default per provider (text-embedding-3-small, ...)."
    )
    embedding_dimensions: int | None = Field(
        None,
        ge=1,
        le=65_536,
        description="Dimensions requested from OpenAI embedding models (optional).",
    )
    embedding_base_url: str | None = Field(
        None,
        description="Base URL of an OpenAI-compatible embeddings endpoint.",
        json_schema_extra=_env(url="http"),
    )

    # Models
    model_provider: str | None = Field(
        None, description="openai, anthropic or ollama; overrides the character's model.provider."
    )
    model_name: str | None = Field(None, description="Large model; overrides the character's.")
    small_model: str | None = Field(None, description="Small model; overrides the character's.")
    openai_api_key: SecretStr | None = Field(
        None, description="OpenAI API key.", json_schema_extra=_env("OPENAI_API_KEY")
    )
    openai_base_url: str | None = Field(
        None,
        description="OpenAI-compatible base URL (vLLM, LM Studio, OpenRouter, a proxy).",
        json_schema_extra=_env("OPENAI_BASE_URL", url="http"),
    )
    anthropic_api_key: SecretStr | None = Field(
        None, description="Anthropic API key.", json_schema_extra=_env("ANTHROPIC_API_KEY")
    )
    anthropic_base_url: str | None = Field(
        None,
        description="Anthropic base URL.",
        json_schema_extra=_env("ANTHROPIC_BASE_URL", url="http"),
    )
    ollama_base_url: str = Field(
        "http://localhost:11434/v1",
        description="Ollama's OpenAI-compatible endpoint.",
        json_schema_extra=_env("OLLAMA_BASE_URL", url="http"),
    )
    context_window: int | None = Field(
        None,
        ge=256,
        description="Model context window in tokens. Unset: known per model (8192 if "
        "unknown or Ollama); set it for local servers with a larger or smaller window.",
    )
    request_timeout: float = Field(
        60.0, gt=0, le=86_400, description="Seconds before a model request times out."
    )
    max_retries: int = Field(3, ge=0, le=20, description="Retries on 429, 5xx and timeouts.")
    openai_http_transport: Literal["auto", "httpx", "aiohttp"] = Field(
        "auto",
        description="HTTP stack under the OpenAI SDK: auto takes aiohttp (~1.2 ms less CPU "
        "per Discord turn) when the SDK has loaded it and no proxy is set in the "
        "environment (HTTPS_PROXY...), httpx otherwise.",
    )

    # Usage records (issue 12): prices, and whether prompts are kept
    model_prices: dict[str, ModelPrice] = Field(
        {},
        description='USD per million tokens by "provider:model" or "model", e.g. '
        '{"gpt-4o": {"input": 2.5, "output": 10, "cached": 1.25}}; overrides the shipped '
        "table (carrier_cli/usage/prices.py). Unpriced models show no cost.",
    )
    log_prompts: bool = Field(
        False, description="Store each call's prompt and output with its record (secrets never)."
    )
    log_retention_days: int = Field(
        30,
        ge=1,
        description="Days the prompts and outputs stored with log_prompts are kept; the "
        "token and cost records stay.",
    )

    # Discord
    discord_api_token: SecretStr | None = Field(
        None, description="Discord bot token.", json_schema_extra=_env("DISCORD_API_TOKEN")
    )
    discord_api_base: str | None = Field(
        None,
        description="Override of Discord's REST base URL (gateway proxies, tests).",
        json_schema_extra=_env(url="http"),
    )
    discord_gateway_url: str | None = Field(
        None,
        description="Override of Discord's gateway websocket URL.",
        json_schema_extra=_env(url="ws"),
    )
    discord_max_concurrent_turns: int = Field(
        4, ge=1, le=1000, description="Model calls at once per bot."
    )
    discord_turn_timeout: float = Field(
        120.0, gt=0, description="Seconds before a turn is cancelled."
    )
    discord_apology: str = Field(
        "Sorry, something went wrong on my side. Please try again in a moment.",
        description="Reply sent when a turn fails.",
    )
    discord_typing_interval: float = Field(
        8.0, gt=0, description="Seconds between typing indicators while a reply is generated."
    )
    discord_catch_up_minutes: float = Field(
        10.0,
        ge=0,
        description="On start, answer messages addressed to the bot in the last N minutes "
        "that were stored but never answered (a crash, a turn cut off at shutdown); 0: off.",
    )
    discord_shards: int | Literal["auto"] | None = Field(
        None,
        description="Gateway shards of the bot in all (every process of the bot gives the "
        "same number), or auto: Discord's recommendation, all run here. Unset: no sharding.",
    )
    discord_shard_ids: list[int] | None = Field(
        None,
        description="The shard ids this process runs, e.g. 0,1 (needs discord_shards). "
        "Unset: all of them.",
    )
    discord_sync_commands: bool = Field(
        False,
        description="Register the slash commands (/ask, /forget, /about, /memory) globally "
        "when the bot starts (carrier run --sync-commands); a character's "
        "clients.discord.sync_commands: guild syncs them per guild instead.",
    )

    # Instagram
    instagram_account_id: str | None = Field(
        None,
        description="Instagram professional account id.",
        json_schema_extra=_env("INSTAGRAM_ACCOUNT_ID"),
    )
    instagram_access_token: SecretStr | None = Field(
        None,
        description="Graph API access token.",
        json_schema_extra=_env("INSTAGRAM_ACCESS_TOKEN"),
    )
    graph_api_host: str = Field(
        "graph.facebook.com", description="graph.facebook.com, or graph.instagram.com."
    )
    graph_api_version: str = Field("v25.0", description="Graph API version.")
    graph_api_base: str | None = Field(
        None,
        description="Full Graph API base URL override (proxies, tests): http://host:port.",
        json_schema_extra=_env(url="http"),
    )
    ftp_server: str | None = Field(
        None, description="FTP host (host or host:port).", json_schema_extra=_env("FTP_SERVER")
    )
    ftp_port: int = Field(
        21, ge=1, le=65_535, description="FTP port.", json_schema_extra=_env("FTP_PORT")
    )
    ftp_username: str | None = Field(
        None, description="FTP user.", json_schema_extra=_env("FTP_USERNAME")
    )
    ftp_password: SecretStr | None = Field(
        None, description="FTP password.", json_schema_extra=_env("FTP_PASSWORD")
    )
    ftp_tls: bool | None = Field(
        None,
        description="Explicit FTPS. Unset: used when the server offers it.",
        json_schema_extra=_env("FTP_TLS"),
    )
    ftp_directory: str = Field(
        "/",
        description="Remote directory served over HTTP.",
        json_schema_extra=_env("FTP_DIRECTORY"),
    )
    http_server: str | None = Field(
        None,
        description="Public HTTP base URL that serves ftp_directory.",
        json_schema_extra=_env("HTTP_SERVER", url="http"),
    )
    instagram_poll_interval: float = Field(
        15.0, gt=0, description="Seconds between Instagram container status checks (grows to 60)."
    )
    instagram_poll_timeout: float = Field(
        600.0, gt=0, description="Seconds to wait for Instagram to finish processing a container."
    )
    instagram_retry_delay: float = Field(
        2.0,
        ge=0,
        description="First back-off delay in seconds for FTP/HTTP/Graph retries (doubles).",
    )
    instagram_reel_upload: Literal["ftp", "resumable"] = Field(
        "ftp",
        description="How Reels reach Instagram: ftp (uploaded to FTP_SERVER, fetched from "
        "HTTP_SERVER) or resumable (sent to Meta's rupload host; Facebook Login only).",
    )
    instagram_comment_poll_interval: float = Field(
        60.0,
        gt=0,
        le=86_400,
        description="Seconds between polls of the recent posts' comments (characters with "
        "clients.instagram.reply_to_comments).",
    )
    instagram_comment_media: int = Field(
        10,
        ge=1,
        le=100,
        description="How many of the account's newest posts are polled for comments.",
    )
    instagram_app_secret: SecretStr | None = Field(
        None,
        description="Meta app secret: checks the X-Hub-Signature-256 of the webhooks Meta "
        "sends to /webhooks/instagram (carrier serve).",
        json_schema_extra=_env("INSTAGRAM_APP_SECRET"),
    )
    instagram_webhook_verify_token: SecretStr | None = Field(
        None,
        description="The verify token typed in the Meta app's webhook setup; "
        "/webhooks/instagram echoes hub.challenge only to it.",
        json_schema_extra=_env("INSTAGRAM_WEBHOOK_VERIFY_TOKEN"),
    )
    instagram_ftp_cleanup: Literal["after_publish", "keep"] = Field(
        "after_publish",
        description="after_publish: delete a post's uploaded files from the FTP server once "
        "Instagram published it (never before its container is FINISHED); keep: leave them.",
    )
    instagram_queue_poll_interval: float = Field(
        15.0,
        gt=0,
        description="Seconds between checks for due scheduled Instagram posts (carrier run "
        "--client instagram, carrier serve).",
    )

    # Long-running processes
    shutdown_grace: float = Field(
        10.0, ge=0, description="Seconds to finish in-flight work on stop."
    )

    # Several processes (docs/scaling.md)
    redis_url: str | None = Field(
        None,
        description="Redis for several Carrier processes on one PostgreSQL: events between "
        "processes, the turn queue, shared caches. Unset: one process, nothing shared.",
        json_schema_extra=_env("REDIS_URL", url="redis"),
    )
    turn_queue_max_len: int = Field(
        10_000,
        ge=10,
        le=10_000_000,
        description="Most turns waiting in one agent's Redis turn queue (`carrier serve "
        "--role api`); past it a message is refused with 503 queue_full.",
    )
    turn_queue_pickup_timeout: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Seconds a queued turn waits for a worker to take it before the API "
        "answers 503 no_worker.",
    )
    turn_queue_turn_timeout: float = Field(
        300.0,
        gt=0,
        le=86_400,
        description="Seconds the API waits for a worker's reply once it took the turn "
        "(then 504 turn_timeout; a retry with the same Idempotency-Key gets the reply).",
    )
    turn_queue_claim_idle: float = Field(
        30.0,
        ge=0.5,
        le=3600,
        description="Seconds a taken turn may go without its worker's heartbeat before "
        "another worker takes it over (a worker that died).",
    )
    worker_concurrency: int = Field(
        8, ge=1, le=1000, description="Turns one `carrier run --role worker` runs at once."
    )

    # HTTP API (`carrier serve`)
    api_host: str = Field(
        "127.0.0.1",
        description="Address `carrier serve` listens on (0.0.0.0: every interface; a "
        "non-loopback address always needs API keys).",
    )
    api_port: int = Field(8000, ge=0, le=65_535, description="Port of `carrier serve` (0: any).")
    api_cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API (e.g. https://app.example.com); "
        "empty: none.",
    )
    api_max_body_bytes: int = Field(
        1_048_576,
        ge=1024,
        le=1_073_741_824,
        description="Largest request body the API reads, in bytes (413 past it); Instagram "
        "uploads have their own api_max_upload_bytes.",
    )
    api_max_upload_bytes: int = Field(
        104_857_600,
        ge=1024,
        le=8_589_934_592,
        description="Largest media upload to POST /v1/instagram/posts, in bytes.",
    )
    api_rate_limit: int = Field(
        120, ge=0, le=1_000_000, description="Requests per minute per API key (0: unlimited)."
    )
    api_auth_failure_limit: int = Field(
        30,
        ge=0,
        le=1_000_000,
        description="Wrong API keys per minute from one client address before its key "
        "checks are refused with 429 (each costs a slow hash; 0: unlimited).",
    )
    api_sse_ping_seconds: float = Field(
        15.0,
        gt=0,
        le=3600,
        description="Seconds between keep-alive comments on a quiet Server-Sent Events stream.",
    )
    api_file_retention_hours: float = Field(
        24.0,
        gt=0,
        le=8760,
        description="Hours the API keeps the bytes of a file a reply sent (for GET "
        "/v1/agents/{agent}/files/{id}) after the last turn that sent it; then 410 Gone.",
    )
    api_file_max_total_mb: int = Field(
        1024,
        ge=10,
        le=1_048_576,
        description="MiB of reply files the API keeps on disk (<data dir>/api-files); past "
        "it the files expiring first are deleted early.",
    )

    # Webhooks (issue 13): signed POSTs of events, through a durable outbox
    webhooks: list[Webhook] = Field(
        default_factory=list,
        description="Webhook receivers: each {url, events, name?, and its secret as "
        "secret_env: VAR or secret_key: webhook:NAME (`carrier keys set`), or secret}. "
        "Events: message.created, reply.completed, instagram.published, instagram.failed, "
        "agent.error, budget.reached. In the environment: JSON.",
    )
    webhooks_allow_private: bool = Field(
        False,
        description="Allow webhook URLs on loopback, private and link-local addresses "
        "(refused by default: SSRF).",
    )
    webhook_timeout: float = Field(
        10.0, gt=0, le=300, description="Seconds a webhook receiver has to answer."
    )
    webhook_max_age_hours: float = Field(
        24.0,
        gt=0,
        le=24 * 30,
        description="Hours a delivery is retried (timeouts, connection errors, 5xx, 408, "
        "429) before it is marked failed.",
    )
    webhook_retry_delay: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="Seconds before a failed delivery's first retry; doubles each attempt "
        "(with jitter), up to an hour.",
    )
    webhook_concurrency: int = Field(
        4, ge=1, le=100, description="Webhook deliveries sent at once per process."
    )

    # Budgets
    budget: Budget | None = Field(
        None,
        description="Spending caps for every character sharing the database (a character's "
        "own `budget:` applies too): daily_tokens, daily_cost_usd, monthly_tokens, "
        "monthly_cost_usd, action (refuse, small or warn), message. In the environment: JSON.",
    )

    @field_validator("model_prices", mode="before")
    @classmethod
    def _prices_from_json(cls, value: Any) -> Any:
        """The environment gives a string: read it as JSON."""
        if isinstance(value, str):
            import json

            try:
                return json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(f"is not JSON ({exc.msg})") from None
        return value

    @field_validator("webhooks", mode="before")
    @classmethod
    def _webhooks_json(cls, value: Any) -> Any:
        """CARRIER_WEBHOOKS='[{"url": "https://...", "events": [...], "secret_env": "X"}]'."""
        if isinstance(value, str):
            import json

            try:
                return json.loads(value) if value.strip() else []
            except ValueError:
                raise ValueError(
                    'expected a list, in the environment as JSON: [{"url": "https://...", '
                    '"events": ["message.created"], "secret_env": "HOOK_SECRET"}]'
                ) from None
        return value

    @field_validator("webhooks", mode="after")
    @classmethod
    def _webhook_names_unique(cls, value: list[Webhook]) -> list[Webhook]:
        """Deliveries are keyed by the webhook's name: two with one name would share them."""
        seen: dict[str, int] = {}
        for index, hook in enumerate(value):
            if hook.key in seen:
                raise ValueError(
                    f"webhooks[{seen[hook.key]}] and webhooks[{index}] have the same name "
                    f"{hook.key!r} (or the same URL without names); give each a distinct name"
                )
            seen[hook.key] = index
        return value

    @field_validator("api_cors_origins", mode="before")
    @classmethod
    def _origins_from_text(cls, value: Any) -> Any:
        """CARRIER_API_CORS_ORIGINS="https://a.example, https://b.example" (or JSON)."""
        if isinstance(value, str) and not value.lstrip().startswith("["):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("discord_shards", mode="before")
    @classmethod
    def _shard_count(cls, value: Any) -> Any:
        """A whole number or `auto`, checked by the Discord client's own rules."""
        if value is None or value == "":
            return None
        from carrier_cli.clients.discord.sharding import parse_shard_count

        return parse_shard_count(value)

    @field_validator("discord_shard_ids", mode="before")
    @classmethod
    def _shard_ids(cls, value: Any) -> Any:
        """CARRIER_DISCORD_SHARD_IDS="0,1" (or a YAML list): distinct ids ≥ 0."""
        if value is None or value == "":
            return None
        from carrier_cli.clients.discord.sharding import parse_shard_ids

        return list(parse_shard_ids(value))

    @field_validator("budget", mode="before")
    @classmethod
    def _budget_json(cls, value: Any) -> Any:
        """The environment and .env carry text: CARRIER_BUDGET='{"daily_tokens": 100000}'."""
        if isinstance(value, str):
            import json

            try:
                return json.loads(value) if value.strip() else None
            except ValueError:
                raise ValueError(
                    'expected a mapping, in the environment as JSON: {"daily_tokens": 100000}'
                ) from None
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _check_url_settings(cls, value: Any, info: ValidationInfo) -> Any:
        """Parse every URL-valued setting on load, so a bad one is refused with its source."""
        kind = URL_KIND_OF.get(info.field_name or "")
        if kind is not None and isinstance(value, str):
            check_url(value, kind)
        return value

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        # Layering is done by `load_settings`; the model only validates what it is given.
        return (init_settings,)

    def secret(self, name: str) -> str | None:
        value = getattr(self, name)
        return value.get_secret_value() if isinstance(value, SecretStr) else value


SECRET_FIELDS: frozenset[str] = frozenset(
    name for name, info in Settings.model_fields.items() if info.annotation == SecretStr | None
)

# Setting -> kind of URL, for every URL-valued setting (marked with `_env(url=...)`).
URL_KIND_OF.update(
    {
        name: str(info.json_schema_extra["url"])
        for name, info in Settings.model_fields.items()
        if isinstance(info.json_schema_extra, dict) and "url" in info.json_schema_extra
    }
)
URL_FIELDS: frozenset[str] = frozenset(URL_KIND_OF)


def env_names(field_name: str) -> list[str]:
    """Environment variables for a setting, in the order they are consulted."""
    info = Settings.model_fields[field_name]
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    names = [f"CARRIER_{field_name.upper()}"]
    names.extend(str(n) for n in extra.get("env", []))  # type: ignore[union-attr]
    return names


@dataclass
class LoadedSettings:
    settings: Settings
    sources: dict[str, str] = field(default_factory=dict)
    config_file: Path | None = None
    paths: CarrierPaths | None = None

    def display_rows(self) -> list[tuple[str, str, str]]:
        """(setting, shown value, source) with secrets masked."""
        rows = []
        for name in Settings.model_fields:
            raw = getattr(self.settings, name)
            if isinstance(raw, SecretStr):
                shown = mask_secret(raw.get_secret_value())
            elif raw is None:
                shown = ""
            elif isinstance(raw, BaseModel):  # a mapping setting (budget): as its JSON
                shown = raw.model_dump_json(exclude_none=True)
            elif name == "webhooks":  # secrets masked, URL passwords too
                import json

                shown = json.dumps([hook.display() for hook in raw]) if raw else ""
            elif name in URL_FIELDS:
                from carrier_cli.memory.urls import mask_url

                shown = mask_url(str(raw))
            else:
                shown = str(raw)
            rows.append((name, shown, self.sources.get(name, "default")))
        return rows


def find_config_file(explicit: Path | None, paths: CarrierPaths, cwd: Path) -> Path | None:
    """`--config` if given, else ./config.yaml, else the user config dir's config.yaml."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(
                f"Config file {explicit} (from --config) does not exist.",
                hint="Create it with `carrier config init --path FILE` or fix the path.",
            )
        return explicit
    for candidate in (cwd / "config.yaml", paths.config_file):
        if candidate.is_file():
            return candidate
    return None


def _read_yaml_config(path: Path) -> dict[str, Any]:
    import yaml

    from carrier_cli import safe_yaml
    from carrier_cli.textfile import read_text

    text = read_text(path, what="config file")
    try:
        # Bounded like every YAML Carrier reads: an alias bomb or a recursive alias is
        # refused (file:line:column) instead of filling memory or overflowing the stack.
        data = safe_yaml.load(text, path) or {}
    except safe_yaml.YamlLimitError as exc:
        raise ConfigError(
            f"Config file {exc.message}",
            hint=exc.hint or "Fix the file, or regenerate it with `carrier config init --force`.",
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(
            f"{where}: config file is not valid YAML ({getattr(exc, 'problem', exc)}).",
            hint="Fix the syntax, or regenerate it with `carrier config init --force`.",
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of setting: value at the top level.")
    unknown = [k for k in data if k not in Settings.model_fields]
    if unknown:
        import difflib

        parts = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), list(Settings.model_fields), n=1)
            parts.append(f"`{key}`" + (f" (did you mean `{close[0]}`?)" if close else ""))
        raise ConfigError(
            f"{path}: unknown setting {', '.join(parts)}.",
            hint="See config.example.yaml or `carrier config show` for the valid names.",
        )
    return data


def _read_env(environ: Mapping[str, str], label: str) -> tuple[dict[str, Any], dict[str, str]]:
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in Settings.model_fields:
        for var in env_names(name):
            if environ.get(var) not in (None, ""):
                values[name] = environ[var]
                sources[name] = f"{label} {var}"
                break
    return values, sources


def _hint_for(name: str) -> str | None:
    """What a valid value looks like, for the settings whose rules are not obvious."""
    kind = URL_KIND_OF.get(name)
    if kind == "database":
        from carrier_cli.memory.urls import DATABASE_URL_HINT

        return DATABASE_URL_HINT
    if kind is not None:
        example = {"ws": "wss://host/path", "redis": "redis://:password@host:6379/0"}.get(
            kind, "https://host:port/path"
        )
        return f"`{name}` takes a URL such as {example}."
    return None


def load_settings(
    *,
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    use_stored_keys: bool = True,
) -> LoadedSettings:
    """Build the effective settings and remember where each value came from."""
    environ = os.environ if environ is None else environ
    cwd = cwd or Path.cwd()
    paths = carrier_paths()
    layers: list[tuple[dict[str, Any], dict[str, str]]] = []  # lowest priority first

    path = find_config_file(config_file, paths, cwd)
    if path is not None:
        data = _read_yaml_config(path)
        layers.append((data, dict.fromkeys(data, f"config {path}")))

    if use_stored_keys:
        from carrier_cli.secrets import SecretStore

        store = SecretStore(paths)
        stored: dict[str, Any] = {}
        stored_src: dict[str, str] = {}
        for key_name, setting in KEY_NAMES.items():
            found = store.get(key_name)
            if found is not None:
                stored[setting] = found.value
                stored_src[setting] = f"stored key '{key_name}' ({found.backend})"
        layers.append((stored, stored_src))

    dotenv_path = cwd / ".env"
    if dotenv_path.is_file():
        import io

        from dotenv import dotenv_values

        from carrier_cli.textfile import read_text

        # python-dotenv would open the file itself and fail with a bare UnicodeDecodeError
        # on a binary .env; read it through the one place that names the file instead.
        text = read_text(dotenv_path, what=".env file")
        dot = {k: v for k, v in dotenv_values(stream=io.StringIO(text)).items() if v is not None}
        layers.append(_read_env(dot, f".env ({dotenv_path})"))

    layers.append(_read_env(environ, "env"))
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    layers.append((flags, dict.fromkeys(flags, "flag")))

    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for values, origin in layers:
        merged.update(values)
        sources.update(origin)
    try:
        settings = Settings(**merged)
    except ValidationError as exc:
        problems = []
        hints = []
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else "?"
            where = sources.get(name, "default")
            # A validator's ValueError reads "Value error, <why>": keep only the why.
            msg = str(err["msg"]).removeprefix("Value error, ")
            # A nested setting (budget.daily_tokens, webhooks[0].url) is named in full.
            shown = "".join(
                f"[{part}]" if isinstance(part, int) else f".{part}" for part in err["loc"]
            ).lstrip(".")
            shown = shown or name
            problems.append(f"`{shown}` (from {where}): {msg}")
            hint = _hint_for(name)
            if hint and hint not in hints:
                hints.append(hint)
        hints.append("Fix the value where it comes from; `carrier config show` lists every source.")
        raise ConfigError(
            "Invalid configuration: " + "; ".join(problems) + ".", hint=" ".join(hints)
        ) from None
    return LoadedSettings(settings=settings, sources=sources, config_file=path, paths=paths)
