"""A fake model server that speaks the OpenAI and Anthropic HTTP APIs on 127.0.0.1.

Tests drive it through the *official* `openai` and `anthropic` SDKs (via base_url), so what
is tested is our code against the real client libraries, not against mocks of ourselves.

Endpoints
    POST /v1/chat/completions   OpenAI chat (plain JSON with usage, or SSE when stream=true)
    POST /v1/embeddings         OpenAI embeddings (deterministic hash-seeded unit vectors;
                                float or base64 encoding; honours `dimensions`)
    GET  /v1/models             OpenAI model list
    POST /v1/messages           Anthropic messages (plain, or the SSE event sequence)
    POST /_admin/script         push replies (JSON list of reply dicts, see `Reply`)
    POST /_admin/config         change expect_key / models / dimension / default_text / plain /
                                latency
    GET  /_admin/requests       every request recorded so far (auth headers removed)
    POST /_admin/reset          clear the queue and the recorded requests

Replies are consumed one per request from a queue per endpoint kind ("chat" serves both
/v1/chat/completions and /v1/messages; "embeddings" serves /v1/embeddings). With an empty
queue the default rule answers:

* a should-respond prompt (any message contains the whole words RESPOND and IGNORE and the
  prompt has no `<actions>` tag) gets the one word `RESPOND`;
* anything else gets the runtime's XML reply format
  `<response><thought>...</thought><actions>REPLY</actions><text>Echo: NEW</text></response>`
  where NEW is the new incoming message: in a runtime prompt, the text of the last
  `(when) Name: text` entry of its `<conversation>` section (see
  carrier_cli/runtime/templates.py and formatting.py); otherwise the last non-empty line of
  the last user message outside its `<output>` format section that is not a template tag
  line such as `</output>`. It is cut to
  200 characters and XML-escaped, so the runtime parses back exactly the echoed text.
  `default_text`, when one is configured, is used as the text instead (verbatim).
  With `plain` set (`--plain`) the text comes back bare, without any XML tags and not
  escaped, the way small local models (e.g. through Ollama) often ignore the format.

Images, as the real APIs take them inline: OpenAI `image_url` content parts with a `data:`
URL, Anthropic `image` blocks with a base64 source. Each is decoded and checked (media type
one of png/jpeg/gif/webp, bytes that are such an image, else the provider's 400), recorded
(`RecordedRequest.images`), and the default reply then describes what it saw, e.g.
`Echo: look [saw image 1: image/png 64x48, mostly red]`, so a test can tell a reply about
the picture from one without it. A model named in `text_only` (config / `--text-only`)
answers images with the 400 the real service gives a text-only model.

Auth is checked like the real services: OpenAI needs `Authorization: Bearer ...`;
Anthropic needs `x-api-key` (or `Authorization: Bearer`, which anthropic 2.x sends) and
`anthropic-version`. With `expect_key` set, any other key is
answered 401 with the provider's error JSON. With `models` set, other model names get 404.

Run standalone (for tests that start the real `carrier` CLI as a subprocess):
    python -m tests.support.model_server --port 0 [--script FILE.json] [--expect-key KEY]
The first line on stdout is the base URL (http://127.0.0.1:PORT).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import html
import itertools
import json
import math
import random
import re
import struct
import sys
import time
import urllib.request
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from aiohttp import web

_HIDDEN_HEADERS = {"authorization", "x-api-key"}


@dataclass
class Reply:
    """One scripted answer. Fields left at their defaults fall back to the default rule.

    text: the reply text (None: the default rule's text).
    chunks: stream deltas; default splits `text` into word-sized pieces.
    status/headers/body: an error answer. `body` None builds the provider's error JSON
        from `error_message`/`error_type`/`error_code`; a str is sent raw.
    delay: seconds to wait before answering (for timeouts).
    chunk_delay: seconds between stream chunks.
    malformed: send broken JSON (plain) or a broken SSE data line (stream).
    disconnect_after: stream: close the connection after this many text chunks.
    stream_error_after: stream: after this many text chunks send the provider's in-stream
        error (OpenAI `data: {"error": ...}`, Anthropic `event: error`) of `error_type`
        (default server_error / overloaded_error) and end the stream.
    endpoint: "chat" or "embeddings" (which queue the reply goes to).
    report_usage: False answers without any usage (as some OpenAI-compatible servers do).
    cached_tokens: input tokens reported as read from the prompt cache (OpenAI
        `prompt_tokens_details.cached_tokens`, Anthropic `cache_read_input_tokens`).
    """

    text: str | None = None
    chunks: list[str] | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    error_message: str | None = None
    error_type: str | None = None
    error_code: str | None = None
    delay: float = 0.0
    chunk_delay: float = 0.0
    malformed: bool = False
    disconnect_after: int | None = None
    stream_error_after: int | None = None
    endpoint: str = "chat"
    report_usage: bool = True
    cached_tokens: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reply:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown reply fields: {sorted(unknown)}")
        return cls(**data)


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    time: float  # time.monotonic() when it arrived (system-wide clock on Linux)
    status: int = 0  # what the server answered
    # The usage the answer reported, as the provider spells it (None: none was sent).
    usage: dict[str, Any] | None = None

    @property
    def messages(self) -> list[dict[str, Any]]:
        if isinstance(self.body, dict):
            return list(self.body.get("messages") or [])
        return []

    @property
    def images(self) -> list[tuple[str, bytes]]:
        """(media type, bytes) of every image in the request, in order, either API's shape."""
        found: list[tuple[str, bytes]] = []
        for message in self.messages:
            content = message.get("content")
            if isinstance(content, list):
                for block in content:
                    decoded = _decode_image_block(block) if isinstance(block, dict) else None
                    if decoded is not None:
                        found.append(decoded)
        return found

    @property
    def prompt_text(self) -> str:
        """Every message's text (and Anthropic's `system`) joined, for prompt assertions."""
        parts: list[str] = []
        if isinstance(self.body, dict) and self.body.get("system"):
            parts.append(_content_text(self.body["system"]))
        parts.extend(_content_text(m.get("content")) for m in self.messages)
        return "\n".join(parts)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(block.get("text", "")) for block in content if isinstance(block, dict))
    return "" if content is None else str(content)


