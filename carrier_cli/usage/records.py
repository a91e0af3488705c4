"""One record per model call attempt, and the context that says what the call was for.

The model providers (llm/) know tokens, latency and outcome but not why they were called;
the runtime knows why (reply, should-respond, facts...) and for whom (character, room,
client) but not what the provider reported. `calling(...)` joins the two without passing
arguments through every layer: the runtime sets a context variable around a call, the
provider reads it when it builds the record, and the record goes to every observer the
model carries (the usage meter, the metrics). A context variable follows the asyncio task,
so concurrent turns in different rooms never see each other's context.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal, Protocol

# What a call was for. "embedding" is a remote embedding request (the local model is free).
Purpose = Literal[
    "reply", "should_respond", "continue", "facts", "post", "small", "embedding", "check"
]
# ok: this attempt succeeded. retried: it failed and another attempt followed.
# failed: it failed and was the last one (the caller saw an error).
Outcome = Literal["ok", "retried", "failed"]
Client = str  # "terminal" | "discord" | "instagram" | "api" | a third-party client's name


@dataclass(frozen=True)
class TokenUsage:
    """Tokens as the provider reported them. `estimated`: the provider reported none
    (some OpenAI-compatible servers), so they were counted locally (llm/tokens.py)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None  # input tokens served from the provider's prompt cache
    estimated: bool = False

    @property
    def total(self) -> int:
        return (self.input_tokens or 0) + (self.output_tokens or 0)


@dataclass(frozen=True)
class CallContext:
    """Why and for whom a model call is made; set by the runtime with `calling()`."""

    purpose: str = "small"
    character: str | None = None
    agent_id: uuid.UUID | None = None
    room_id: uuid.UUID | None = None
    client: Client | None = None
    turn_id: uuid.UUID | None = None  # the incoming message's memory id


_CONTEXT: ContextVar[CallContext | None] = ContextVar("carrier_call_context", default=None)


def current_context() -> CallContext:
    """The innermost `calling()` context, or an anonymous one outside any."""
    return _CONTEXT.get() or CallContext()


@contextlib.contextmanager
def calling(**fields: object) -> Iterator[CallContext]:
    """`with calling(purpose="reply", room_id=...):` around a model call. Fields not given
    are inherited from the enclosing context (the runtime sets character and agent once
    per turn, each stage adds its purpose)."""
    context = replace(current_context(), **fields)  # type: ignore[arg-type]
    token = _CONTEXT.set(context)
    try:
        yield context
    finally:
        _CONTEXT.reset(token)


@contextlib.contextmanager
def using(context: CallContext) -> Iterator[CallContext]:
    """Set exactly `context` (not merged with the enclosing one): the runtime builds a
    turn's context once and sets it around each step of a model stream."""
    token = _CONTEXT.set(context)
    try:
        yield context
    finally:
        _CONTEXT.reset(token)


@dataclass
class CallRecord:
    """One attempt at one model call, as stored in the `model_calls` table.

    A call retried twice leaves three records (two `retried`, one `ok` or `failed`), so
    the operator sees what every attempt cost: a timed-out attempt may still be billed.
    """

    provider: str
    model: str
    context: CallContext
    attempt: int = 1  # 1-based, per call
    outcome: Outcome = "ok"
    error_code: str | None = None  # "429", "500", "timeout", "connection", "overloaded", ...
    usage: TokenUsage = field(default_factory=TokenUsage)
    first_token_ms: float | None = None  # streaming calls only
    total_ms: float = 0.0
    cost_usd: float | None = None  # None: no price known for this model (never a guess)
    prompt: str | None = None  # rendered prompt and raw output: kept only with log_prompts
    output: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    id: uuid.UUID = field(default_factory=uuid.uuid4)


class CallObserver(Protocol):
    """Receives every record a model emits. Called synchronously on the event loop, right
    after the attempt: it must not block (queue the work, don't do it)."""

    def __call__(self, record: CallRecord) -> None: ...


def notify(observers: Sequence[CallObserver], record: CallRecord) -> None:
    """Hand a record to each observer; one failing observer never fails the model call."""
    for observer in observers:
        try:
            observer(record)
        except Exception:  # an observer bug must not turn into a failed reply
            import logging

            logging.getLogger(__name__).exception("usage observer %r failed", observer)


@dataclass
class UsageTotals:
    """Sums over records: a chat session's `/usage`, one turn's footer, a `carrier usage` row."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0  # over the calls with a known price
    unpriced_calls: int = 0  # calls whose model has no price: their cost is unknown, not 0
    estimated_calls: int = 0  # calls whose tokens were counted locally

    def add(self, record: CallRecord) -> None:
        self.calls += 1
        self.input_tokens += record.usage.input_tokens or 0
        self.output_tokens += record.usage.output_tokens or 0
        self.cached_tokens += record.usage.cached_tokens or 0
        if record.cost_usd is None:
            self.unpriced_calls += 1
        else:
            self.cost_usd += record.cost_usd
        if record.usage.estimated:
            self.estimated_calls += 1


def observer_lists(*owners: object) -> list[list[CallObserver]]:
    """The `observers` lists of the given models and embedders, each once (a local
    embedder has none: it costs nothing and calls no provider). The usage meter and the
    metrics both attach themselves through this, and detach from the same lists."""
    found: list[list[CallObserver]] = []
    for owner in owners:
        observers = getattr(owner, "observers", None)
        if isinstance(observers, list) and not any(observers is f for f in found):
            found.append(observers)
    return found
