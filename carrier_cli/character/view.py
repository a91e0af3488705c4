"""Rich summary of a character for `carrier character show` (kept out of the CLI module so
other front ends, such as the chat banner, can reuse it)."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from carrier_cli.character.model import Character


def _clip(text: str, width: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _bullets(items: list[str], limit: int = 4) -> str:
    shown = [f"• {escape(_clip(i))}" for i in items[:limit]]
    if len(items) > limit:
        shown.append(f"[dim]… and {len(items) - limit} more[/dim]")
    return "\n".join(shown) or "[dim]none[/dim]"


def render_character(character: Character) -> RenderableType:
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    model = character.model
    facts.add_row("id", str(character.id))
    facts.add_row("file", escape(str(character.source_path or "(not from a file)")))
    if character.username:
        facts.add_row("username", escape(character.username))
    facts.add_row(
        "model",
        escape(
            f"provider={model.provider or '(from settings/keys)'} "
            f"large={model.name or 'default'} small={model.small or 'default'} "
            f"temperature={model.temperature} max_tokens={model.max_tokens}"
        ),
    )
    if model.embedding:
        facts.add_row("embedding", escape(model.embedding))
    if character.adjectives:
        facts.add_row("adjectives", escape(", ".join(character.adjectives)))
    if character.topics:
        facts.add_row("topics", escape(_clip(", ".join(character.topics))))
    examples = sum(len(c) for c in character.message_examples)
    facts.add_row(
        "examples",
        f"{len(character.message_examples)} conversations ({examples} messages), "
        f"{len(character.post_examples)} posts",
    )
    facts.add_row(
        "knowledge",
        f"{len(character.knowledge_texts())} facts, {len(character.knowledge_paths())} paths",
    )
    if character.templates:
        facts.add_row("templates", escape(", ".join(character.templates)))
    if character.plugins:
        facts.add_row("plugins", escape(", ".join(character.plugins)))
    discord = character.clients.discord
    facts.add_row(
        "discord",
        f"mentions only={discord.respond_only_to_mentions} ignore bots={discord.ignore_bots} "
        f"ignore DMs={discord.ignore_dms} channels={len(discord.allowed_channel_ids) or 'all'}"
        + (f" token key={escape(discord.token_key)}" if discord.token_key else ""),
    )
    instagram = character.clients.instagram
    facts.add_row(
        "instagram",
        f"enabled={instagram.enabled} every {instagram.post_interval_minutes}±"
        f"{instagram.interval_jitter_minutes} min, {len(instagram.hashtags)} hashtags"
        + (f", media {escape(instagram.media_folder)}" if instagram.media_folder else ""),
    )

    parts: list[RenderableType] = [facts]
    if character.system:
        parts += ["", "[bold]system[/bold]", escape(_clip(character.system, 300))]
    parts += ["", f"[bold]bio[/bold] ({len(character.bio)})", _bullets(character.bio)]
    if character.lore:
        parts += ["", f"[bold]lore[/bold] ({len(character.lore)})", _bullets(character.lore, 3)]
    style = character.style
    if style.all or style.chat or style.post:
        parts += ["", "[bold]style[/bold]"]
        for label, items in (("all", style.all), ("chat", style.chat), ("post", style.post)):
            if items:
                parts.append(f"[italic]{label}[/italic]: {escape(_clip('; '.join(items)))}")
    if character.message_examples:
        parts += ["", "[bold]first example[/bold]"]
        for turn in character.message_examples[0][:4]:
            parts.append(f"[cyan]{escape(turn.name)}[/cyan]: {escape(_clip(turn.text))}")
    title = escape(character.name)
    return Panel(Group(*parts), title=f"[bold]{title}[/bold]", expand=False)
