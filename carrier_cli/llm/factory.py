"""Choosing the model: which provider, which large and small model, which key and URL.

Precedence, highest first: command-line flags, settings (`model_provider`, `model_name`,
`small_model` from env/config), the character's `model` block, then auto-detection from
the keys present (OpenAI, then Anthropic). A layer's model names only count if that layer
names no provider or the same provider as the one chosen, so `--provider anthropic` never
sends a character's `gpt-4o` to Anthropic.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import SecretStr

from carrier_cli.errors import InputError
from carrier_cli.llm.base import ChatModel, GenerationParams
from carrier_cli.llm.errors import MissingApiKey, NoProviderConfigured

if TYPE_CHECKING:
    from carrier_cli.config import Settings
    from carrier_cli.llm.retry import RetryPolicy

OPENAI_COMPATIBLE = ("openai-compatible", "openrouter", "vllm", "lmstudio")
PROVIDERS = ("openai", "anthropic", "ollama", *OPENAI_COMPATIBLE)

# provider -> (large, small) used when nothing names a model
DEFAULT_MODELS: dict[str, tuple[str, str]] = {
    "openai": ("gpt-4o-mini", "gpt-4o-mini"),
    "anthropic": ("claude-haiku-4-5", "claude-haiku-4-5"),
    "ollama": ("llama3.2", "llama3.2"),
}

# Where OpenAI-compatible servers listen by default when openai_base_url is not set.
DEFAULT_BASE_URLS: dict[str, str] = {
    "openrouter": "https://openrouter.ai/api/v1",
    "vllm": "http://localhost:8000/v1",
    "lmstudio": "http://localhost:1234/v1",
}

_ALIASES = {
    "openai_compatible": "openai-compatible",
    "compatible": "openai-compatible",
    "lm-studio": "lmstudio",
    "lm_studio": "lmstudio",
    "claude": "anthropic",
}


class CharacterModelSettings(Protocol):
    """What we read from a character's `model` block (carrier_cli.character.ModelSettings)."""

    @property
    def provider(self) -> str | None: ...
    @property
    def name(self) -> str | None: ...
    @property
    def small(self) -> str | None: ...
    @property
    def temperature(self) -> float | None: ...
    @property
    def max_tokens(self) -> int | None: ...