_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)$", re.S)
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")


def _decode_image_block(block: dict[str, Any]) -> tuple[str, bytes] | None:
    """An OpenAI image_url part or an Anthropic image block as (media type, bytes); None
    for other blocks or undecodable data."""
    try:
        if block.get("type") == "image_url":
            match = _DATA_URL.match(str((block.get("image_url") or {}).get("url", "")))
            if match is None:
                return None
            return match["mime"], base64.b64decode(match["data"], validate=True)
        if block.get("type") == "image":
            source = block.get("source") or {}
            if source.get("type") != "base64":
                return None
            return str(source.get("media_type")), base64.b64decode(
                str(source.get("data")), validate=True
            )
    except (ValueError, TypeError):
        return None
    return None


def describe_image(data: bytes) -> str | None:
    """`64x48, mostly red` (Pillow reads it), or None when the bytes are no image."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            red, green, blue = image.convert("RGB").resize((1, 1)).getpixel((0, 0))  # type: ignore[misc]
    except Exception:
        return None
    colours = {"red": red, "green": green, "blue": blue}
    main = max(colours, key=lambda k: colours[k])
    tone = "grey" if max(colours.values()) - min(colours.values()) < 40 else main
    return f"{width}x{height}, mostly {tone}"


def _image_summary(messages: list[dict[str, Any]]) -> str:
    """` [saw image 1: image/png 64x48, mostly red]` for the images of the last user turn."""
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if not isinstance(content, list):
            return ""
        seen = []
        for block in content:
            decoded = _decode_image_block(block) if isinstance(block, dict) else None
            if decoded is not None:
                seen.append(f"{decoded[0]} {describe_image(decoded[1])}")
        return "".join(f" [saw image {i}: {d}]" for i, d in enumerate(seen, 1))
    return ""


_SHOULD_RESPOND = re.compile(r"\bRESPOND\b")
_IGNORE = re.compile(r"\bIGNORE\b")
# The runtime renders the conversation inside <conversation> as one entry per message,
# oldest first: `(just now) Alice: text` (carrier_cli/runtime/formatting.py).
_CONVERSATION = re.compile(r"<conversation>\n?(.*?)</conversation>", re.S)
_ENTRY = re.compile(r"^\((?:just now|\d+ (?:minute|hour|day|week)s? ago)\) [^\n]*?: ", re.M)
_OUTPUT = re.compile(r"<output>.*?</output>", re.S)
_TAG_LINE = re.compile(r"</?[A-Za-z][\w:-]*(?:\s[^<>]*)?>(?:.*>)?")


def new_message_text(prompt: str) -> str:
    """The new incoming message a prompt asks about (see `default_reply_text`)."""
    blocks = _CONVERSATION.findall(prompt)
    entries = list(_ENTRY.finditer(blocks[-1])) if blocks else []
    if entries:
        text = blocks[-1][entries[-1].end() :].strip()
        if text:
            return text
    instructions = _OUTPUT.sub("", prompt)  # the reply-format example is never the message
    lines = [line.strip() for line in instructions.splitlines()]
    plain = [line for line in lines if line and not _TAG_LINE.fullmatch(line)]
    return plain[-1] if plain else ""


def default_reply_text(
    messages: list[dict[str, Any]],
    system: str = "",
    default_text: str | None = None,
    *,
    plain: bool = False,
) -> str:
    """The deterministic reply the server gives when nothing is scripted."""
    everything = "\n".join([system, *(_content_text(m.get("content")) for m in messages)])
    if (
        _SHOULD_RESPOND.search(everything)
        and _IGNORE.search(everything)
        and "<actions>" not in everything
    ):
        return "RESPOND"
    if default_text is not None:
        text = default_text
    else:
        last_user = ""
        for message in reversed(messages):
            if message.get("role") == "user":
                last_user = _content_text(message.get("content"))
                break
        echoed = new_message_text(last_user)[:200] + _image_summary(messages)
        text = "Echo: " + (echoed if plain else html.escape(echoed, quote=False))
    if plain:  # a model that ignores the XML format and just talks
        return text
    return (
        "<response><thought>Replying to the user.</thought><actions>REPLY</actions>"
        f"<text>{text}</text></response>"
    )


def split_chunks(text: str) -> list[str]:
    """Word-sized pieces (whitespace kept) so a stream has several deltas."""
    pieces = re.findall(r"\S+\s*|\s+", text)
    return pieces or [text]


def fake_embedding(text: str, dimension: int) -> list[float]:
    """A unit vector seeded by the text: same text, same vector, in any process."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
    rng = random.Random(seed)
    vec = [rng.gauss(0.0, 1.0) for _ in range(dimension)]
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def _estimate_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def _openai_usage(
    record: RecordedRequest, reply: Reply, prompt_tokens: int, text: str
) -> dict[str, Any] | None:
    """OpenAI's `usage` object for an answer (noted on the request record), or None."""
    if not reply.report_usage:
        return None
    completion = _estimate_tokens(text)
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
    }
    if reply.cached_tokens:
        usage["prompt_tokens_details"] = {"cached_tokens": reply.cached_tokens}
    record.usage = usage
    return usage


