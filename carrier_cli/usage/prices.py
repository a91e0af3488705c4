"""What a model call costs: a shipped price table, overridable with `model_prices:`.

Prices change, and this table is only as good as the day it was checked (`CHECKED`):
the figures were written from the providers' published pricing pages (openai.com/api/
pricing, anthropic.com/pricing) as the maintainers knew them on that day, not fetched at
run time. Set `model_prices:` in config.yaml for anything newer, for a negotiated price,
or for any OpenAI-compatible server (a local Ollama model costs nothing: price it 0).

Lookup, first hit wins: the override for "provider:model", the override for "model",
the shipped price for "provider:model"; each with the model id as given, then with a
date suffix removed (the only rule that maps one id onto another: "gpt-4o-2024-08-06"
-> "gpt-4o", "claude-3-5-haiku-20241022" -> "claude-3-5-haiku", "-latest" likewise).
The shipped table is keyed by provider, so a model called "gpt-4o" behind some other
OpenAI-compatible server is not priced as OpenAI's. Unknown: None, never a guess.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from carrier_cli.usage.records import TokenUsage

CHECKED = "2025-10-15"  # the day the table below was last compared with the providers' pages


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens. `cached`: per million input tokens read from the prompt
    cache (None: charged as ordinary input)."""

    input: float
    output: float
    cached: float | None = None

    def cost(self, usage: TokenUsage) -> float:
        """Cached input tokens at the cached price, the rest of the input at the input
        price (usage's input_tokens includes the cached ones), output at the output price."""
        input_tokens = usage.input_tokens or 0
        cached = min(usage.cached_tokens or 0, input_tokens)
        cached_price = self.input if self.cached is None else self.cached
        return (
            (input_tokens - cached) * self.input
            + cached * cached_price
            + (usage.output_tokens or 0) * self.output
        ) / 1_000_000


def _p(input: float, output: float, cached: float | None = None) -> ModelPrice:
    return ModelPrice(input, output, cached)


# Standard (not batch, not priority) prices. Anthropic's cache writes cost 1.25x input;
# they are charged here as ordinary input (a small undercount), cache reads at `cached`.
PRICES: dict[str, ModelPrice] = {
    # OpenAI chat
    "openai:gpt-5": _p(1.25, 10.00, 0.125),
    "openai:gpt-5-mini": _p(0.25, 2.00, 0.025),
    "openai:gpt-5-nano": _p(0.05, 0.40, 0.005),
    "openai:gpt-4.1": _p(2.00, 8.00, 0.50),
    "openai:gpt-4.1-mini": _p(0.40, 1.60, 0.10),
    "openai:gpt-4.1-nano": _p(0.10, 0.40, 0.025),
    "openai:gpt-4o": _p(2.50, 10.00, 1.25),
    "openai:gpt-4o-mini": _p(0.15, 0.60, 0.075),
    "openai:o3": _p(2.00, 8.00, 0.50),  # after OpenAI's June 2025 price cut
    "openai:o4-mini": _p(1.10, 4.40, 0.275),
    "openai:o3-mini": _p(1.10, 4.40, 0.55),
    "openai:gpt-4-turbo": _p(10.00, 30.00),
    "openai:gpt-3.5-turbo": _p(0.50, 1.50),
    # OpenAI embeddings (input only)
    "openai:text-embedding-3-small": _p(0.02, 0.0),
    "openai:text-embedding-3-large": _p(0.13, 0.0),
    "openai:text-embedding-ada-002": _p(0.10, 0.0),
    # Anthropic
    "anthropic:claude-opus-4-1": _p(15.00, 75.00, 1.50),
    "anthropic:claude-opus-4-0": _p(15.00, 75.00, 1.50),
    "anthropic:claude-opus-4": _p(15.00, 75.00, 1.50),
    "anthropic:claude-sonnet-4-5": _p(3.00, 15.00, 0.30),  # prompts up to 200k tokens
    "anthropic:claude-sonnet-4-0": _p(3.00, 15.00, 0.30),
    "anthropic:claude-sonnet-4": _p(3.00, 15.00, 0.30),
    "anthropic:claude-3-7-sonnet": _p(3.00, 15.00, 0.30),
    "anthropic:claude-3-5-sonnet": _p(3.00, 15.00, 0.30),
    "anthropic:claude-haiku-4-5": _p(1.00, 5.00, 0.10),
    "anthropic:claude-3-5-haiku": _p(0.80, 4.00, 0.08),
    "anthropic:claude-3-haiku": _p(0.25, 1.25, 0.03),
}

# "-2024-08-06" (OpenAI), "-20241022" (Anthropic), "-latest" (Anthropic aliases).
_DATE_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


def base_model(model: str) -> str:
    """The model id without its date suffix (the same id when it has none)."""
    return _DATE_SUFFIX.sub("", model)


@dataclass(frozen=True)
class PriceTable:
    """The shipped prices under the operator's `model_prices:` overrides."""

    overrides: Mapping[str, ModelPrice]
    shipped: Mapping[str, ModelPrice]

    @classmethod
    def default(cls, overrides: Mapping[str, ModelPrice] | None = None) -> PriceTable:
        return cls(dict(overrides or {}), PRICES)

    def lookup(self, provider: str, model: str) -> ModelPrice | None:
        """The price for `model` from `provider`, or None when none is known."""
        names = [model]
        base = base_model(model)
        if base != model:
            names.append(base)
        for name in names:
            for table, key in (
                (self.overrides, f"{provider}:{name}"),
                (self.overrides, name),
                (self.shipped, f"{provider}:{name}"),
            ):
                price = table.get(key)
                if price is not None:
                    return price
        return None

    def cost(self, provider: str, model: str, usage: TokenUsage) -> float | None:
        """USD for `usage`, or None when the model has no known price."""
        price = self.lookup(provider, model)
        return None if price is None else price.cost(usage)
