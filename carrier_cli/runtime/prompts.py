"""Every prompt the runtime sends, one function per kind, all through `chat()`.

Each prompt is the character's system prompt followed by one user message rendered from a
template (`templates.py`, overridable per character). The reply prompt is the only one
sized to the model: its conversation is cut to a character budget first, then by the
token estimate (`fit_reply`), dropping the oldest lines, since the newest matter most.
The fact-extraction prompt is the fact evaluator's own (`evaluators.py`) and goes
through `small()`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from carrier_cli.llm.base import ChatMessage, ImagePart
from carrier_cli.memory.types import Memory, SearchHit
from carrier_cli.runtime import attachments, formatting
from carrier_cli.runtime.templates import render
from carrier_cli.text import clip

if TYPE_CHECKING:
    from carrier_cli.runtime.character_state import CharacterState
    from carrier_cli.runtime.context import TurnContext
    from carrier_cli.runtime.plugins import Action
    from carrier_cli.runtime.turn.state import TurnDeps

KNOWLEDGE_ITEM_CHARS = 1200  # a single retrieved memory never floods the prompt
SHOULD_RESPOND_CHARS = 6000  # conversation shown to the small model deciding


def chat(
    character_state: CharacterState, prompt: str, images: tuple[ImagePart, ...] = ()
) -> list[ChatMessage]:
    """The messages of any prompt: the character's system prompt, then `prompt` (with the
    new message's images, for a model that accepts them)."""
    return [
        ChatMessage("system", character_state.system),
        ChatMessage("user", prompt, images=images),
    ]


def should_respond(deps: TurnDeps, ctx: TurnContext, recent: list[Memory]) -> list[ChatMessage]:
    values = dict(deps.character_state.values())
    values["recentMessages"] = formatting.format_conversation(
        recent, max_chars=SHOULD_RESPOND_CHARS
    )
    values["senderName"] = ctx.message.sender_name
    return chat(deps.character_state, render(deps.templates["should_respond"], values))


def reply(
    deps: TurnDeps,
    ctx: TurnContext,
    *,
    offered: list[Action],
    recent: list[Memory],
    hits: Sequence[SearchHit],
    facts: Sequence[Memory],
    provided: Sequence[object],
) -> list[ChatMessage]:
    """Fill `ctx.state` (the template values plugins see) and render the reply prompt."""
    message = ctx.message
    state = ctx.state
    state.update(deps.character_state.values())
    sender_fact_ids = {f.id for f in facts}
    state["senderName"] = message.sender_name
    state["senderFacts"] = formatting.format_list(
        f"Facts about {message.sender_name}", [f.text for f in facts]
    )
    state["knowledge"] = formatting.format_list(
        "Relevant knowledge and memories",
        [
            clip(h.memory.text, KNOWLEDGE_ITEM_CHARS, rstrip=True)
            for h in hits
            if h.memory.id not in sender_fact_ids
        ],
    )
    state["currentTime"] = f"# Current time\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    state["roomName"] = ctx.room.name or ctx.message.room_key
    state["source"] = message.source
    state["messageText"] = message.text
    state["actions"] = formatting.format_actions(offered)
    state["actionNames"] = ", ".join(a.name for a in offered)
    plugin_examples = [a for a in offered if a.examples]
    state["actionExamples"] = formatting.format_action_examples(
        plugin_examples, deps.character.name, deps.rng
    )
    sections = []
    for output in provided:
        if isinstance(output, str) and output.strip():
            sections.append(output.strip())
        elif isinstance(output, dict):
            state.update({str(k): str(v) for k, v in output.items()})
    sees_images = attachments.model_sees_images(deps)
    attached = attachments.prompt_section(
        message.attachments, message.sender_name, sees_images=sees_images
    )
    if attached:  # under {{providers}}, which every reply template has
        sections.insert(0, attached)
    if ctx.file_offers:
        sections.append(
            "# Files you can send\n"
            + "\n".join(
                f"- {f.filename}: {f.description or f.content_type or 'a file'}"
                for f in ctx.file_offers
            )
            + "\nChoose SEND_FILE to attach them to your message."
        )
    state["providers"] = "\n\n".join(sections)
    used = sum(len(v) for v in state.values()) + len(deps.templates["message_handler"])
    state["recentMessages"] = formatting.format_conversation(
        recent, max_chars=conversation_budget(deps, used)
    )
    images = attachments.image_parts(message.attachments) if sees_images else ()
    return chat(deps.character_state, fit_reply(deps, ctx, recent, len(images)), images)


def conversation_budget(deps: TurnDeps, used_chars: int) -> int:
    """Characters left for the conversation: ~3 characters per token, minus the reply."""
    cfg = deps.model_config
    window = int(getattr(cfg, "context_window", 8192) or 8192)
    budget_tokens = window - int(getattr(cfg, "max_tokens", 1024) or 1024) - 256
    return max(1000, budget_tokens * 3 - used_chars)


def fit_reply(deps: TurnDeps, ctx: TurnContext, conversation: list[Memory], images: int = 0) -> str:
    """Render the reply prompt, dropping the oldest conversation lines while the token
    estimate (which errs high, and counts CJK text right), with `images` at IMAGE_TOKENS
    each, exceeds the context window."""
    from carrier_cli.llm.tokens import IMAGE_TOKENS, estimate_tokens

    cfg = deps.model_config
    template = deps.templates["message_handler"]
    limit = int(cfg.context_window) - int(cfg.max_tokens) - 64
    fixed = estimate_tokens(deps.character_state.system) + IMAGE_TOKENS * images
    prompt = render(template, ctx.state)
    while fixed + estimate_tokens(prompt) > limit and len(conversation) > 1:
        conversation = conversation[max(1, len(conversation) // 4) :]
        ctx.state["recentMessages"] = formatting.format_conversation(conversation)
        prompt = render(template, ctx.state)
    return prompt


def continuation(
    deps: TurnDeps, ctx: TurnContext, reply: Memory, now: datetime
) -> list[ChatMessage]:
    """The reply prompt once more, with the reply in the conversation, asking for the
    message that follows it (the CONTINUE action)."""
    values = dict(ctx.state)
    values["recentMessages"] = (
        ctx.state.get("recentMessages", "") + "\n" + formatting.format_message(reply, now)
    )
    prompt = render(deps.templates["message_handler"], values)
    prompt += (
        f"\n{deps.character.name} chose CONTINUE: write only the follow-up message that "
        f"comes right after their last one, without repeating it."
    )
    return chat(deps.character_state, prompt)


def post(deps: TurnDeps, topic: str | None, extra_instructions: str | None) -> list[ChatMessage]:
    values: dict[str, object] = dict(deps.character_state.values(for_post=True))
    values["postTopic"] = (
        topic or values.get("topic") or f"whatever is on {deps.character.name}'s mind"
    )
    values["extraInstructions"] = extra_instructions or ""
    return chat(deps.character_state, render(deps.templates["post_creation"], values))


def small(deps: TurnDeps, prompt: str) -> list[ChatMessage]:
    """A prompt rendered elsewhere (an evaluator's) for the small model."""
    return chat(deps.character_state, prompt)
