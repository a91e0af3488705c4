"""One `CallRecord` per provider attempt, built where the attempt happens.

Each provider call makes an `Attempts` for the logical call; `start()` opens an attempt,
`first_token()` marks the first streamed delta, `ok(...)` or `failed(...)` closes it and
hands the record to the model's observers. The retrier reports failed attempts through
`Retrier(on_failure=attempts.failed)`: only it knows whether another attempt follows
(outcome "retried") or not ("failed").

With no observers nothing is built: a model used outside a runtime (probes, `carrier
check`, the tests of the retry rules) pays nothing for recording.
"""

from __future__ import annotations

from collections.abc import Sequence
from time import perf_counter
from typing import Any

from carrier_cli.llm.base import ChatMessage
from carrier_cli.usage.records import (
    CallContext,
    CallObserver,
    CallRecord,
    TokenUsage,
    current_context,
    notify,
)


def render_prompt(messages: Sequence[ChatMessage]) -> str:
    """The prompt as one text (for `log_prompts`): role-labelled messages."""
    return "\n\n".join(f"[{m.role}]\n{m.content}" for m in messages)


def error_code(exc: BaseException) -> str:
    """A short code for a failed attempt: the HTTP status, "timeout", "connection", an
    in-stream error's type, else the exception's class name. Duck-typed, so the SDKs are
    not imported here."""
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    if name in ("CancelledError", "GeneratorExit"):
        return "cancelled"
    if isinstance(status, int):
        return str(status)
    if "Timeout" in name:
        return "timeout"
    if "Connection" in name or name in ("ConnectError", "ReadError", "RemoteProtocolError"):
        return "connection"
    kind = getattr(exc, "type", None)
    if isinstance(kind, str) and kind:
        return kind
    return name


def estimated_usage(messages: Sequence[ChatMessage], output: str | None, model: str) -> TokenUsage:
    """Tokens counted locally (llm/tokens.py) for a provider that reported none."""
    from carrier_cli.llm.tokens import count_message_tokens, count_tokens

    return TokenUsage(
        input_tokens=count_message_tokens(messages, model),
        output_tokens=count_tokens(output or "", model),
        estimated=True,
    )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _field(value: Any, name: str) -> Any:
    """`name` of an SDK model, or of the decoded JSON (a non-streamed OpenAI reply is read
    without building the SDK's model: OpenAIChatModel.complete)."""
    if isinstance(value, dict):
        return value.get(name)
    return getattr(value, name, None)


def openai_usage(usage: Any) -> TokenUsage | None:
    """`usage` of an OpenAI chat completion (or final stream chunk, or embeddings answer);
    None when the server sent none. `prompt_tokens` already includes the cached ones."""
    if usage is None:
        return None
    input_tokens = _int(_field(usage, "prompt_tokens"))
    output_tokens = _int(_field(usage, "completion_tokens"))
    details = _field(usage, "prompt_tokens_details")
    cached = _int(_field(details, "cached_tokens")) if details is not None else None
    if input_tokens is None and output_tokens is None:
        return None
    return TokenUsage(input_tokens, output_tokens, cached)


def anthropic_usage(usage: Any) -> TokenUsage | None:
    """Anthropic `usage`. Its `input_tokens` excludes the cache reads and writes; here
    input includes them (as OpenAI's does), with the cache reads as `cached_tokens`, so
    one cost rule serves both."""
    if usage is None:
        return None
    plain = _int(getattr(usage, "input_tokens", None))
    output_tokens = _int(getattr(usage, "output_tokens", None))
    read = _int(getattr(usage, "cache_read_input_tokens", None))
    written = _int(getattr(usage, "cache_creation_input_tokens", None))
    if plain is None and output_tokens is None:
        return None
    input_tokens = None if plain is None else plain + (read or 0) + (written or 0)
    return TokenUsage(input_tokens, output_tokens, read)


class Attempts:
    """The attempts of one logical call; see the module docstring."""

    __slots__ = (
        "_began",
        "_first_ms",
        "context",
        "messages",
        "model",
        "number",
        "observers",
        "provider",
    )

    def __init__(
        self,
        observers: Sequence[CallObserver],
        provider: str,
        model: str,
        messages: Sequence[ChatMessage] = (),
        *,
        purpose: str | None = None,
    ) -> None:
        self.observers = observers
        self.provider = provider
        self.model = model
        self.messages = messages
        context = current_context()
        if purpose is not None and context.purpose != purpose:
            from dataclasses import replace

            context = replace(context, purpose=purpose)
        self.context: CallContext = context
        self.number = 0
        self._began = perf_counter()
        self._first_ms: float | None = None

    @property
    def active(self) -> bool:
        return bool(self.observers)

    def start(self) -> None:
        self.number += 1
        self._began = perf_counter()
        self._first_ms = None

    def first_token(self) -> None:
        if self._first_ms is None:
            self._first_ms = (perf_counter() - self._began) * 1000.0

    def _record(self, **fields: Any) -> CallRecord:
        return CallRecord(
            provider=self.provider,
            model=self.model,
            context=self.context,
            attempt=max(1, self.number),
            first_token_ms=self._first_ms,
            total_ms=(perf_counter() - self._began) * 1000.0,
            **fields,
        )

    def ok(self, usage: TokenUsage | None, output: str | None = None) -> None:
        """The attempt succeeded; `usage` None means the provider reported none, so the
        tokens are counted locally and marked estimated."""
        if not self.observers:
            return
        if usage is None or usage.input_tokens is None:
            counted = estimated_usage(self.messages, output, self.model)
            if usage is not None and usage.output_tokens is not None:
                counted = TokenUsage(counted.input_tokens, usage.output_tokens, estimated=True)
            usage = counted
        record = self._record(
            usage=usage,
            prompt=render_prompt(self.messages) if self.messages else None,
            output=output,
        )
        notify(self.observers, record)

    def failed(self, exc: BaseException, retried: bool) -> None:
        """The attempt failed; `retried`: another attempt follows."""
        if not self.observers:
            return
        record = self._record(
            outcome="retried" if retried else "failed",
            error_code=error_code(exc),
            prompt=render_prompt(self.messages) if self.messages else None,
        )
        notify(self.observers, record)
