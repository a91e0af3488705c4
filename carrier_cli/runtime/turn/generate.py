"""Generate: the model call of a reply (or a CONTINUE follow-up, or a post), parsed
tolerantly.

A reply without tags is the text; only broken markup is asked again, once
(`parsing.ParseAttempts`), and after that the raw text is used. While streaming, text the
user has already seen is kept rather than contradicted by a second attempt.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from time import perf_counter
from typing import Any

from carrier_cli.errors import RuntimeFailure
from carrier_cli.llm.base import ChatMessage, ChatModel, GenerationParams
from carrier_cli.runtime.parsing import (
    ParseAttempts,
    ParsedReply,
    StreamingTextExtractor,
    parse_reply,
    raw_fallback,
)
from carrier_cli.runtime.turn.calls import call_context, stepped
from carrier_cli.runtime.turn.state import TurnDeps, TurnState
from carrier_cli.runtime.types import PromptRecord, TurnLog
from carrier_cli.usage.budget import BudgetRefused
from carrier_cli.usage.records import CallContext, calling, current_context, using

log = logging.getLogger("carrier.runtime")


@dataclass
class Generation:
    """Outcome of a generation, filled by `generate` (an async generator)."""

    parsed: ParsedReply = field(default_factory=lambda: ParsedReply(text=None, ok=False))
    model_seconds: float = 0.0


async def reply(deps: TurnDeps, turn: TurnState) -> AsyncIterator[str]:
    """The stage: generate the reply to `turn.messages`, yielding streamed text; the parsed
    reply lands in `turn.parsed` (and its thought and actions on the turn context).
    A budget that refuses: no model call, the reply is the budget's message."""
    verdict = await deps.budget.check("reply")
    if verdict.refused:
        turn.parsed = ParsedReply(text=verdict.message)
        if turn.stream and verdict.message:
            yield verdict.message
        return
    gen = Generation()
    params = deps.model_config.params(small=verdict.small)
    messages = turn.messages
    if verdict.small and any(m.images for m in messages):
        from carrier_cli.runtime.attachments import model_sees_images

        if not model_sees_images(deps, params.model):  # the budget's small model: text only
            messages = [replace(m, images=()) for m in messages]
    generation = generate(
        deps.model,
        messages,
        params,
        turn.tlog,
        turn.stream,
        gen,
        purpose="reply",
        call=call_context(deps, turn.ctx, "reply"),
    )
    async with closing(generation):
        async for delta in generation:
            yield delta
    turn.model_seconds += gen.model_seconds
    turn.parsed = gen.parsed
    turn.ctx.thought = gen.parsed.thought
    turn.ctx.actions = gen.parsed.actions


async def generate(
    model: ChatModel,
    messages: list[ChatMessage],
    params: GenerationParams,
    tlog: TurnLog,
    stream: bool,
    out: Generation,
    *,
    purpose: str,
    call: CallContext | None = None,
) -> AsyncIterator[str]:
    """The model call, asked once more only for broken markup (`ParseAttempts`); yields
    streamed text; the result lands in `out`. `call`: what the usage records say the
    call was for (default: `purpose` in the enclosing context)."""
    if call is None:
        call = replace(current_context(), purpose=purpose)
    raw = ""
    attempts = ParseAttempts(purpose)
    for attempt in attempts:
        record = PromptRecord(
            purpose,
            params.model,
            messages[-1].content,
            system=messages[0].content,
            attempt=attempt,
        )
        tlog.calls.append(record)
        extractor = StreamingTextExtractor()
        try:
            with timed(record):
                if stream:
                    parts: list[str] = []
                    chunks = stepped(call, model.stream(messages, params))
                    async with closing(chunks):
                        async for chunk in chunks:
                            parts.append(chunk)
                            delta = extractor.feed(chunk)
                            if delta:
                                yield delta
                    raw = "".join(parts)
                else:
                    with using(call):
                        raw = await model.complete(messages, params)
        finally:
            out.model_seconds += record.seconds
        record.output = raw
        parsed = parse_reply(raw)
        if parsed.ok:
            if stream and parsed.text and not extractor.emitted_any:
                yield parsed.text  # no <text> tag streamed (plain text, JSON): whole now
            out.parsed = parsed
            return
        tlog.parse_failures += 1
        # Text already shown while streaming: keep it rather than contradict it.
        attempts.failed(retry=not (stream and extractor.emitted_any))
    text = raw_fallback(raw)
    if stream and text:
        yield text
    out.parsed = ParsedReply(text=text or None, actions=["REPLY"] if text else [], ok=False)


async def post(deps: TurnDeps, messages: list[ChatMessage]) -> str:
    """A post's text (`AgentRuntime.generate_post`): asked again for broken markup, an
    empty answer or a silent choice, then the raw text; no text at all is an error (and
    so is a budget that refuses: BudgetRefused)."""
    verdict = await deps.budget.check("post")
    if verdict.refused:
        raise BudgetRefused(verdict)
    params = deps.model_config.params(small=verdict.small)
    raw = ""
    attempts = ParseAttempts("post")
    for attempt in attempts:
        started = perf_counter()
        with calling(purpose="post", character=deps.character.name, agent_id=deps.agent_id):
            raw = await deps.model.complete(messages, params)
        log.debug("post attempt %d (%.0f ms):\n%s", attempt, (perf_counter() - started) * 1000, raw)
        parsed = parse_reply(raw)
        if parsed.ok and parsed.text:  # plain text without tags included
            return parsed.text.strip().strip('"').strip()
        attempts.failed()  # broken markup, empty, or a silent choice: no post
    text = raw_fallback(raw)
    if not text:
        tries = "attempt" if attempts.failures == 1 else "attempts"
        raise RuntimeFailure(
            f"The model ({deps.model_config.provider} {deps.model_config.large}) returned "
            f"no usable post text after {attempts.failures} {tries}.",
            hint="Try again, or use a stronger model (--model).",
        )
    return text


class closing:  # lower case: used as `async with closing(...)`, like contextlib's
    """Close a nested async generator when the outer one stops early (a consumer that
    breaks out of a stream, Ctrl-C): the model's HTTP stream is released at once.

    A class rather than an @asynccontextmanager: each of those is an async generator of its
    own, and asyncio registers every async generator's first iteration in a WeakSet (22
    per Discord turn, ~0.3 ms of the bot's CPU per turn under the profiler)."""

    __slots__ = ("iterator",)

    def __init__(self, iterator: AsyncIterator[Any]) -> None:
        self.iterator = iterator

    async def __aenter__(self) -> AsyncIterator[Any]:
        return self.iterator

    async def __aexit__(self, *exc: object) -> None:
        aclose = getattr(self.iterator, "aclose", None)
        if aclose is not None:
            await aclose()


@contextmanager
def timed(record: PromptRecord) -> Iterator[None]:
    """One model call, timed into its prompt-log record, with its error (scrubbed) there
    too when it fails or is cancelled."""
    began = perf_counter()
    try:
        yield
    except BaseException as exc:
        record.error = describe_error(exc)
        raise
    finally:
        record.seconds = perf_counter() - began


def describe_error(exc: BaseException) -> str:
    """For the prompt log, which `/debug` prints: never a secret."""
    from carrier_cli.state import scrub

    return scrub(f"{type(exc).__name__}: {exc}")