def _anthropic_usage(
    record: RecordedRequest, reply: Reply, input_tokens: int, output_tokens: int
) -> dict[str, Any] | None:
    """Anthropic's `usage` (its input_tokens exclude the cache reads), or None."""
    if not reply.report_usage:
        return None
    usage: dict[str, Any] = {
        "input_tokens": input_tokens - reply.cached_tokens,
        "output_tokens": output_tokens,
    }
    if reply.cached_tokens:
        usage["cache_read_input_tokens"] = reply.cached_tokens
    record.usage = dict(usage)
    return usage


class FakeModelServer:
    """The aiohttp application plus its script queue and request log."""

    def __init__(
        self,
        *,
        expect_key: str | None = None,
        models: list[str] | None = None,
        dimension: int = 1536,
        default_text: str | None = None,
        plain: bool = False,
        latency: float = 0.0,
        text_only: list[str] | None = None,
    ) -> None:
        self.expect_key = expect_key
        self.text_only = list(text_only or [])  # models that answer images with a 400
        self.models = models
        self.dimension = dimension
        self.default_text = default_text
        self.plain = plain  # default answers without the XML tags
        self.latency = latency  # seconds added to every chat/embeddings answer
        self.queues: dict[str, deque[Reply]] = {"chat": deque(), "embeddings": deque()}
        self.recorded: list[RecordedRequest] = []
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._counter = 0

    # -- control ---------------------------------------------------------------------------
    def push(self, *replies: Reply | dict[str, Any] | str, **fields: Any) -> None:
        """push("hi"), push(Reply(status=429, headers={"Retry-After": "1"})), push(status=500)."""
        items: list[Reply] = []
        for reply in replies:
            if isinstance(reply, str):
                items.append(Reply(text=reply))
            elif isinstance(reply, dict):
                items.append(Reply.from_dict(reply))
            else:
                items.append(reply)
        if fields:
            items.append(Reply(**fields))
        for item in items:
            if item.endpoint not in self.queues:
                raise ValueError(f"unknown endpoint {item.endpoint!r}")
            self.queues[item.endpoint].append(item)

    def requests(self, path: str | None = None) -> list[RecordedRequest]:
        return [r for r in self.recorded if path is None or r.path == path]

    def reset(self) -> None:
        for queue in self.queues.values():
            queue.clear()
        self.recorded.clear()

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    # -- lifecycle -------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._openai_chat)
        app.router.add_post("/v1/embeddings", self._openai_embeddings)
        app.router.add_get("/v1/models", self._openai_models)
        app.router.add_post("/v1/messages", self._anthropic_messages)
        app.router.add_post("/_admin/script", self._admin_script)
        app.router.add_post("/_admin/config", self._admin_config)
        app.router.add_get("/_admin/requests", self._admin_requests)
        app.router.add_post("/_admin/reset", self._admin_reset)
        return app

    async def start(self, port: int = 0) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        sockets = site._server.sockets  # type: ignore[union-attr]
        bound = sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{bound}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- helpers ---------------------------------------------------------------------------
    async def _record(self, request: web.Request) -> RecordedRequest:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        headers = {
            k.lower(): v for k, v in request.headers.items() if k.lower() not in _HIDDEN_HEADERS
        }
        record = RecordedRequest(request.method, request.path, headers, body, time.monotonic())
        self.recorded.append(record)
        return record

    def _next(self, endpoint: str) -> Reply:
        queue = self.queues[endpoint]
        return queue.popleft() if queue else Reply()

    @staticmethod
    def _openai_error(
        status: int,
        message: str,
        type_: str,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        payload = {"error": {"message": message, "type": type_, "param": param, "code": code}}
        return web.json_response(payload, status=status, headers=headers)

    @staticmethod
    def _anthropic_error(
        status: int, message: str, type_: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        payload = {
            "type": "error",
            "error": {"type": type_, "message": message},
            "request_id": f"req_{uuid.uuid4().hex[:20]}",
        }
        return web.json_response(payload, status=status, headers=headers)

    def _scripted_error(self, reply: Reply, flavour: str) -> web.Response:
        if isinstance(reply.body, str):
            return web.Response(
                status=reply.status,
                text=reply.body,
                headers=reply.headers,
                content_type="application/json",
            )
        if reply.body is not None:
            return web.json_response(reply.body, status=reply.status, headers=reply.headers)
        defaults = {
            400: ("invalid_request_error", "Bad request."),
            401: (
                "authentication_error" if flavour == "anthropic" else "invalid_request_error",
                "Incorrect API key provided.",
            ),
            403: ("permission_error", "Forbidden."),
            404: (
                "not_found_error" if flavour == "anthropic" else "invalid_request_error",
                "Not found.",
            ),
            429: (
                "rate_limit_error" if flavour == "anthropic" else "requests",
                "Rate limit reached. Please try again later.",
            ),
            529: ("overloaded_error", "Overloaded"),
        }
        type_, message = defaults.get(
            reply.status,
            (
                "api_error" if flavour == "anthropic" else "server_error",
                "The server had an error while processing your request.",
            ),
        )
        type_ = reply.error_type or type_
        message = reply.error_message or message
        if flavour == "anthropic":
            return self._anthropic_error(reply.status, message, type_, reply.headers)
        code = reply.error_code or ("rate_limit_exceeded" if reply.status == 429 else None)
        return self._openai_error(reply.status, message, type_, code, headers=reply.headers)

    # -- OpenAI ----------------------------------------------------------------------------
    def _check_openai_auth(self, request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            return self._openai_error(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                "invalid_request_error",
            )
        key = auth[7:].strip()
        if self.expect_key is not None and key != self.expect_key:
            shown = f"{key[:3]}*****{key[-4:]}" if len(key) > 8 else "*****"
            return self._openai_error(
                401,
                f"Incorrect API key provided: {shown}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                "invalid_api_key",
            )
        return None

    def _check_openai_model(self, model: Any) -> web.Response | None:
        if not isinstance(model, str) or not model:
            return self._openai_error(
                400, "you must provide a model parameter", "invalid_request_error", param="model"
            )
        if self.models is not None and model not in self.models:
            return self._openai_error(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            )
        return None

    def _check_openai_images(self, body: dict[str, Any]) -> web.Response | None:
        """Content parts as OpenAI checks them: `text` and `image_url` only; an image for a
        text-only model, a URL that is not a data: URL (the fake fetches nothing) or bytes
        that are no png/jpeg/gif/webp image get OpenAI's 400."""
        for m_index, message in enumerate(body["messages"]):
            content = message.get("content") if isinstance(message, dict) else None
            if not isinstance(content, list):
                continue
            for c_index, part in enumerate(content):
                kind = part.get("type") if isinstance(part, dict) else None
                where = f"messages.[{m_index}].content.[{c_index}]"
                if kind == "text":
                    continue
                if kind != "image_url":
                    return self._openai_error(
                        400,
                        f"Invalid value: '{kind}'. Supported values are: 'text', 'image_url', "
                        "'input_audio', 'refusal', 'audio', and 'file'.",
                        "invalid_request_error",
                        param=f"{where}.type",
                        code="invalid_value",
                    )
                if body.get("model") in self.text_only:
                    return self._openai_error(
                        400,
                        "Invalid content type. image_url is only supported by certain models.",
                        "invalid_request_error",
                        param=f"{where}.type",
                    )
                decoded = _decode_image_block(part)
                if (
                    decoded is None
                    or decoded[0] not in IMAGE_TYPES
                    or describe_image(decoded[1]) is None
                ):
                    return self._openai_error(
                        400,
                        "You uploaded an unsupported image. Please make sure your image has of "
                        "one the following formats: ['png', 'jpeg', 'gif', 'webp'].",
                        "invalid_request_error",
                        param=None,
                        code="invalid_image_format",
                    )
        return None

    def _check_anthropic_images(self, body: dict[str, Any]) -> web.Response | None:
        """Image blocks as Anthropic checks them: a base64 source of one of the four media
        types whose bytes are such an image; a text-only model refuses any image."""
        for m_index, message in enumerate(body["messages"]):
            content = message.get("content")
            if not isinstance(content, list):
                continue
            for c_index, block in enumerate(content):
                if not isinstance(block, dict) or block.get("type") != "image":
                    continue
                where = f"messages.{m_index}.content.{c_index}.image"
                if body.get("model") in self.text_only:
                    return self._anthropic_error(
                        400,
                        f"{where}: {body.get('model')} does not support image input.",
                        "invalid_request_error",
                    )
                source = block.get("source") or {}
                if source.get("media_type") not in IMAGE_TYPES:
                    return self._anthropic_error(
                        400,
                        f"{where}.source.base64.media_type: Input should be 'image/jpeg', "
                        "'image/png', 'image/gif' or 'image/webp'",
                        "invalid_request_error",
                    )
                decoded = _decode_image_block(block)
                if decoded is None or describe_image(decoded[1]) is None:
                    return self._anthropic_error(
                        400, "Could not process image", "invalid_request_error"
                    )
        return None

    async def _finish(
        self, record: RecordedRequest, response: web.StreamResponse
    ) -> web.StreamResponse:
        record.status = response.status
        return response

    async def _openai_chat(self, request: web.Request) -> web.StreamResponse:
        record = await self._record(request)
        problem = self._check_openai_auth(request)
        body = record.body if isinstance(record.body, dict) else None
        if problem is None and body is None:
            problem = self._openai_error(
                400, "We could not parse the JSON body of your request.", "invalid_request_error"
            )
        if problem is None:
            assert body is not None
            problem = self._check_openai_model(body.get("model"))
            if problem is None and not isinstance(body.get("messages"), list):
                problem = self._openai_error(
                    400,
                    "Missing required parameter: 'messages'.",
                    "invalid_request_error",
                    param="messages",
                )
            if problem is None:
                problem = self._check_openai_images(body)
        if problem is not None:
            return await self._finish(record, problem)
        assert body is not None
        reply = self._next("chat")
        if reply.delay or self.latency:
            await asyncio.sleep(reply.delay + self.latency)
        if reply.status != 200:
            return await self._finish(record, self._scripted_error(reply, "openai"))
        text = (
            reply.text
            if reply.text is not None
            else default_reply_text(
                body["messages"], default_text=self.default_text, plain=self.plain
            )
        )
        prompt_tokens = sum(
            _estimate_tokens(_content_text(m.get("content"))) for m in body["messages"]
        )
        self._counter += 1
        completion_id = f"chatcmpl-fake{self._counter:06d}"
        created = int(time.time())
        model = body["model"]
        if not body.get("stream"):
            if reply.malformed:
                return await self._finish(
                    record,
                    web.Response(
                        status=200,
                        text='{"id": "chatcmpl-broken", "choices": [{"mess',
                        content_type="application/json",
                        headers=reply.headers,
                    ),
                )
            payload = {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": _openai_usage(record, reply, prompt_tokens, text),
            }
            if payload["usage"] is None:
                del payload["usage"]
            return await self._finish(record, web.json_response(payload, headers=reply.headers))

        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                **reply.headers,
            },
        )
        await response.prepare(request)
        record.status = 200

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            return f"data: {json.dumps(data)}\n\n".encode()

        await response.write(chunk({"role": "assistant", "content": "", "refusal": None}))
        for index, piece in enumerate(
            reply.chunks if reply.chunks is not None else split_chunks(text)
        ):
            if reply.disconnect_after is not None and index >= reply.disconnect_after:
                _abort(request)
                return response
            if reply.stream_error_after is not None and index >= reply.stream_error_after:
                error = {
                    "error": {
                        "message": reply.error_message
                        or "The server had an error while processing your request.",
                        "type": reply.error_type or "server_error",
                        "param": None,
                        "code": reply.error_code,
                    }
                }
                await response.write(f"data: {json.dumps(error)}\n\n".encode())
                await response.write_eof()
                return response
            if reply.malformed and index == 1:
                await response.write(b'data: {"id": "chatcmpl-broken", "choices": [\n\n')
                await response.write_eof()
                return response
            if reply.chunk_delay:
                await asyncio.sleep(reply.chunk_delay)
            await response.write(chunk({"content": piece}))
        await response.write(chunk({}, "stop"))
        reported = _openai_usage(record, reply, prompt_tokens, text)
        if (body.get("stream_options") or {}).get("include_usage") and reported is not None:
            # As OpenAI sends it: a last chunk with no choices (the others carry usage null).
            usage = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": reported,
            }
            await response.write(f"data: {json.dumps(usage)}\n\n".encode())
        else:
            record.usage = None
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _openai_embeddings(self, request: web.Request) -> web.StreamResponse:
        record = await self._record(request)
        problem = self._check_openai_auth(request)
        body = record.body if isinstance(record.body, dict) else None
        if problem is None and body is None:
            problem = self._openai_error(
                400, "We could not parse the JSON body of your request.", "invalid_request_error"
            )
        if problem is None:
            assert body is not None
            problem = self._check_openai_model(body.get("model"))
        if problem is not None:
            return await self._finish(record, problem)
        assert body is not None
        reply = self._next("embeddings")
        if reply.delay or self.latency:
            await asyncio.sleep(reply.delay + self.latency)
        if reply.status != 200:
            return await self._finish(record, self._scripted_error(reply, "openai"))
        if reply.malformed:
            return await self._finish(
                record,
                web.Response(
                    status=200,
                    text='{"data": [{"embedding": [0.1, ',
                    content_type="application/json",
                ),
            )
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if (
            not isinstance(inputs, list)
            or not inputs
            or any(not isinstance(i, str) or not i for i in inputs)
        ):
            return await self._finish(
                record,
                self._openai_error(
                    400,
                    "'$.input' is invalid. Please check the API reference: "
                    "https://platform.openai.com/docs/api-reference.",
                    "invalid_request_error",
                    param="input",
                ),
            )
        if len(inputs) > 2048:
            return await self._finish(
                record,
                self._openai_error(
                    400,
                    "'$.input' is too long: at most 2048 inputs per request.",
                    "invalid_request_error",
                    param="input",
                ),
            )
        dimension = int(body.get("dimensions") or self.dimension)
        encoding = body.get("encoding_format") or "float"
        data = []
        for index, text in enumerate(inputs):
            vec = fake_embedding(text, dimension)
            value: Any = vec
            if encoding == "base64":
                value = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
            data.append({"object": "embedding", "index": index, "embedding": value})
        tokens = sum(_estimate_tokens(t) for t in inputs)
        payload = {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        if reply.report_usage:
            record.usage = dict(payload["usage"])
        else:
            del payload["usage"]
        return await self._finish(record, web.json_response(payload))

    async def _openai_models(self, request: web.Request) -> web.StreamResponse:
        record = await self._record(request)
        if request.headers.get("anthropic-version"):  # same path, Anthropic's shape
            return await self._finish(record, self._anthropic_models(request))
        problem = self._check_openai_auth(request)
        if problem is not None:
            return await self._finish(record, problem)
        names = (
            self.models
            if self.models is not None
            else ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]
        )
        payload = {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 1700000000, "owned_by": "fake"}
                for name in names
            ],
        }
        return await self._finish(record, web.json_response(payload))

    # -- Anthropic -------------------------------------------------------------------------
    def _anthropic_models(self, request: web.Request) -> web.Response:
        key = request.headers.get("x-api-key")
        auth = request.headers.get("Authorization", "")
        if not key and auth.startswith("Bearer "):
            key = auth[7:].strip()
        if not key or (self.expect_key is not None and key != self.expect_key):
            return self._anthropic_error(401, "invalid x-api-key", "authentication_error")
        names = (
            self.models if self.models is not None else ["claude-haiku-4-5", "claude-sonnet-4-5"]
        )
        data = [
            {
                "type": "model",
                "id": name,
                "display_name": name,
                "lifecycle": "active",
                "created_at": "2025-10-01T00:00:00Z",
            }
            for name in names
        ]
        return web.json_response(
            {
                "data": data,
                "has_more": False,
                "first_id": names[0] if names else None,
                "last_id": names[-1] if names else None,
            }
        )

    async def _anthropic_messages(self, request: web.Request) -> web.StreamResponse:
        record = await self._record(request)
        # Older SDKs send x-api-key; anthropic 2.x sends Authorization: Bearer. Both are valid.
        key = request.headers.get("x-api-key")
        auth = request.headers.get("Authorization", "")
        if not key and auth.startswith("Bearer "):
            key = auth[7:].strip()
        problem: web.Response | None = None
        if not key:
            problem = self._anthropic_error(
                401, "x-api-key header is required", "authentication_error"
            )
        elif self.expect_key is not None and key != self.expect_key:
            problem = self._anthropic_error(401, "invalid x-api-key", "authentication_error")
        elif not request.headers.get("anthropic-version"):
            problem = self._anthropic_error(
                400, "anthropic-version: header is required", "invalid_request_error"
            )
        body = record.body if isinstance(record.body, dict) else None
        if problem is None and body is None:
            problem = self._anthropic_error(
                400, "There was an error parsing the body", "invalid_request_error"
            )
        if problem is None:
            assert body is not None
            problem = self._check_anthropic_body(body)
        if problem is not None:
            return await self._finish(record, problem)
        assert body is not None
        reply = self._next("chat")
        if reply.delay or self.latency:
            await asyncio.sleep(reply.delay + self.latency)
        if reply.status != 200:
            return await self._finish(record, self._scripted_error(reply, "anthropic"))
        system = _content_text(body.get("system"))
        text = (
            reply.text
            if reply.text is not None
            else default_reply_text(body["messages"], system, self.default_text, plain=self.plain)
        )
        input_tokens = _estimate_tokens(system) + sum(
            _estimate_tokens(_content_text(m.get("content"))) for m in body["messages"]
        )
        self._counter += 1
        message_id = f"msg_fake{self._counter:06d}"
        model = body["model"]
        if not body.get("stream"):
            if reply.malformed:
                return await self._finish(
                    record,
                    web.Response(
                        status=200,
                        text='{"id": "msg_broken", "content": [{"ty',
                        content_type="application/json",
                    ),
                )
            payload = {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": _anthropic_usage(record, reply, input_tokens, _estimate_tokens(text)),
            }
            if payload["usage"] is None:  # not Anthropic's behaviour: a proxy's
                del payload["usage"]
            return await self._finish(record, web.json_response(payload, headers=reply.headers))

        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                **reply.headers,
            },
        )
        await response.prepare(request)
        record.status = 200

        async def event(name: str, data: dict[str, Any]) -> None:
            await response.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())

        await event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": _anthropic_usage(record, reply, input_tokens, 1)
                    or {"input_tokens": 0, "output_tokens": 0},
                },
            },
        )
        await event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        )
        await event("ping", {"type": "ping"})
        for index, piece in enumerate(
            reply.chunks if reply.chunks is not None else split_chunks(text)
        ):
            if reply.disconnect_after is not None and index >= reply.disconnect_after:
                _abort(request)
                return response
            if reply.stream_error_after is not None and index >= reply.stream_error_after:
                await event(
                    "error",
                    {
                        "type": "error",
                        "error": {
                            "type": reply.error_type or "overloaded_error",
                            "message": reply.error_message or "Overloaded",
                        },
                    },
                )
                await response.write_eof()
                return response
            if reply.malformed and index == 1:
                await response.write(b'event: content_block_delta\ndata: {"type": "cont\n\n')
                await response.write_eof()
                return response
            if reply.chunk_delay:
                await asyncio.sleep(reply.chunk_delay)
            await event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                },
            )
        await event("content_block_stop", {"type": "content_block_stop", "index": 0})
        await event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": _estimate_tokens(text)},
            },
        )
        if record.usage is not None:
            record.usage["output_tokens"] = _estimate_tokens(text)
        await event("message_stop", {"type": "message_stop"})
        await response.write_eof()
        return response

    def _check_anthropic_body(self, body: dict[str, Any]) -> web.Response | None:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return self._anthropic_error(400, "model: Field required", "invalid_request_error")
        if not isinstance(body.get("max_tokens"), int):
            return self._anthropic_error(400, "max_tokens: Field required", "invalid_request_error")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self._anthropic_error(
                400, "messages: at least one message is required", "invalid_request_error"
            )
        if messages[0].get("role") != "user":
            return self._anthropic_error(
                400, 'messages: first message must use the "user" role', "invalid_request_error"
            )
        for previous, current in itertools.pairwise(messages):
            if previous.get("role") == current.get("role"):
                return self._anthropic_error(
                    400,
                    'messages: roles must alternate between "user" and "assistant"',
                    "invalid_request_error",
                )
        if any(m.get("role") not in {"user", "assistant"} for m in messages):
            return self._anthropic_error(
                400,
                'messages: Unexpected role "system". The Messages API accepts a '
                'top-level `system` parameter, not "system" as an input message role.',
                "invalid_request_error",
            )
        if self.models is not None and model not in self.models:
            return self._anthropic_error(404, f"model: {model}", "not_found_error")
        return self._check_anthropic_images(body)

    # -- admin -----------------------------------------------------------------------------
    async def _admin_script(self, request: web.Request) -> web.Response:
        data = await request.json()
        items = data if isinstance(data, list) else [data]
        try:
            self.push(*items)
        except (TypeError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"queued": {k: len(v) for k, v in self.queues.items()}})

    async def _admin_config(self, request: web.Request) -> web.Response:
        data = await request.json()
        for name in (
            "expect_key",
            "models",
            "dimension",
            "default_text",
            "plain",
            "latency",
            "text_only",
        ):
            if name in data:
                setattr(self, name, data[name])
        return web.json_response({"ok": True})

    async def _admin_requests(self, request: web.Request) -> web.Response:
        return web.json_response([asdict(r) for r in self.recorded])

    async def _admin_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})


