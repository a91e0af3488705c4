"""Asking a resolved provider what it offers and whether it answers: what `carrier models
list` and `carrier models check` do, usable without the command line (which only prints
the results)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from carrier_cli.llm.base import ChatMessage
from carrier_cli.llm.factory import create_chat_model

if TYPE_CHECKING:
    from carrier_cli.llm.factory import ModelConfig

PROBE_PROMPT = "Reply with the single word OK."


async def offered_models(config: ModelConfig) -> list[str]:
    """The model names the provider offers (GET /v1/models), sorted; [] when the chat model
    cannot list them."""
    chat = create_chat_model(config)
    try:
        lister = getattr(chat, "list_models", None)
        if lister is None:
            return []
        return list(await lister())
    finally:
        await chat.aclose()


async def probe_models(config: ModelConfig) -> list[dict[str, object]]:
    """A tiny prompt to the large model and, when it differs, the small one: a row each
    (model, ok, seconds, the reply's first 40 characters). A failure raises the provider's
    error (a bad key, an unknown model name) as a chat turn would."""
    names = [config.large] if config.small == config.large else [config.large, config.small]
    chat = create_chat_model(config)
    rows: list[dict[str, object]] = []
    try:
        for name in names:
            start = time.perf_counter()
            reply = await chat.complete(
                [ChatMessage("user", PROBE_PROMPT)],
                config.params(model=name, max_tokens=5, temperature=0.0),
            )
            rows.append(
                {
                    "model": name,
                    "ok": True,
                    "seconds": round(time.perf_counter() - start, 3),
                    "reply": reply.strip()[:40],
                }
            )
    finally:
        await chat.aclose()
    return rows
