"""Model-provider failures, worded so the operator knows what to do next.

Every message names the provider (and the base URL when it matters) and the command or
environment variable that fixes it. No message ever contains an API key: keys are never
passed in here, and `carrier_cli.state.scrub` runs over everything printed anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

from carrier_cli.errors import InputError, RuntimeFailure

PROVIDER_LABELS: dict[str, str] = {
    "openai": "OpenAI",
    "anthropic": "Anthropic",
    "ollama": "Ollama",
    "openai-compatible": "the OpenAI-compatible server",
    "openrouter": "OpenRouter",
    "vllm": "vLLM",
    "lmstudio": "LM Studio",
}

# provider -> (short key name for `carrier keys set`, environment variable)
KEY_SOURCES: dict[str, tuple[str, str]] = {
    "openai": ("openai", "OPENAI_API_KEY"),
    "openrouter": ("openai", "OPENAI_API_KEY"),
    "anthropic": ("anthropic", "ANTHROPIC_API_KEY"),
}


def provider_label(provider: str) -> str:
    return PROVIDER_LABELS.get(provider, provider)


@dataclass(frozen=True)
class ProviderOption:
    """One way to get a working model, for `carrier chat`'s first-run help and prompt."""

    provider: str  # "openai" | "anthropic" | "ollama"
    title: str
    how: str
    key_name: str | None  # name for `carrier keys set`, None when no key is needed
    env_var: str | None


def provider_options() -> list[ProviderOption]:
    """The three ways to configure a model, in the order they are offered."""
    return [
        ProviderOption(
            "openai",
            "OpenAI API key",
            "run `carrier keys set openai` or set the OPENAI_API_KEY environment variable",
            "openai",
            "OPENAI_API_KEY",
        ),
        ProviderOption(
            "anthropic",
            "Anthropic API key",
            "run `carrier keys set anthropic` or set the ANTHROPIC_API_KEY environment variable",
            "anthropic",
            "ANTHROPIC_API_KEY",
        ),
        ProviderOption(
            "ollama",
            "A local Ollama",
            "install Ollama, run `ollama serve` and `ollama pull llama3.2`, then pass "
            "`--provider ollama` or set `model.provider: ollama` in the character "
            "(or model_provider: ollama in config.yaml)",
            None,
            None,
        ),
    ]


class NoProviderConfigured(InputError):
    """No flag, setting, character field or stored key says which model to use."""

    def __init__(self) -> None:
        ways = "; ".join(
            f"({i}) {opt.title}: {opt.how}" for i, opt in enumerate(provider_options(), 1)
        )
        super().__init__(
            f"No model provider is configured. There are three ways to get one: {ways}.",
            hint="`carrier config show` lists where each setting comes from.",
        )


class MissingApiKey(InputError):
    def __init__(self, provider: str) -> None:
        self.provider = provider
        key_name, env_var = KEY_SOURCES.get(provider, ("openai", "OPENAI_API_KEY"))
        super().__init__(
            f"The {provider_label(provider)} provider needs an API key and none is set.",
            hint=f"Store one with `carrier keys set {key_name}` or set the {env_var} "
            "environment variable (or choose another provider with --provider).",
        )


class KeyRejected(InputError):
    """401: the key exists but the service refused it."""

    def __init__(self, provider: str, base_url: str | None = None) -> None:
        self.provider = provider
        key_name, env_var = KEY_SOURCES.get(provider, ("openai", "OPENAI_API_KEY"))
        where = f" at {base_url}" if base_url else ""
        super().__init__(
            f"The {provider_label(provider)} key was rejected (401){where}: it is wrong, "
            "revoked or belongs to another service.",
            hint=f"Store a valid key with `carrier keys set {key_name}` or fix the {env_var} "
            "environment variable.",
        )


class PermissionDenied(InputError):
    """403: the key works but may not use this model or endpoint."""

    def __init__(self, provider: str, model: str, detail: str) -> None:
        super().__init__(
            f"{provider_label(provider)} refused access to model '{model}' (403): {detail}",
            hint="Check the account's model access or choose another model with --model.",
        )


class UnknownModel(InputError):
    """404 / model_not_found."""

    def __init__(self, provider: str, model: str, base_url: str | None = None) -> None:
        self.provider = provider
        self.model = model
        if provider == "anthropic":
            listing = "See https://docs.anthropic.com/en/docs/about-claude/models for valid names"
        elif provider == "ollama":
            listing = "Run `ollama list` to see the models you have (`ollama pull NAME` adds one)"
        else:
            url = (base_url or "https://api.openai.com/v1").rstrip("/")
            listing = f"List the valid names with `carrier models list` or GET {url}/models"
        super().__init__(
            f"{provider_label(provider)} does not know the model '{model}' (404).",
            hint=f"{listing}, then set it with --model, model_name in config.yaml or "
            "model.name in the character.",
        )


class BadRequest(InputError):
    """400/422: the request was refused as invalid (too long, bad parameter)."""

    def __init__(self, provider: str, model: str, detail: str) -> None:
        hint = "Check max_tokens/temperature in the character's model settings."
        if "image" in detail.lower():  # images sent to a model that takes none
            hint = (
                f"'{model}' does not seem to accept images: set `model.vision: false` in the "
                "character (images are then described to it as text), or use a vision model."
            )
        super().__init__(
            f"{provider_label(provider)} refused the request for model '{model}' as invalid: "
            f"{detail}",
            hint=hint,
        )


class ProviderUnavailable(RuntimeFailure):
    """Transient failures (429, 5xx, timeouts, refused connections) outlasted the retries."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(
            message,
            hint=hint
            or "Try again later; `max_retries` and `request_timeout` in config.yaml "
            "control how long Carrier keeps trying.",
        )


class ProviderResponseError(RuntimeFailure):
    """The server answered, but not in the provider's format (malformed JSON or SSE)."""

    def __init__(self, provider: str, base_url: str | None, detail: str) -> None:
        where = f" at {base_url}" if base_url else ""
        super().__init__(
            f"{provider_label(provider)}{where} sent a response Carrier could not read ({detail}).",
            hint="Check that the base URL points at the provider's API"
            + (
                " (for OpenAI-compatible servers it usually ends in /v1)."
                if provider != "anthropic"
                else " (https://api.anthropic.com, without /v1)."
            ),
        )
