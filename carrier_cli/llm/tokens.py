"""Token counting and fitting a prompt into a model's context window.

Counting: tiktoken for OpenAI model names, but only when its BPE file is already in
tiktoken's cache (TIKTOKEN_CACHE_DIR, DATA_GYM_CACHE_DIR or <tmp>/data-gym-cache).
tiktoken would otherwise download it on first use, and Carrier must not hang or fail
offline, so we never let it try. Without the file (and for every non-OpenAI model) we use
an estimate that errs high, so a trimmed prompt still fits:

    tokens ~= ceil(ascii_chars / 3.5 + non_ascii_chars * 1.0)

(English averages ~4 characters per token in OpenAI's and Anthropic's tokenizers; 3.5
leaves a margin; CJK and other non-ASCII text is close to one token per character.)
To get exact OpenAI counts offline, put the .tiktoken files in TIKTOKEN_CACHE_DIR.

Fitting: `fit_to_budget` keeps the system prompt and the new message whole and drops
items from the other sections (oldest messages, least relevant memories) until the total
fits; see its docstring.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from carrier_cli.llm.base import ChatMessage

# Per-message framing overhead in chat formats (role markers, separators).
MESSAGE_OVERHEAD = 4
DEFAULT_CONTEXT_WINDOW = 8192

# Longest prefix wins. Numbers are the input context windows the providers publish.
_CONTEXT_WINDOWS: dict[str, int] = {
    "gpt-4o": 128_000,
    "gpt-4o-mini": 128_000,
    "gpt-4.1": 1_047_576,
    "gpt-4-turbo": 128_000,
    "gpt-4": 8_192,
    "gpt-4-32k": 32_768,
    "gpt-3.5-turbo": 16_385,
    "gpt-5": 400_000,
    "o1": 200_000,
    "o3": 200_000,
    "o4-mini": 200_000,
    "claude": 200_000,
    "llama3.1": 131_072,
    "llama3.2": 131_072,
    "llama3.3": 131_072,
    "qwen2.5": 32_768,
    "mistral": 32_768,
}
# Ollama serves a 2k-8k context unless num_ctx is raised, whatever the model supports.
_PROVIDER_WINDOWS: dict[str, int] = {"ollama": 8192}

# tiktoken encoding per model-name prefix (mirrors tiktoken.model without importing it).
_ENCODINGS: list[tuple[str, str]] = [
    ("gpt-4o", "o200k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-5", "o200k_base"),
    ("o1", "o200k_base"),
    ("o3", "o200k_base"),
    ("o4", "o200k_base"),
    ("chatgpt-4o", "o200k_base"),
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5", "cl100k_base"),
    ("text-embedding-3", "cl100k_base"),
    ("text-embedding-ada", "cl100k_base"),
]
_ENCODING_URLS = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}


def context_window(provider: str, model: str) -> int:
    """Input tokens the model accepts: the provider's cap, else the known model's, else 8192."""
    if provider in _PROVIDER_WINDOWS:
        return _PROVIDER_WINDOWS[provider]
    name = model.lower().split("/")[-1]  # OpenRouter names look like "openai/gpt-4o"
    best = ""
    for prefix in _CONTEXT_WINDOWS:
        if name.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return _CONTEXT_WINDOWS[best] if best else DEFAULT_CONTEXT_WINDOW


def encoding_name_for(model: str | None) -> str | None:
    if not model:
        return None
    name = model.lower().split("/")[-1]
    for prefix, encoding in _ENCODINGS:
        if name.startswith(prefix):
            return encoding
    return None


def _tiktoken_cache_dir() -> str | None:
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        return os.environ["TIKTOKEN_CACHE_DIR"] or None
    if "DATA_GYM_CACHE_DIR" in os.environ:
        return os.environ["DATA_GYM_CACHE_DIR"] or None
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


@cache
def _encoding(name: str) -> Any | None:
    """The tiktoken Encoding if its file is cached locally, else None. Probed once per
    process: tiktoken fetches missing files over the network, which we must not do."""
    url = _ENCODING_URLS.get(name)
    cache_dir = _tiktoken_cache_dir()
    if url is None or cache_dir is None:
        return None
    cached = os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest())
    if not os.path.isfile(cached):
        return None
    try:
        import tiktoken

        return tiktoken.get_encoding(name)
    except Exception:  # corrupt cache file, hash mismatch, missing extension...
        return None


def tiktoken_available(model: str) -> bool:
    encoding = encoding_name_for(model)
    return encoding is not None and _encoding(encoding) is not None


def estimate_tokens(text: str) -> int:
    """The documented offline estimate (see module docstring)."""
    if not text:
        return 0
    if text.isascii():
        return math.ceil(len(text) / 3.5)
    ascii_chars = len(text.encode("ascii", "ignore"))
    return math.ceil(ascii_chars / 3.5 + (len(text) - ascii_chars))


def count_tokens(text: str, model: str | None = None) -> int:
    """Tokens in `text` for `model`: exact via tiktoken when possible, else the estimate."""
    if not text:
        return 0
    encoding_name = encoding_name_for(model)
    if encoding_name is not None:
        encoding = _encoding(encoding_name)
        if encoding is not None:
            return len(encoding.encode(text, disallowed_special=()))
    return estimate_tokens(text)


# Input tokens one image costs, at most: Anthropic's (width * height) / 750 for the
# 1568 px edge images are scaled to (about 1,600), above OpenAI's 1,105 for high detail at
# 1024 px. An estimate that errs high keeps a prompt with pictures inside the window.
IMAGE_TOKENS = 1600


def message_tokens(message: Any, model: str | None = None) -> int:
    """One ChatMessage-like object's tokens: framing, text and any images."""
    images = len(getattr(message, "images", ()) or ())
    return MESSAGE_OVERHEAD + count_tokens(message.content, model) + IMAGE_TOKENS * images


