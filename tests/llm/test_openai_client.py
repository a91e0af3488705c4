"""`CarrierAsyncOpenAI` builds each request from a template: the result must be the SDK's own
build, byte for byte (method, URL, headers in order, body, extensions), on both transports;
shapes it does not template go to the SDK. Sending, errors and streaming are covered on both
transports by test_openai_chat and test_openai_transport."""

from __future__ import annotations

from typing import Any

import httpx2 as httpx
import openai
import pytest
from openai._models import FinalRequestOptions

from carrier_cli.llm import openai_common
from carrier_cli.llm.openai_client import CarrierAsyncOpenAI

BODIES: list[dict[str, Any]] = [
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    {
        "model": "llama3",
        "messages": [
            {"role": "system", "content": 'Ünïcödé, emoji 🙂, quotes " and \\ and \n lines'},
            {"role": "user", "content": [{"type": "text", "text": "x" * 5000}]},
        ],
        "temperature": 0.7,
        "max_tokens": 256,
        "stop": ["</response>"],
        "stream": True,
        "stream_options": {"include_usage": True},
    },
    {"model": "m", "messages": [], "temperature": 1e-7, "n": None},
]


def options(body: dict[str, Any], **extra: Any) -> FinalRequestOptions:
    """What `client.post("/chat/completions", body=...)` hands `request()`."""
    return FinalRequestOptions.construct(  # type: ignore[no-any-return]
        method="post",
        url="/chat/completions",
        json_data=body,
        **openai_common.request_options(),
        **extra,
    )


def same(ours: httpx.Request, sdk: httpx.Request) -> None:
    assert ours.method == sdk.method
    assert str(ours.url) == str(sdk.url)
    assert ours.headers.raw == sdk.headers.raw  # names, values and order
    assert ours.content == sdk.content
    assert ours.extensions == sdk.extensions
    assert type(ours.stream) is type(sdk.stream)
    assert [bytes(part) for part in ours.stream] == [bytes(part) for part in sdk.stream]  # type: ignore[union-attr]


@pytest.fixture(params=["httpx", "aiohttp"])
async def client(request: pytest.FixtureRequest) -> Any:
    made = openai_common.make_client("sk-test-0123", "http://127.0.0.1:9/v1", 12.5, request.param)
    assert isinstance(made, CarrierAsyncOpenAI)
    yield made
    await made.close()


def sdk_build(client: CarrierAsyncOpenAI, opts: FinalRequestOptions, retries: int = 0) -> Any:
    return openai.AsyncOpenAI._build_request(client, opts, retries_taken=retries)


async def test_template_builds_the_sdks_request(client: CarrierAsyncOpenAI) -> None:
    for retries in (0, 1):
        for body in BODIES * 2:  # the second round comes from the template
            same(
                client._build_request(options(body), retries_taken=retries),
                sdk_build(client, options(body), retries),
            )
    assert len(client._request_templates) == 2  # one per retry count


async def test_a_changed_key_or_base_url_gets_a_new_template(client: CarrierAsyncOpenAI) -> None:
    body = BODIES[0]
    client._build_request(options(body))
    client.api_key = "sk-other-4567"
    client.base_url = httpx.URL("http://127.0.0.1:10/v2/")
    built = client._build_request(options(body))
    assert built.headers["authorization"] == "Bearer sk-other-4567"
    assert str(built.url) == "http://127.0.0.1:10/v2/chat/completions"
    same(built, sdk_build(client, options(body)))


async def test_other_shapes_are_built_by_the_sdk(client: CarrierAsyncOpenAI) -> None:
    body = BODIES[0]
    for opts in (
        options(body, headers={"X-Extra": "1"}),
        options(body, params={"api-version": "2024-06-01"}),
        options(body, timeout=3.0),
        options(body, extra_json={"seed": 1}),
        FinalRequestOptions.construct(method="post", url="/x", json_data=b'{"raw": 1}'),
    ):
        same(client._build_request(opts), sdk_build(client, opts))
    assert client._request_templates == {}
    # A cookie the server set goes back as the SDK's client merges it.
    client._client.cookies.set("__cf_bm", "abc", domain="127.0.0.1")
    built = client._build_request(options(body))
    assert built.headers["cookie"] == "__cf_bm=abc"
    same(built, sdk_build(client, options(body)))
    assert client._request_templates == {}


def given(fields: dict[str, Any]) -> dict[str, Any]:
    """NOT_GIVEN as a name: each construct copies its own, and they compare by identity."""
    return {k: "NOT_GIVEN" if isinstance(v, openai.NotGiven) else v for k, v in fields.items()}


class OptionsOnly(CarrierAsyncOpenAI):
    """Stops at `request()`: what `post` and `post_json` hand it, nothing sent."""

    async def request(self, cast_to: Any, options: Any, **kwargs: Any) -> Any:
        return options, kwargs


async def test_post_json_hands_request_what_post_does() -> None:
    client = OptionsOnly(api_key="sk-test", base_url="http://127.0.0.1:9/v1", max_retries=0)
    try:
        for body in BODIES * 2:  # the second round copies the template
            for stream in (False, True):
                common: dict[str, Any] = {
                    "body": body,
                    "cast_to": object,
                    "options": openai_common.request_options(),
                    "stream": stream,
                    "stream_cls": openai_common.chunk_stream_type(),
                }
                ours, our_kwargs = await client.post_json("/chat/completions", **common)
                sdk, sdk_kwargs = await client.post("/chat/completions", **common)
                assert given(ours.model_dump()) == given(sdk.model_dump())
                assert ours.model_fields_set == sdk.model_fields_set
                assert ours.json_data is body
                assert our_kwargs == sdk_kwargs
        assert len(client._options_templates) == 1
    finally:
        await client.close()


async def test_without_the_sdks_internals_the_sdk_builds_everything(
    client: CarrierAsyncOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An SDK without the internals the templates use (another major line) still works:
    requests and options are the SDK's own, none templated."""
    from carrier_cli.llm import openai_client

    monkeypatch.setattr(openai_client, "TEMPLATES", False)
    for body in BODIES * 2:
        same(client._build_request(options(body)), sdk_build(client, options(body)))
    assert client._request_templates == {}
    probe = OptionsOnly(api_key="sk-test", base_url="http://127.0.0.1:9/v1", max_retries=0)
    try:
        common: dict[str, Any] = {
            "body": BODIES[0],
            "cast_to": object,
            "options": openai_common.request_options(),
        }
        ours, _ = await probe.post_json("/chat/completions", **common)
        sdk, _ = await probe.post("/chat/completions", **common)
        assert given(ours.model_dump()) == given(sdk.model_dump())
        assert probe._options_templates == {}
    finally:
        await probe.close()
