"""Which chat models accept images: a small table by model name, overridable per character.

The runtime sends images as image content only to a model that accepts them; any other
model gets a text description ("[image: cat.png, 640x480]") and is told it cannot see
the picture. Sending images to a text-only model is not harmless: OpenAI answers 400
("image_url is only supported by certain models") and the turn fails, so an unknown model
counts as text-only. A character whose model the table does not know (a local llava, a
new release) sets `model.vision: true`; one that wants images described rather than sent
(cost: an image is roughly 85 to 1,600 input tokens) sets `model.vision: false`.
"""

from __future__ import annotations

import re

# Name patterns, matched case-insensitively against the model name with any provider
# prefix ("openai/", "anthropic/" on OpenRouter) removed. Checked in order; first wins.
_RULES: tuple[tuple[re.Pattern[str], bool], ...] = tuple(
    (re.compile(pattern, re.I), accepts)
    for pattern, accepts in (
        # OpenAI: text-only families first (gpt-4-32k, gpt-3.5, o1-mini, o3-mini, embeddings).
        (r"^gpt-3\.5", False),
        (r"^gpt-4-(?:32k|0314|0613)", False),
        (r"^gpt-4$", False),
        (r"^o1-(?:mini|preview)", False),
        (r"^o3-mini", False),
        (r"^(?:text-embedding|davinci|babbage|gpt-oss)", False),
        (r"^gpt-4o", True),
        (r"^gpt-4\.1", True),
        (r"^gpt-4\.5", True),
        (r"^gpt-4-turbo", True),
        (r"^gpt-4-vision", True),
        (r"^gpt-5", True),
        (r"^chatgpt-4o", True),
        (r"^o1(?:$|-)", True),
        (r"^o3(?:$|-)", True),
        (r"^o4-mini", True),
        # Anthropic: every Claude 3 and later model; Claude 2 and Instant are text-only.
        (r"^claude-(?:2|instant)", False),
        (r"^claude-3", True),
        (r"^claude-(?:opus|sonnet|haiku)-[4-9]", True),
        (r"^claude-[4-9]", True),
        # Open models commonly served through Ollama or vLLM with image support.
        (r"(?:^|[-_:/])(?:llava|bakllava|moondream|minicpm-v|qwen2?\.?5?-?vl)", True),
        (r"^llama3\.2-vision|^llama-?4|^gemma3|^pixtral|^gemini", True),
    )
)


def known_vision(model: str) -> bool | None:
    """What the table says about `model` (None: it does not know the name)."""
    name = model.strip().rsplit("/", 1)[-1]
    for pattern, accepts in _RULES:
        if pattern.search(name):
            return accepts
    return None


def accepts_images(model: str, override: bool | None = None) -> bool:
    """Whether to send images to `model`: the character's `model.vision` when set, else
    the table, else no (an unknown model is treated as text-only, see the module doc)."""
    if override is not None:
        return override
    return bool(known_vision(model))