def count_message_tokens(messages: Sequence[Any], model: str | None = None) -> int:
    """Tokens for a list of ChatMessage-like objects (`.content`, `.images`), with framing
    overhead."""
    return 3 + sum(message_tokens(m, model) for m in messages)


@dataclass
class PromptSection:
    """A part of the prompt that may lose items when the prompt is too long.

    items: the texts, in their natural order (history: oldest first; memories: most
        relevant first).
    drop_from: which end loses items first: "start" for history (oldest go first),
        "end" for relevance-ranked memories (least relevant go first).
    priority: lower is trimmed first. Default plan: memories/knowledge 0, facts 1,
        history 2.
    keep: items that survive the first pass (e.g. the last 4 messages); only if the
        prompt still does not fit are they dropped too (in priority order).
    """

    name: str
    items: list[str]
    drop_from: Literal["start", "end"] = "start"
    priority: int = 0
    keep: int = 0


@dataclass
class FittedPrompt:
    """The result: the same sections with surviving items, and what was dropped."""

    system: str
    sections: list[PromptSection]
    new_message: str
    tokens: int
    budget: int
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def fits(self) -> bool:
        return self.tokens <= self.budget

    def section(self, name: str) -> list[str]:
        for section in self.sections:
            if section.name == name:
                return section.items
        raise KeyError(name)


def fit_to_budget(
    system: str,
    sections: Sequence[PromptSection],
    new_message: str,
    budget: int,
    *,
    model: str | None = None,
    per_item_overhead: int = MESSAGE_OVERHEAD,
) -> FittedPrompt:
    """Drop section items until system + sections + new message fit in `budget` tokens.

    Never drops or cuts `system` or `new_message`; if those alone exceed the budget, every
    section is emptied and `fits` is False (the caller decides whether to send anyway).
    Order of dropping: pass 1 trims each section down to its `keep`, lowest `priority`
    first, from its `drop_from` end; pass 2 does the same down to zero. Each item costs its
    tokens plus `per_item_overhead`. The budget should already leave room for the reply
    (e.g. context_window - max_tokens). Input sections are not modified.
    """
    fixed = count_tokens(system, model) + count_tokens(new_message, model) + 2 * per_item_overhead
    working = [
        (
            PromptSection(s.name, list(s.items), s.drop_from, s.priority, s.keep),
            [count_tokens(item, model) + per_item_overhead for item in s.items],
        )
        for s in sections
    ]
    total = fixed + sum(sum(costs) for _, costs in working)
    dropped = {s.name: 0 for s in sections}
    order = sorted(working, key=lambda pair: pair[0].priority)
    for floor_pass in (True, False):
        for section, costs in order:
            floor = section.keep if floor_pass else 0
            while total > budget and len(section.items) > floor:
                index = 0 if section.drop_from == "start" else len(section.items) - 1
                section.items.pop(index)
                total -= costs.pop(index)
                dropped[section.name] += 1
            if total <= budget:
                break
        if total <= budget:
            break
    return FittedPrompt(
        system=system,
        sections=[section for section, _ in working],
        new_message=new_message,
        tokens=total,
        budget=budget,
        dropped=dropped,
    )


def trim_messages(
    messages: Sequence[ChatMessage], budget: int, model: str | None = None
) -> tuple[list[ChatMessage], int]:
    """(messages that fit in `budget` tokens, how many were dropped).

    The providers' last line of defence when a prompt would overflow the context window
    (a local server such as Ollama would otherwise cut the *start* of the prompt, where
    the system prompt is). System messages and the last message are always kept; other
    messages go oldest first. Prompts composed with `fit_to_budget` normally fit already.
    """
    kept = list(messages)
    if count_message_tokens(kept, model) <= budget:
        return kept, 0
    costs = [message_tokens(m, model) for m in kept]
    total = 3 + sum(costs)
    dropped = 0
    index = 0
    while total > budget and index < len(kept) - 1:
        if kept[index].role == "system":
            index += 1
            continue
        total -= costs.pop(index)
        kept.pop(index)
        dropped += 1
    return kept, dropped


def fit_messages_to_window(
    messages: Sequence[ChatMessage],
    provider: str,
    model: str,
    max_tokens: int,
    window: int | None = None,
) -> list[ChatMessage]:
    """`trim_messages` against the model's window (or `window`) minus the reply's room."""
    import logging

    budget = (window or context_window(provider, model)) - max_tokens
    fitted, dropped = trim_messages(messages, max(budget, 1), model)
    if dropped:
        logging.getLogger(__name__).warning(
            "prompt for %s exceeded its %d-token budget; dropped the %d oldest messages",
            model,
            budget,
            dropped,
        )
    return fitted
