"""Chat through the official `openai` SDK: OpenAI itself, Ollama, vLLM, LM Studio,
OpenRouter or anything else that speaks /v1/chat/completions."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from carrier_cli.llm import openai_common, sdk_errors
from carrier_cli.llm.base import ChatMessage, GenerationParams
from carrier_cli.llm.recording import Attempts, openai_usage
from carrier_cli.llm.retry import Retrier, RetryPolicy, Transient
from carrier_cli.llm.tokens import fit_messages_to_window
from carrier_cli.usage.records import CallObserver

log = logging.getLogger(__name__)

# OpenAI's reasoning models reject `temperature` and the old `max_tokens` parameter.
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")


def _refuses_stream_options(exc: BaseException) -> bool:
    """A 400/422 naming `stream_options`: the server does not know the parameter."""
    status = getattr(exc, "status_code", None)
    return status in (400, 422) and "stream_options" in str(exc)


def openai_message(message: ChatMessage) -> dict[str, Any]:
    """A chat-completions message: plain text, or with images a list of content parts
    (the text, then one `image_url` part per image as a `data:` URL, as OpenAI documents
    for inline images; servers never fetch a URL of ours)."""
    if not message.images:
        return {"role": message.role, "content": message.content}
    parts: list[dict[str, Any]] = [{"type": "text", "text": message.content}]
    parts.extend(
        {"type": "image_url", "image_url": {"url": image.data_url()}} for image in message.images
    )
    return {"role": message.role, "content": parts}


class OpenAIChatModel:
    """ChatModel over /v1/chat/completions. `name` is the provider name given to it."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        name: str = "openai",
        context_window: int | None = None,
        trim_to_context: bool = True,
        observers: list[CallObserver] | None = None,
        http_transport: openai_common.HttpTransport = "auto",
    ) -> None:
        self.name = name
        self.observers: list[CallObserver] = observers if observers is not None else []
        # Cleared when the server refuses `stream_options` (older Azure API versions and
        # some compatible servers answer 400): its streams are then estimated.
        self.stream_usage = True
        self.context_window = context_window
        self.trim_to_context = trim_to_context
        self.base_url = base_url
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._client = openai_common.make_client(api_key, base_url, timeout, http_transport)

    # -- helpers ---------------------------------------------------------------------------
    def _describe(self) -> str:
        return openai_common.describe(self.name, self.base_url)

    def _retrier(self, attempts: Attempts | None = None) -> Retrier:
        return Retrier(
            self.retry,
            self._classify,
            self._describe(),
            hint=openai_common.unavailable_hint(self.name),
            on_failure=attempts.failed if attempts is not None and attempts.active else None,
        )

    def _attempts(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Attempts:
        return Attempts(self.observers, self.name, params.model, messages)

    def _classify(self, exc: BaseException) -> Transient | None:
        return openai_common.classify(exc, self.timeout, self.base_url)

    def _translate(self, exc: BaseException, model: str) -> BaseException:
        return openai_common.translate(exc, self.name, model, self.base_url) or exc

    def _request(self, messages: Sequence[ChatMessage], params: GenerationParams) -> dict[str, Any]:
        if self.trim_to_context:
            messages = fit_messages_to_window(
                messages, self.name, params.model, params.max_tokens, self.context_window
            )
        request: dict[str, Any] = {
            "model": params.model,
            "messages": [openai_message(m) for m in messages],
        }
        reasoning = self.name == "openai" and params.model.startswith(_REASONING_PREFIXES)
        if not reasoning:
            request["temperature"] = params.temperature
        # OpenAI deprecated max_tokens for max_completion_tokens; compatible servers
        # (Ollama, vLLM, LM Studio) still only read max_tokens.
        request["max_completion_tokens" if self.name == "openai" else "max_tokens"] = (
            params.max_tokens
        )
        if params.stop:
            request["stop"] = list(params.stop)[:4]  # OpenAI accepts at most 4
        return request

    async def _post(self, body: dict[str, Any], *, stream: bool, raw: bool = False) -> Any:
        """POST /chat/completions through the SDK's generic `post` (its retries are ours to
        set, its errors, auth and stream parsing stay the SDK's). `chat.completions.create`
        first runs the body through the SDK's TypedDict transform, which walks every
        message part against the parameter types: 1.4 ms a request idle and 4 ms under
        load (profiled in the Discord burst), for a body of plain JSON that it returns
        unchanged. `raw`: the answer as the decoded JSON, without building the SDK's
        ChatCompletion model from it (~0.4 ms a reply of which we read two fields).
        `post_json` is `post` with its options and request built from templates
        (`openai_client`)."""
        return await self._client.post_json(
            "/chat/completions",
            body=body,
            cast_to=object if raw else openai_common.chat_completion_type(),
            options=openai_common.request_options(),
            stream=stream,
            stream_cls=openai_common.chunk_stream_type(),
        )

    # -- ChatModel -------------------------------------------------------------------------
    async def complete(self, messages: Sequence[ChatMessage], params: GenerationParams) -> str:
        request = self._request(messages, params)
        attempts = self._attempts(messages, params)
        retrier = self._retrier(attempts)

        async def attempt() -> Any:
            attempts.start()
            return await self._post(request, stream=False, raw=True)

        try:
            response = await retrier.call(attempt)
        except Exception as exc:
            raise self._translate(exc, params.model) from None
        choices = response.get("choices") if isinstance(response, dict) else None
        if not choices or not isinstance(choices, list):
            error = ValueError("no choices in the completion")
            attempts.failed(error, retried=False)
            raise self._translate(error, params.model)
        usage = response.get("usage")
        if usage is not None:
            log.debug("%s %s usage: %s", self.name, params.model, usage)
        message = choices[0].get("message") if isinstance(choices[0], dict) else None
        text = (message.get("content") if isinstance(message, dict) else None) or ""
        attempts.ok(openai_usage(usage), text)
        return str(text)

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[str]:
        """Text deltas as they arrive. Retries only before the first delta: after that a
        retry would repeat text the caller has already shown."""
        request = self._request(messages, params)
        # The usage arrives in a last chunk with no choices (OpenAI, vLLM, Ollama, ...);
        # a server that ignores the option sends none and the tokens are estimated.
        if self.stream_usage:
            request["stream_options"] = {"include_usage": True}
        attempts = self._attempts(messages, params)
        retrier = self._retrier(attempts)
        yielded = False
        while True:
            attempts.start()
            parts: list[str] = []
            usage: Any = None
            try:
                stream = await self._post({**request, "stream": True}, stream=True)
                try:
                    async for chunk in stream:
                        if getattr(chunk, "usage", None) is not None:
                            usage = chunk.usage
                        if not chunk.choices:
                            continue
                        delta = chunk.choices[0].delta.content
                        if delta:
                            if not yielded:
                                attempts.first_token()
                            yielded = True
                            if attempts.active:
                                parts.append(delta)
                            yield delta
                finally:
                    await stream.close()
                attempts.ok(openai_usage(usage), "".join(parts))
                return
            except Exception as exc:
                if yielded:
                    attempts.failed(exc, retried=False)
                    raise self._translate_midstream(exc, params.model) from None
                if "stream_options" in request and _refuses_stream_options(exc):
                    log.info("%s refuses stream_options; streaming without", self._describe())
                    self.stream_usage = False
                    del request["stream_options"]
                    attempts.failed(exc, retried=True)
                    continue
                try:
                    await retrier.wait_or_raise(exc)
                except Exception as final:
                    raise self._translate(final, params.model) from None
            except (GeneratorExit, asyncio.CancelledError) as exc:
                attempts.failed(exc, retried=False)  # stopped by the caller: may be billed
                raise

    def _translate_midstream(self, exc: BaseException, model: str) -> BaseException:
        transient = self._classify(exc)
        if transient is not None:
            return sdk_errors.broke_off(self._describe(), transient)
        return self._translate(exc, model)

    async def list_models(self) -> list[str]:
        """Model names the server offers (GET /v1/models), sorted."""
        retrier = self._retrier()

        async def fetch() -> list[str]:
            return sorted([model.id async for model in self._client.models.list()])

        try:
            return await retrier.call(fetch)
        except Exception as exc:
            raise self._translate(exc, "(listing models)") from None

    async def aclose(self) -> None:
        await self._client.close()

    def __repr__(self) -> str:  # never show the client (it holds the key)
        return f"OpenAIChatModel(name={self.name!r}, base_url={self.base_url!r})"
