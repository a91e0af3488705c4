"""Chat through the official `anthropic` SDK (the Messages API).

The Messages API differs from chat completions in ways the runtime should not care about:
the system prompt is a separate `system=` field, roles must alternate and the first
message must be the user's. `to_anthropic_messages` reshapes our messages accordingly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anthropic

from carrier_cli.errors import CarrierError
from carrier_cli.llm import sdk_errors
from carrier_cli.llm.base import ChatMessage, GenerationParams, ImagePart
from carrier_cli.llm.errors import KeyRejected, PermissionDenied, UnknownModel
from carrier_cli.llm.recording import Attempts, anthropic_usage
from carrier_cli.llm.retry import Retrier, RetryPolicy, Transient
from carrier_cli.llm.tokens import fit_messages_to_window
from carrier_cli.usage.records import CallObserver

log = logging.getLogger(__name__)
DEFAULT_ANTHROPIC_BASE_URL = "https://api.anthropic.com"
# Anthropic requires a non-empty first user turn; used when the prompt has only a system part.
_EMPTY_TURN = "(continue)"
# Error events a 200 stream may carry (`event: error`) that are worth another try.
_TRANSIENT_STREAM_ERRORS = frozenset({"overloaded_error", "rate_limit_error", "api_error"})


def _stream_error_type(exc: BaseException) -> str | None:
    """An `event: error` inside a 200 stream arrives as a status error with only its type."""
    if isinstance(exc, anthropic.APIStatusError) and exc.type in _TRANSIENT_STREAM_ERRORS:
        return str(exc.type)
    return None


def _detail(exc: anthropic.APIStatusError) -> str:
    message = getattr(exc, "api_message", None)
    return sdk_errors.server_detail(
        message if isinstance(message, str) and message else exc.message
    )


_SDK = sdk_errors.SdkExceptions.of(
    anthropic,
    base=anthropic.AnthropicError,
    in_stream=_stream_error_type,
    detail=_detail,
    status_labels={429: "rate limited (429)", 529: "overloaded (529)"},
)


def to_anthropic_messages(
    messages: Sequence[ChatMessage],
) -> tuple[str | None, list[dict[str, Any]]]:
    """(system, messages): system parts joined; same-role neighbours merged; a user turn
    first. Anthropic rejects anything else with a 400. A message with images becomes a
    list of content blocks: the images first (base64 `image` blocks, where Anthropic
    recommends them), then the text."""
    system_parts = [m.content for m in messages if m.role == "system" and m.content]
    turns: list[dict[str, Any]] = []
    images: list[list[dict[str, Any]]] = []  # per turn, in order
    for message in messages:
        if message.role == "system":
            continue
        blocks = [_image_block(image) for image in message.images]
        if turns and turns[-1]["role"] == message.role:
            turns[-1]["content"] = f"{turns[-1]['content']}\n\n{message.content}"
            images[-1].extend(blocks)
        else:
            turns.append({"role": message.role, "content": message.content})
            images.append(blocks)
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": _EMPTY_TURN})
        images.insert(0, [])
    for turn, blocks in zip(turns, images, strict=True):
        if not turn["content"].strip():
            turn["content"] = _EMPTY_TURN
        if blocks:
            turn["content"] = [*blocks, {"type": "text", "text": turn["content"]}]
    return ("\n\n".join(system_parts) or None), turns


def _image_block(image: ImagePart) -> dict[str, Any]:
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": image.mime, "data": image.base64()},
    }


class AnthropicChatModel:
    name = "anthropic"

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        context_window: int | None = None,
        trim_to_context: bool = True,
        observers: list[CallObserver] | None = None,
    ) -> None:
        self.observers: list[CallObserver] = observers if observers is not None else []
        self.context_window = context_window
        self.trim_to_context = trim_to_context
        if base_url and base_url.rstrip("/").endswith("/v1"):
            # The SDK adds /v1 itself; a copied ".../v1" URL would give /v1/v1/messages.
            base_url = base_url.rstrip("/")[: -len("/v1")]
        self.base_url = base_url
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url or DEFAULT_ANTHROPIC_BASE_URL,
            timeout=timeout,
            max_retries=0,
        )

    @property
    def _url(self) -> str:
        return (self.base_url or DEFAULT_ANTHROPIC_BASE_URL).rstrip("/")

    def _describe(self) -> str:
        return f"Anthropic at {self._url}"

    def _retrier(self, attempts: Attempts | None = None) -> Retrier:
        return Retrier(
            self.retry,
            self._classify,
            self._describe(),
            on_failure=attempts.failed if attempts is not None and attempts.active else None,
        )

    def _classify(self, exc: BaseException) -> Transient | None:
        return sdk_errors.classify(exc, _SDK, timeout=self.timeout, url=self._url)

    def _translate(self, exc: BaseException, model: str) -> BaseException:
        if isinstance(exc, CarrierError):
            return exc
        if isinstance(exc, anthropic.AuthenticationError):
            return KeyRejected("anthropic", self.base_url and self._url)
        if isinstance(exc, anthropic.PermissionDeniedError):
            return PermissionDenied("anthropic", model, _detail(exc))
        if isinstance(exc, anthropic.NotFoundError):
            return UnknownModel("anthropic", model, self._url)
        rest = sdk_errors.translate_rest(
            exc, _SDK, provider="anthropic", model=model, url=self._url
        )
        return exc if rest is None else rest

    def _request(self, messages: Sequence[ChatMessage], params: GenerationParams) -> dict[str, Any]:
        if self.trim_to_context:
            messages = fit_messages_to_window(
                messages, "anthropic", params.model, params.max_tokens, self.context_window
            )
        system, turns = to_anthropic_messages(messages)
        request: dict[str, Any] = {
            "model": params.model,
            "messages": turns,
            "max_tokens": params.max_tokens,
        }
        # No temperature: the current Messages API (anthropic SDK 2.x) has no such parameter.
        if system:
            request["system"] = system
        if params.stop:
            request["stop_sequences"] = list(params.stop)
        return request

    async def complete(self, messages: Sequence[ChatMessage], params: GenerationParams) -> str:
        request = self._request(messages, params)
        attempts = Attempts(self.observers, self.name, params.model, messages)
        retrier = self._retrier(attempts)

        async def attempt() -> Any:
            attempts.start()
            return await self._client.messages.create(**request)

        try:
            response = await retrier.call(attempt)
        except Exception as exc:
            raise self._translate(exc, params.model) from None
        content = getattr(response, "content", None)
        if content is None:
            error = ValueError("no content in the message")
            attempts.failed(error, retried=False)
            raise self._translate(error, params.model)
        text = "".join(getattr(block, "text", "") for block in content if block.type == "text")
        attempts.ok(anthropic_usage(getattr(response, "usage", None)), text)
        return text

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[str]:
        """Text deltas; retried only before the first delta (see OpenAIChatModel.stream)."""
        request = self._request(messages, params)
        attempts = Attempts(self.observers, self.name, params.model, messages)
        retrier = self._retrier(attempts)
        yielded = False
        while True:
            attempts.start()
            parts: list[str] = []
            try:
                async with self._client.messages.stream(**request) as stream:
                    async for delta in stream.text_stream:
                        if delta:
                            if not yielded:
                                attempts.first_token()
                            yielded = True
                            if attempts.active:
                                parts.append(delta)
                            yield delta
                    # message_start's input tokens and message_delta's output tokens,
                    # accumulated by the SDK into the final message.
                    usage = None
                    if attempts.active:
                        usage = anthropic_usage((await stream.get_final_message()).usage)
                attempts.ok(usage, "".join(parts))
                return
            except (GeneratorExit, asyncio.CancelledError) as exc:
                attempts.failed(exc, retried=False)  # stopped by the caller: may be billed
                raise
            except Exception as exc:
                if yielded:
                    attempts.failed(exc, retried=False)
                    transient = self._classify(exc)
                    if transient is not None:
                        raise sdk_errors.broke_off(self._describe(), transient) from None
                    raise self._translate(exc, params.model) from None
                try:
                    await retrier.wait_or_raise(exc)
                except Exception as final:
                    raise self._translate(final, params.model) from None

    async def list_models(self) -> list[str]:
        """Model names the account may use (GET /v1/models), sorted."""
        retrier = self._retrier()

        async def fetch() -> list[str]:
            return sorted([m.id async for m in self._client.models.list(limit=1000)])

        try:
            return await retrier.call(fetch)
        except Exception as exc:
            raise self._translate(exc, "(listing models)") from None

    async def aclose(self) -> None:
        await self._client.close()

    def __repr__(self) -> str:
        return f"AnthropicChatModel(base_url={self.base_url!r})"
