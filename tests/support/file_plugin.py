"""A plugin whose actions answer with files and an embed, for tests (and docs/api.md's
tested example) of how clients deliver them. A character loads it with
`plugins: ["tests.support.file_plugin:PLUGIN"]` (tests put the repository on PYTHONPATH);
the fake model chooses an action when a test pushes `reply_choosing("SHOW_REPORT")`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from carrier_cli.runtime.context import TurnContext
from carrier_cli.runtime.outgoing import ActionOutput, Embed, EmbedField, OutgoingFile
from carrier_cli.runtime.plugins import ActionExample, Plugin

REPORT = OutgoingFile("report.csv", b"day,visits\nmon,3\ntue,5\n", "text/csv", "Visits per day")
# A name that must not reach a header as it is (quotes, a path, non-ASCII) and bytes that
# are not UTF-8, to check the download is exact and its Content-Disposition safe.
ODD = OutgoingFile('../r\u00e9sum\u00e9 "1".bin', bytes(range(256)) * 4, None, None)
CARD = Embed(
    title="Visits",
    description="This week so far",
    url="https://example.com/visits",
    color=0x3498DB,
    fields=(EmbedField("mon", "3", inline=True), EmbedField("tue", "5", inline=True)),
    footer="From the visits plugin",
)


def reply_choosing(action: str, text: str = "Here is the report.") -> str:
    """What the fake model answers so the turn runs `action` after REPLY."""
    return (
        f"<response><thought>They asked for it.</thought><actions>REPLY,{action}</actions>"
        f"<text>{text}</text></response>"
    )


@dataclass
class _Answer:
    name: str
    files: tuple[OutgoingFile, ...]
    embeds: tuple[Embed, ...] = ()
    description: str = "Send a file."
    similes: Sequence[str] = ()
    examples: Sequence[Sequence[ActionExample]] = ()

    async def validate(self, ctx: TurnContext) -> bool:
        return True

    async def handler(self, ctx: TurnContext) -> ActionOutput:
        return ActionOutput(files=list(self.files), embeds=list(self.embeds))


PLUGIN = Plugin(
    name="file-test",
    actions=[
        _Answer("SHOW_REPORT", (REPORT,), (CARD,), "Send the visits report as a CSV file."),
        _Answer("SHOW_ODD", (ODD,), (), "Send the odd file."),
    ],
)
