"""A small, complete plugin: dice rolling. It shows each protocol once.

- Action `ROLL_DICE`: offered when the message mentions a roll or dice notation (`2d6`);
  rolls and returns the result as an extra message after the reply.
- Provider `dice`: tells the model how many rolls happened in this room.
- Evaluator `DICE_COUNTER`: after a turn that rolled, counts it (in the store's cache).

Switch it on in a character with `plugins: [example]` (its entry-point name, registered in
pyproject.toml) or `plugins: [carrier_cli.runtime.example_plugin]` (module path).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from carrier_cli.runtime.plugins import ActionExample, Plugin

if TYPE_CHECKING:
    from carrier_cli.runtime.context import TurnContext

_NOTATION = re.compile(r"\b(\d{0,2})d(\d{1,3})\b", re.I)
_ROLL_WORDS = re.compile(r"\b(roll|dice|die)\b", re.I)


def _counter_key(ctx: TurnContext) -> str:
    return f"example-plugin:dice-rolls:{ctx.room.id}"


def roll(text: str, rng: random.Random) -> tuple[str, list[int]]:
    """Roll the first `NdM` in the text (1d6 when there is none); at most 20 dice."""
    match = _NOTATION.search(text)
    count = int(match.group(1) or 1) if match else 1
    sides = int(match.group(2)) if match else 6
    count, sides = max(1, min(count, 20)), max(2, min(sides, 1000))
    return f"{count}d{sides}", [rng.randint(1, sides) for _ in range(count)]


class RollDice:
    name = "ROLL_DICE"
    similes: Sequence[str] = ("ROLL", "DICE", "THROW_DICE")
    description = "Roll dice when someone asks for a roll (e.g. 'roll 2d6'); the result is posted."
    examples: Sequence[Sequence[ActionExample]] = (
        (
            {"name": "{{user1}}", "text": "roll a d20 for my attack"},
            {"name": "{{agentName}}", "text": "Rolling!", "actions": ["REPLY", "ROLL_DICE"]},
        ),
    )

    async def validate(self, ctx: TurnContext) -> bool:
        text = ctx.message.text
        return bool(_NOTATION.search(text) or _ROLL_WORDS.search(text))

    async def handler(self, ctx: TurnContext) -> str | None:
        notation, values = roll(ctx.message.text, ctx.runtime.rng)
        total = sum(values)
        shown = " + ".join(str(v) for v in values)
        return f"🎲 {notation}: {shown} = {total}" if len(values) > 1 else f"🎲 {notation}: {total}"


class DiceProvider:
    name = "dice"

    async def get(self, ctx: TurnContext) -> str | None:
        rolls = await ctx.runtime.store.cache_get(_counter_key(ctx))
        if not rolls:
            return None
        return f"# Dice\nThere have been {int(rolls)} dice rolls in this conversation so far."


class DiceCounter:
    name = "DICE_COUNTER"
    description = "Counts the dice rolled in each room."

    async def validate(self, ctx: TurnContext) -> bool:
        chosen = {getattr(ctx.runtime.find_action(a), "name", None) for a in ctx.actions}
        return RollDice.name in chosen

    async def handler(self, ctx: TurnContext) -> None:
        store = ctx.runtime.store
        key = _counter_key(ctx)
        await store.cache_set(key, int(await store.cache_get(key) or 0) + 1)


plugin = Plugin(
    name="example",
    description="Dice rolling: an example of an action, a provider and an evaluator.",
    actions=[RollDice()],
    providers=[DiceProvider()],
    evaluators=[DiceCounter()],
    autoload=False,
)