@dataclass(frozen=True)
class ModelConfig:
    """The resolved choice. `api_key` is a SecretStr: its repr and str are masked."""

    provider: str
    large: str
    small: str
    base_url: str | None = None
    api_key: SecretStr | None = field(default=None, repr=False)
    temperature: float = 0.7
    max_tokens: int = 1024
    context_window: int = 8192
    timeout: float = 60.0
    max_retries: int = 3
    source: str = "default"  # where the provider choice came from, for `--verbose` output
    window_override: int | None = None  # the context_window setting, for every model
    http_transport: Literal["auto", "httpx", "aiohttp"] = "auto"  # OpenAI SDK's HTTP stack

    def window_for(self, model: str) -> int:
        """Context window of `model` (large or small) under this config."""
        from carrier_cli.llm.tokens import context_window

        return self.window_override or context_window(self.provider, model)

    def params(self, *, small: bool = False, **overrides: Any) -> GenerationParams:
        """GenerationParams for the large (default) or small model with this config's
        temperature and max_tokens; keyword overrides win."""
        values: dict[str, Any] = {
            "model": self.small if small else self.large,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        values.update(overrides)
        return GenerationParams(**values)

    def retry_policy(self) -> RetryPolicy:
        from carrier_cli.llm.retry import RetryPolicy

        return RetryPolicy.from_settings(self.max_retries, self.timeout)

    def with_model(self, large: str) -> ModelConfig:
        from carrier_cli.llm.tokens import context_window

        return replace(
            self,
            large=large,
            context_window=self.window_override or context_window(self.provider, large),
        )


def normalize_provider(value: str, *, origin: str) -> str:
    name = value.strip().lower()
    name = _ALIASES.get(name, name)
    if name not in PROVIDERS:
        raise InputError(
            f"Unknown model provider '{value}' (from {origin}).",
            hint=f"Use one of: {', '.join(PROVIDERS)}.",
        )
    return name


def _infer_provider(model_name: str) -> str | None:
    lowered = model_name.lower()
    if lowered.startswith("claude"):
        return "anthropic"
    if lowered.startswith(("gpt-", "o1", "o3", "o4", "chatgpt")):
        return "openai"
    return None


def resolve_model_config(
    settings: Settings,
    character_model: CharacterModelSettings | None,
    *,
    provider: str | None = None,
    model: str | None = None,
    small_model: str | None = None,
) -> ModelConfig:
    """Decide provider, models, key and base URL. Raises NoProviderConfigured,
    MissingApiKey or InputError (bad provider name, compatible server without a URL)."""
    from carrier_cli.llm.tokens import context_window

    char_provider = getattr(character_model, "provider", None) if character_model else None
    layers: list[tuple[str, str | None, str | None, str | None]] = [
        ("flag", provider, model, small_model),
        ("settings", settings.model_provider, settings.model_name, settings.small_model),
        (
            "character",
            char_provider,
            getattr(character_model, "name", None) if character_model else None,
            getattr(character_model, "small", None) if character_model else None,
        ),
    ]
    normalized = [
        (src, normalize_provider(p, origin=_origin(src)) if p else None, large, small)
        for src, p, large, small in layers
    ]

    chosen: str | None = None
    source = "auto-detect"
    # Layer by layer: a provider, or a model name that implies one (`--model claude-...`
    # outranks model_provider: openai in config.yaml, as flags outrank settings).
    for src, p, large, _ in normalized:
        if p:
            chosen, source = p, src
            break
        inferred = _infer_provider(large) if large else None
        if inferred:
            chosen, source = inferred, f"{src} (model name)"
            break
    if chosen is None:
        if settings.secret("openai_api_key"):
            chosen = "openai"
        elif settings.secret("anthropic_api_key"):
            chosen = "anthropic"
        else:
            raise NoProviderConfigured()

    # A layer without a provider still "belongs" to one when its model name says so
    # (claude-* is Anthropic's), so --provider openai skips a configured claude model.
    compatible = [
        (large, small)
        for _, p, large, small in normalized
        if (p or (_infer_provider(large) if large else None) or chosen) == chosen
    ]
    large = next((lg for lg, _ in compatible if lg), None)
    small = next((sm for _, sm in compatible if sm), None)
    defaults = DEFAULT_MODELS.get(chosen)
    if large is None:
        if defaults is None:
            raise InputError(
                f"The {chosen} provider needs a model name.",
                hint="Pass --model NAME, set model_name in config.yaml, or model.name in "
                "the character.",
            )
        large = defaults[0]
    if small is None:
        # Hosted providers have a cheap default small model; a local server may only have
        # the one model the operator pulled, so its small model is the large one.
        small = defaults[1] if defaults and chosen in ("openai", "anthropic") else large

    api_key, base_url = _key_and_url(settings, chosen)
    temperature = getattr(character_model, "temperature", None) if character_model else None
    max_tokens = getattr(character_model, "max_tokens", None) if character_model else None
    return ModelConfig(
        provider=chosen,
        large=large,
        small=small,
        base_url=base_url,
        api_key=SecretStr(api_key) if api_key else None,
        temperature=0.7 if temperature is None else float(temperature),
        max_tokens=1024 if max_tokens is None else int(max_tokens),
        context_window=settings.context_window or context_window(chosen, large),
        window_override=settings.context_window,
        timeout=settings.request_timeout,
        max_retries=settings.max_retries,
        http_transport=settings.openai_http_transport,
        source=source,
    )


def _origin(src: str) -> str:
    return {
        "flag": "--provider",
        "settings": "the model_provider setting",
        "character": "the character's model.provider",
    }[src]


def _key_and_url(settings: Settings, provider: str) -> tuple[str | None, str | None]:
    if provider == "openai":
        key = settings.secret("openai_api_key")
        if not key:
            raise MissingApiKey("openai")
        return key, settings.openai_base_url
    if provider == "anthropic":
        key = settings.secret("anthropic_api_key")
        if not key:
            raise MissingApiKey("anthropic")
        return key, settings.anthropic_base_url
    if provider == "ollama":
        return "ollama", settings.ollama_base_url
    # OpenAI-compatible servers: openai_base_url, else the product's usual local address.
    base_url = settings.openai_base_url or DEFAULT_BASE_URLS.get(provider)
    if base_url is None:
        raise InputError(
            f"The {provider} provider needs the server's address.",
            hint="Set openai_base_url in config.yaml or OPENAI_BASE_URL, e.g. "
            "http://localhost:8000/v1.",
        )
    key = settings.secret("openai_api_key")
    if provider == "openrouter" and not key:
        raise MissingApiKey("openrouter")
    return key or "not-needed", base_url


def create_chat_model(config: ModelConfig) -> ChatModel:
    """The provider object for a resolved config (clients are created, nothing is sent)."""
    key = config.api_key.get_secret_value() if config.api_key else None
    from carrier_cli.state import register_secret

    if key:
        register_secret(key)
    # What every chat model is built with; the provider adds its own.
    common: dict[str, Any] = {
        "base_url": config.base_url,
        "timeout": config.timeout,
        "retry": config.retry_policy(),
        "context_window": config.window_override,
    }
    if config.provider == "anthropic":
        from carrier_cli.llm.anthropic_chat import AnthropicChatModel

        return AnthropicChatModel(api_key=key or "", **common)
    from carrier_cli.llm.openai_chat import OpenAIChatModel

    return OpenAIChatModel(
        api_key=key or "not-needed",
        name=config.provider,
        http_transport=config.http_transport,
        **common,
    )


def create_models(
    settings: Settings,
    character: Any = None,
    provider: str | None = None,
    model: str | None = None,
) -> tuple[ChatModel, ModelConfig]:
    """Resolve and build in one call. `character` may be a Character (its `.model` is used),
    a model-settings object, or None."""
    character_model = getattr(character, "model", character) if character is not None else None
    if character_model is not None and not hasattr(character_model, "provider"):
        character_model = None
    config = resolve_model_config(settings, character_model, provider=provider, model=model)
    return create_chat_model(config), config