def _abort(request: web.Request) -> None:
    """Drop the TCP connection mid-response, as a crashed proxy would."""
    transport = request.transport
    if transport is not None:
        transport.abort()


class ModelServerProcess:
    """Client for a model server running in another process (same API as FakeModelServer)."""

    def __init__(self, url: str, process: Any = None) -> None:
        self.url = url
        self.process = process

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def push(self, *replies: Reply | dict[str, Any] | str, **fields: Any) -> None:
        items: list[dict[str, Any]] = []
        for reply in replies:
            if isinstance(reply, str):
                items.append({"text": reply})
            elif isinstance(reply, Reply):
                items.append(asdict(reply))
            else:
                items.append(dict(reply))
        if fields:
            items.append(fields)
        self._call("POST", "/_admin/script", items)

    def configure(self, **settings: Any) -> None:
        self._call("POST", "/_admin/config", settings)

    def requests(self, path: str | None = None) -> list[RecordedRequest]:
        rows = self._call("GET", "/_admin/requests")
        found = [RecordedRequest(**row) for row in rows]
        return [r for r in found if path is None or r.path == path]

    def reset(self) -> None:
        self._call("POST", "/_admin/reset", {})


def start_server_process(
    *,
    expect_key: str | None = None,
    models: list[str] | None = None,
    script: Path | None = None,
    dimension: int | None = None,
    latency: float | None = None,
    text_only: list[str] | None = None,
) -> ModelServerProcess:
    """Start `python -m tests.support.model_server` and wait for its URL line."""
    import os
    import subprocess

    root = Path(__file__).resolve().parents[2]
    args = [sys.executable, "-m", "tests.support.model_server", "--port", "0"]
    if expect_key:
        args += ["--expect-key", expect_key]
    if models is not None:
        args += ["--models", ",".join(models)]
    if script is not None:
        args += ["--script", str(script)]
    if dimension is not None:
        args += ["--dimension", str(dimension)]
    if latency:
        args += ["--latency", str(latency)]
    if text_only:
        args += ["--text-only", ",".join(text_only)]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    process = subprocess.Popen(args, cwd=root, env=env, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("http://"):
        process.kill()
        raise RuntimeError(f"model server did not start (got {line!r})")
    return ModelServerProcess(line, process)


# -- pytest fixtures ---------------------------------------------------------------------------
@pytest.fixture
async def model_server() -> AsyncIterator[FakeModelServer]:
    """An in-process fake model server on the test's event loop."""
    server = FakeModelServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@contextlib.contextmanager
def running_model_server(*, text_only: list[str] | None = None) -> Iterator[ModelServerProcess]:
    """The fake model server in a subprocess (on a free port), stopped afterwards (killed if
    it has not stopped 5 s after SIGTERM). `text_only`: models that refuse images."""
    server = start_server_process(text_only=text_only)
    process = server.process
    try:
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except Exception:
            process.kill()
            process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


def model_server_fixture(
    scope: Literal["function", "module"] = "module", *, text_only: list[str] | None = None
) -> Callable[[], Iterator[ModelServerProcess]]:
    """A fake model server subprocess as a fixture of the module that assigns it, e.g.
    `model = model_server_fixture(text_only=["gpt-3.5-turbo"])`: one per module (starting
    one costs about a second) or, with scope "function", one per test. Each module (and
    each xdist worker) gets its own server on its own free port."""

    @pytest.fixture(scope=scope)
    def fixture() -> Iterator[ModelServerProcess]:
        with running_model_server(text_only=text_only) as server:
            yield server

    return fixture


# One per test module, for modules that start real `carrier` processes against it. A module
# that needs another kind of `model` assigns its own fixture of that name, which wins.
model = model_server_fixture("module")
# One per test, for tests that run the `carrier` CLI.
model_server_process = model_server_fixture("function")


# -- standalone --------------------------------------------------------------------------------
async def _serve(args: argparse.Namespace) -> None:
    import signal

    server = FakeModelServer(
        expect_key=args.expect_key,
        models=args.models.split(",") if args.models else None,
        dimension=args.dimension,
        default_text=args.default_text,
        plain=args.plain,
        latency=args.latency,
        text_only=args.text_only.split(",") if args.text_only else None,
    )
    if args.script:
        data = json.loads(Path(args.script).read_text(encoding="utf-8"))
        server.push(*(data if isinstance(data, list) else [data]))
    url = await server.start(args.port)
    sys.stdout.write(url + "\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake OpenAI/Anthropic model server for tests.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--script", help="JSON file: a list of replies to queue at start.")
    parser.add_argument("--expect-key", help="Answer 401 to any other API key.")
    parser.add_argument("--models", help="Comma-separated known models; others get 404.")
    parser.add_argument("--dimension", type=int, default=1536)
    parser.add_argument("--default-text", help="Reply text instead of the echo rule.")
    parser.add_argument(
        "--plain",
        action="store_true",
        help="Default replies without the XML tags, like a small model that ignores the format.",
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        help="Seconds added to every chat/embeddings answer (benchmarks).",
    )
    parser.add_argument("--text-only", help="Comma-separated models that answer images with a 400.")
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
