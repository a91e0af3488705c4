"""Rich summary of a character for `carrier character show` (kept out of the CLI module so
other front ends, such as the chat banner, can reuse it).

Everything shown comes from a character file, so it is built from `rich.text.Text` pieces
that Rich never reads as markup or emoji codes (a `[/]` in a bio would otherwise raise
MarkupError, `:x:` would become an emoji), whatever console prints the panel.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.text import Text

from carrier_cli.character.model import Character
from carrier_cli.output import key_value_table
from carrier_cli.text import one_line

# A line of the panel: bullets, topics, style notes and example turns are cut to this.
_WIDTH = 110


def _bullets(items: list[str], limit: int = 4) -> Text:
    shown = [Text(f"• {one_line(i, _WIDTH)}") for i in items[:limit]]
    if len(items) > limit:
        shown.append(Text(f"… and {len(items) - limit} more", style="dim"))
    return Text("\n").join(shown) if shown else Text("none", style="dim")


def _heading(label: str, count: int | None = None) -> Text:
    return Text.assemble((label, "bold"), f" ({count})" if count is not None else "")


def render_character(character: Character) -> RenderableType:
    facts = key_value_table(grid=True)

    def fact(label: str, value: str) -> None:
        facts.add_row(label, value)  # a literal Text, whatever the file wrote

    model = character.model
    fact("id", str(character.id))
    fact("file", str(character.source_path or "(not from a file)"))
    if character.username:
        fact("username", character.username)
    fact(
        "model",
        f"provider={model.provider or '(from settings/keys)'} "
        f"large={model.name or 'default'} small={model.small or 'default'} "
        f"temperature={model.temperature} max_tokens={model.max_tokens}",
    )
    if model.embedding:
        fact("embedding", model.embedding)
    if character.adjectives:
        fact("adjectives", ", ".join(character.adjectives))
    if character.topics:
        fact("topics", one_line(", ".join(character.topics), _WIDTH))
    examples = sum(len(c) for c in character.message_examples)
    fact(
        "examples",
        f"{len(character.message_examples)} conversations ({examples} messages), "
        f"{len(character.post_examples)} posts",
    )
    fact(
        "knowledge",
        f"{len(character.knowledge_texts())} facts, {len(character.knowledge_paths())} paths",
    )
    if character.templates:
        fact("templates", ", ".join(character.templates))
    if character.plugins:
        fact("plugins", ", ".join(character.plugins))
    discord = character.clients.discord
    fact(
        "discord",
        f"mentions only={discord.respond_only_to_mentions} ignore bots={discord.ignore_bots} "
        f"ignore DMs={discord.ignore_dms} channels={len(discord.allowed_channel_ids) or 'all'}"
        + (f" token key={discord.token_key}" if discord.token_key else ""),
    )
    if character.budget is not None:
        budget = character.budget
        caps = " ".join(f"{name}={value:g}" for name, _, _, value in budget.caps())
        fact("budget", f"{caps} action={budget.action}")
    instagram = character.clients.instagram
    fact(
        "instagram",
        f"enabled={instagram.enabled} every {instagram.post_interval_minutes}±"
        f"{instagram.interval_jitter_minutes} min, {len(instagram.hashtags)} hashtags"
        + (f", media {instagram.media_folder}" if instagram.media_folder else ""),
    )

    blank = Text("")
    parts: list[RenderableType] = [facts]
    if character.system:
        parts += [blank, _heading("system"), Text(one_line(character.system, 300))]
    parts += [blank, _heading("bio", len(character.bio)), _bullets(character.bio)]
    if character.lore:
        parts += [blank, _heading("lore", len(character.lore)), _bullets(character.lore, 3)]
    style = character.style
    if style.all or style.chat or style.post:
        parts += [blank, _heading("style")]
        for label, items in (("all", style.all), ("chat", style.chat), ("post", style.post)):
            if items:
                parts.append(
                    Text.assemble((label, "italic"), ": ", one_line("; ".join(items), _WIDTH))
                )
    if character.message_examples:
        parts += [blank, _heading("first example")]
        for turn in character.message_examples[0][:4]:
            parts.append(Text.assemble((turn.name, "cyan"), ": ", one_line(turn.text, _WIDTH)))
    title = Text(character.name, style="bold")
    return Panel(Group(*parts), title=title, expand=False)
