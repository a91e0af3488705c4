"""The commented config.yaml written by `carrier config init` (and kept as config.example.yaml)."""

from __future__ import annotations

import json

from carrier_cli.config import SECRET_FIELDS, Settings, env_names

_SECTIONS = [
    ("General", ["character", "log_level"]),
    ("Database", ["database_url"]),
    (
        "Several processes",
        [
            "redis_url",
            "turn_queue_max_len",
            "turn_queue_pickup_timeout",
            "turn_queue_turn_timeout",
            "turn_queue_claim_idle",
            "worker_concurrency",
        ],
    ),
    (
        "Embeddings",
        ["embedding_provider", "embedding_model", "embedding_dimensions", "embedding_base_url"],
    ),
    (
        "Models",
        [
            "model_provider",
            "model_name",
            "small_model",
            "openai_api_key",
            "openai_base_url",
            "anthropic_api_key",
            "anthropic_base_url",
            "ollama_base_url",
            "context_window",
            "request_timeout",
            "max_retries",
        ],
    ),
    ("Usage records", ["model_prices", "log_prompts", "log_retention_days"]),
    (
        "HTTP API (carrier serve)",
        [
            "api_host",
            "api_port",
            "api_cors_origins",
            "api_max_body_bytes",
            "api_max_upload_bytes",
            "api_rate_limit",
            "api_auth_failure_limit",
            "api_sse_ping_seconds",
        ],
    ),
    (
        "Discord",
        [
            "discord_api_token",
            "discord_api_base",
            "discord_gateway_url",
            "discord_max_concurrent_turns",
            "discord_turn_timeout",
            "discord_apology",
            "discord_typing_interval",
            "discord_shards",
            "discord_shard_ids",
        ],
    ),
    (
        "Instagram",
        [
            "instagram_account_id",
            "instagram_access_token",
            "graph_api_host",
            "graph_api_version",
            "graph_api_base",
            "ftp_server",
            "ftp_port",
            "ftp_username",
            "ftp_password",
            "ftp_tls",
            "ftp_directory",
            "http_server",
            "instagram_poll_interval",
            "instagram_poll_timeout",
            "instagram_retry_delay",
            "instagram_reel_upload",
        ],
    ),
    (
        "Webhooks",
        [
            "webhooks",
            "webhooks_allow_private",
            "webhook_timeout",
            "webhook_max_age_hours",
            "webhook_retry_delay",
            "webhook_concurrency",
        ],
    ),
    ("Long-running processes", ["shutdown_grace"]),
    ("Budgets", ["budget"]),
]

# Commented example lines under a setting whose value is a mapping.
_EXAMPLES: dict[str, list[str]] = {
    "budget": [
        "#   daily_tokens: 200000",
        "#   monthly_cost_usd: 20.0",
        "#   action: refuse  # or small (switch to the small model), warn (log only)",
        '#   message: "I have reached my usage limit for now. Please try again later."',
    ],
    "webhooks": [
        "#   - name: myapp",
        "#     url: https://hooks.example.com/carrier",
        "#     events: [message.created, reply.completed, agent.error]",
        "#     secret_env: MYAPP_WEBHOOK_SECRET  # or secret_key: webhook:myapp",
    ],
}


def sections() -> list[tuple[str, list[str]]]:
    listed = {name for _, names in _SECTIONS for name in names}
    missing = [n for n in Settings.model_fields if n not in listed]
    return _SECTIONS + ([("Other", missing)] if missing else [])


def render_config_yaml() -> str:
    lines = [
        "# Carrier configuration. Priority, highest first: command-line flags, environment",
        "# variables, ./.env, stored keys (`carrier keys set`), this file, defaults.",
        "# Keep secrets out of this file: use `carrier keys set NAME` or the environment.",
        "",
    ]
    for title, names in sections():
        lines.append(f"# --- {title} ---")
        for name in names:
            info = Settings.model_fields[name]
            lines.append(f"# {info.description} Env: {', '.join(env_names(name))}.")
            default = info.get_default(call_default_factory=True)
            if name in SECRET_FIELDS:
                lines.append(f"# {name}:  # use `carrier keys set` instead")
            elif default is None or name in _EXAMPLES:  # uncommented whole, valid YAML
                lines.append(f"# {name}:")
                lines.extend(_EXAMPLES.get(name, []))
            else:
                lines.append(f"# {name}: {json.dumps(default)}")
        lines.append("")
    return "\n".join(lines)


def render_env_example() -> str:
    lines = ["# Environment variables Carrier reads (copy to .env and fill in what you use).", ""]
    for title, names in sections():
        lines.append(f"# --- {title} ---")
        for name in names:
            info = Settings.model_fields[name]
            lines.append(f"# {info.description}")
            lines.append(f"# {env_names(name)[-1]}=")
        lines.append("")
    return "\n".join(lines)
