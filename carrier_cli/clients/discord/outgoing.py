"""A turn's files and embeds as Discord messages (discord.File, discord.Embed).

Sent after the reply's text and the actions' messages, in one message (the runtime already
bounds a turn to 10 files of at most 10 MB and 10 embeds, Discord's per-message limits), with
its own deterministic nonce so a retried or replayed send is not posted twice. Embed texts are
cut to Discord's limits (title 256, description 4096, 25 fields of 256/1024, footer 2048, 6000
in all), which Discord would otherwise answer with a 400 and no message at all.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import Any

import discord

from carrier_cli.runtime.outgoing import Embed, OutgoingFile
from carrier_cli.text import clip

log = logging.getLogger("carrier_cli.discord")

EMBED_TOTAL = 6000
MAX_FIELDS = 25


def to_files(files: Sequence[OutgoingFile]) -> list[discord.File]:
    return [
        discord.File(io.BytesIO(f.data), filename=f.filename, description=f.description)
        for f in files
    ]


def to_embed(embed: Embed) -> discord.Embed:
    """One embed within Discord's limits (the total budget is spent in reading order)."""
    budget = EMBED_TOTAL

    def take(text: str | None, limit: int) -> str | None:
        nonlocal budget
        if not text:
            return None
        kept = clip(text, max(1, min(limit, budget)))
        budget -= len(kept)
        return kept

    made = discord.Embed(
        title=take(embed.title, 256),
        description=take(embed.description, 4096),
        url=embed.url,
        colour=embed.color,
    )
    for field in embed.fields[:MAX_FIELDS]:
        if budget <= 2:
            break
        name, value = take(field.name, 256) or "-", take(field.value, 1024) or "-"
        made.add_field(name=name, value=value, inline=field.inline)
    footer = take(embed.footer, 2048)
    if footer:
        made.set_footer(text=footer)
    if embed.image_url:
        made.set_image(url=embed.image_url)
    return made


async def send_extras(
    message: discord.Message,
    files: Sequence[OutgoingFile],
    embeds: Sequence[Embed],
    *,
    nonce: str,
    channel: Any = None,
) -> discord.Message | None:
    """Send the files and embeds to `channel` (default `message`'s; the thread a reply went
    to with reply_in_thread) (None: nothing to send, or Discord refused them: logged,
    since the reply's text is already out and an apology would contradict it)."""
    if not files and not embeds:
        return None
    target = channel if channel is not None else message.channel
    try:
        return await target.send(
            files=to_files(files),
            embeds=[to_embed(e) for e in embeds],
            nonce=nonce,
            allowed_mentions=discord.AllowedMentions.none(),
        )
    except discord.Forbidden as exc:
        log.error(
            "Discord: may not send files or embeds in channel %s (%s): give the bot the "
            "Attach Files and Embed Links permissions there.",
            target.id,
            exc.text or exc.status,
        )
    except discord.HTTPException as exc:
        names = ", ".join(f.filename for f in files) or "(embeds only)"
        log.error(
            "Discord: refused the files/embeds of the reply to %s (%s: %s); files: %s",
            message.id,
            exc.status,
            exc.text,
            names,
        )
    return None
