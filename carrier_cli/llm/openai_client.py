"""The OpenAI SDK client with its HTTP request built from a per-client template.

Why: `AsyncOpenAI._build_request` rebuilds the same request around every body: it merges
the default and auth headers into an `httpx.Headers` (whose every lookup re-decodes all
headers), parses and joins the base URL and the path, then `httpx.AsyncClient.build_request`
parses the URL again and merges the headers a second time. Profiled in the Discord burst
(bench/discord_bench.py, 1000 turns, yappi CPU clock) that was 1.97 s of the SDK's 4.64 s
for 1100 requests: 1.8 ms a request under the profiler, the largest piece of the model
request's CPU on our side. `post_json` does the same for the request options.
Client CPU per `complete()` (4 KB prompt, fake model server, 500 calls, main vs this tree
alternating, two runs each, load 0.5): aiohttp 0.85 / 0.83 -> 0.57 / 0.58 ms, httpx
1.08 / 1.08 -> 0.82 / 0.84 ms.

What stays the SDK's: everything but the building. Options, auth refresh, sending, the
status-error mapping, timeouts, streaming and response parsing run as before; the request
itself is the SDK's own, built once per shape (method, path, retry count, and the client
state the headers come from: key, organisation, project, base URL, timeout) with an empty
body, and then copied with each body: the same method, URL, headers in the same order and
extensions, with `Content-Length` for the new body (`tests/llm/test_openai_client.py`
compares them with the SDK's build, header by header). Any request of another shape (extra
headers or query, files, raw content, a per-request timeout, an idempotency header,
cookies the server set on the client) is built by the SDK as before, and so is every
request when the SDK lacks the internals this uses (`TEMPLATES`: an SDK line other than
the one it was measured on).
"""

from __future__ import annotations

import logging
from typing import Any

import openai

try:  # the SDK's internals this was written and tested against (openai 3.57)
    import httpx2
    from openai._models import FinalRequestOptions
    from openai._utils._json import openapi_dumps
    from openai._utils._logs import get_http_method_for_logging
except ImportError:  # another SDK line (pyproject allows openai>=1.40): the SDK's own build
    TEMPLATES = False
else:
    TEMPLATES = True

_sdk_log = logging.getLogger("openai._base_client")  # the SDK's "Building HTTP request"


def _given(value: Any) -> bool:
    return value is not None and not isinstance(value, openai.NotGiven)


class CarrierAsyncOpenAI(openai.AsyncOpenAI):
    """`openai.AsyncOpenAI` with `_build_request` from a template (module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._request_templates: dict[tuple[Any, ...], httpx2.Request] = {}
        self._options_templates: dict[tuple[str, int], FinalRequestOptions] = {}

    async def post_json(
        self,
        path: str,
        *,
        body: dict[str, Any],
        cast_to: type[Any],
        options: Any,
        stream: bool = False,
        stream_cls: type[Any] | None = None,
    ) -> Any:
        """`post(path, body=body, options=options, ...)`, with the request options copied
        from a template: `post` builds them with pydantic's `model_construct`, which deep-
        copies every field's default (0.26 s of 2.65 s for 1000 requests, yappi). `options`
        must be the same object each time for the template to be reused (it is kept by
        identity: `openai_common.request_options()` is cached)."""
        if not TEMPLATES:
            return await self.post(
                path,
                body=body,
                cast_to=cast_to,
                options=options,
                stream=stream,
                stream_cls=stream_cls,
            )
        key = (path, id(options))
        template = self._options_templates.get(key)
        if template is None:
            template = FinalRequestOptions.construct(
                method="post", url=path, json_data=None, content=None, files=None, **options
            )
            if len(self._options_templates) >= 32:
                self._options_templates.clear()
            self._options_templates[key] = template
        request_options = template.model_copy(update={"json_data": body})
        return await self.request(cast_to, request_options, stream=stream, stream_cls=stream_cls)

    def _template_key(
        self, options: FinalRequestOptions, retries_taken: int
    ) -> tuple[Any, ...] | None:
        """The shape of a templatable request, or None when the SDK must build it."""
        if (
            not TEMPLATES
            or not isinstance(options.json_data, dict)
            or options.headers
            or options.params
            or options.files is not None
            or options.content is not None
            or options.extra_json is not None
            or _given(options.timeout)
            or self._idempotency_header
            or not isinstance(self._client, httpx2.AsyncClient)
            or self._client.cookies  # a Cookie header to send: the SDK's merge decides it
        ):
            return None
        security = options.security
        return (
            options.method,
            options.url,
            retries_taken,
            tuple(sorted(security.items())) if isinstance(security, dict) else security,
            self.api_key,
            self.organization,
            self.project,
            str(self.base_url),
            repr(self.timeout),
        )

    def _build_request(
        self, options: FinalRequestOptions, *, retries_taken: int = 0
    ) -> httpx2.Request:
        key = self._template_key(options, retries_taken)
        if key is None:
            return super()._build_request(options, retries_taken=retries_taken)
        template = self._request_templates.get(key)
        if template is None:
            empty = options.model_copy(update={"json_data": {}})
            template = super()._build_request(empty, retries_taken=retries_taken)
            if len(self._request_templates) >= 32:  # bounded: key rotation, odd paths
                self._request_templates.clear()
            self._request_templates[key] = template
        else:
            _sdk_log.debug(
                "Building HTTP request: method=%s retries_taken=%i",
                get_http_method_for_logging(options.method),
                retries_taken,
            )
        content = openapi_dumps(options.json_data)
        headers = httpx2.Headers(template.headers)
        # The template's Content-Length is its last header, as in the SDK's build.
        headers["Content-Length"] = str(len(content))
        # `stream=`: the headers are complete (Host, Content-Length); Request would redo them
        # (Request.__init__ 0.31 -> 0.08 s of 1000 requests, yappi).
        request = httpx2.Request(
            template.method,
            template.url,
            headers=headers,
            stream=httpx2.ByteStream(content),
            extensions=template.extensions,
        )
        request.read()  # as Request does with a body given as `content=`
        return request
