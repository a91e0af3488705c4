"""Evaluate: the evaluators run after the turn, in the background, one after another.

The turn's result does not wait for them. Each evaluator gets `evaluator_timeout` (it may
call the model); a failing or slow one is logged and the next one still runs. The runtime
waits for the running tasks before it closes (`wait_idle`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from carrier_cli.runtime.turn.calls import call_context
from carrier_cli.runtime.turn.state import TurnDeps
from carrier_cli.usage.budget import BudgetRefused
from carrier_cli.usage.records import using

if TYPE_CHECKING:
    from carrier_cli.runtime.context import TurnContext

log = logging.getLogger("carrier.runtime")


class Evaluations:
    """The background tasks running evaluators, kept until they finish."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def schedule(self, deps: TurnDeps, ctx: TurnContext) -> None:
        if not deps.evaluators:
            return
        task = asyncio.get_running_loop().create_task(run_evaluators(deps, ctx))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


async def run_evaluators(deps: TurnDeps, ctx: TurnContext) -> None:
    # Their model calls count towards the turn (complete_small names the purpose).
    with using(call_context(deps, ctx, "facts")):
        await _run_each(deps, ctx)


async def _run_each(deps: TurnDeps, ctx: TurnContext) -> None:
    for evaluator in deps.evaluators:
        try:
            async with asyncio.timeout(deps.evaluator_timeout):
                if await evaluator.validate(ctx):
                    await evaluator.handler(ctx)
        except BudgetRefused as exc:  # the budget is reached: skipped, not failed
            log.debug("evaluator %s skipped: %s", evaluator.name, exc.message)
        except Exception as exc:  # TimeoutError included
            log.warning(
                "evaluator %s failed: %s",
                evaluator.name,
                exc,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
