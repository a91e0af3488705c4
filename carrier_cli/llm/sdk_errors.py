"""Which SDK failures are worth another try, and what the rest mean: one rule for the
`openai` and `anthropic` SDKs.

Both SDKs are built on httpx and raise the same family of exceptions under their own names
(`APITimeoutError`, `APIConnectionError`, `APIStatusError`), and both let raw httpx transport
errors escape while a stream is being read. The rule is the same for every provider, so it is
written once here; each SDK module only says which of its classes play which part and how an
error event inside a 200 stream names itself (the one place where the SDKs really differ).

Imported only by the SDK modules (`anthropic_chat`, `openai_common`), which need httpx
anyway: nothing here may be imported at `import carrier_cli` time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2

from carrier_cli.errors import CarrierError, RuntimeFailure
from carrier_cli.llm.errors import (
    BadRequest,
    ProviderResponseError,
    ProviderUnavailable,
    provider_label,
)
from carrier_cli.llm.retry import Transient, parse_retry_after


def _rate_limited_only() -> dict[int, str]:
    return {429: "rate limited (429)"}


@dataclass(frozen=True)
class SdkExceptions:
    """One SDK's exception classes, in the parts the classification gives them.

    `in_stream` returns the error type of an error event sent inside a 200 event stream
    when that type is worth a retry (overloaded, rate limited), else None: such an event
    has no useful status code, only its type. `status_labels` names retryable statuses;
    any other retryable status reads "server error (N)".
    """

    timeout: type[BaseException]
    connection: type[BaseException]
    status: type[BaseException]
    invalid_answer: type[BaseException]  # APIResponseValidationError
    base: type[BaseException]  # the root of the SDK's own exceptions
    in_stream: Callable[[Any], str | None]
    detail: Callable[[Any], str]  # the server's own message in a status error
    status_labels: Mapping[int, str] = field(default_factory=_rate_limited_only)


def classify(
    exc: BaseException, sdk: SdkExceptions, *, timeout: float, url: str
) -> Transient | None:
    """429, 408, 5xx, timeouts, connection failures and retryable stream error events are
    worth another try; nothing else is. `url` (no trailing slash) is named in the reason."""
    # The SDK's timeout class derives from its connection class: test it first. httpx's
    # own exceptions are raised raw while a stream is read, outside the SDK's wrapping.
    if isinstance(exc, (sdk.timeout, httpx2.TimeoutException)):
        return Transient(f"no answer within {timeout:g} s (timeout)")
    if isinstance(exc, sdk.connection):
        cause = exc.__cause__ or exc.__context__
        detail = f": {type(cause).__name__}" if cause is not None else ""
        return Transient(f"connection to {url} failed{detail}")
    if isinstance(exc, httpx2.TransportError):
        return Transient(f"connection to {url} failed: {type(exc).__name__}")
    if isinstance(exc, sdk.status):
        answered: Any = exc  # both SDKs' status errors carry .status_code and .response
        status: int = answered.status_code
        if status == 429 or status >= 500 or status == 408:
            label = sdk.status_labels.get(status, f"server error ({status})")
            return Transient(label, parse_retry_after(dict(answered.response.headers)))
    error_type = sdk.in_stream(exc)
    if error_type:
        return Transient(f"{error_type} during the stream")
    return None


def translate_rest(
    exc: BaseException, sdk: SdkExceptions, *, provider: str, model: str, url: str
) -> CarrierError | None:
    """The Carrier error for an SDK exception past the ones each SDK words its own way
    (401, 403, 404 and the like, checked first by the caller), or None if it is not the
    SDK's: 400/413/422 refuse the request, any other status is named, an answer in the
    wrong shape says so (clipped: it may quote a whole response)."""
    label = provider_label(provider)
    if isinstance(exc, sdk.status):
        answered: Any = exc
        if answered.status_code in (400, 413, 422):
            return BadRequest(provider, model, sdk.detail(answered))
        return RuntimeFailure(
            f"{label} at {url} answered {answered.status_code}: {sdk.detail(answered)}"
        )
    if isinstance(exc, (sdk.invalid_answer, ValueError)):
        return ProviderResponseError(provider, url, f"{type(exc).__name__}: {exc}"[:300])
    if isinstance(exc, sdk.base):
        return RuntimeFailure(f"{label} at {url} failed: {exc}")
    return None


def broke_off(describe: str, transient: Transient) -> ProviderUnavailable:
    """A transient failure after the first streamed delta: not retried, since a retry would
    repeat text the caller has already shown."""
    return ProviderUnavailable(
        f"{describe} broke off the reply mid-stream ({transient.reason}).",
        hint="Send the message again.",
    )
