"""The retry classification and error wording both SDKs share (`llm.sdk_errors`), pinned
exception by exception, so that neither SDK drifts from the other or from what it said
before the rule was written once."""

from __future__ import annotations

import anthropic
import httpx2
import openai
import pytest

from carrier_cli.errors import RuntimeFailure
from carrier_cli.llm import openai_common
from carrier_cli.llm.anthropic_chat import AnthropicChatModel
from carrier_cli.llm.errors import BadRequest, ProviderResponseError
from carrier_cli.llm.retry import Transient

ANTHROPIC_URL = "https://api.anthropic.com"
OPENAI_URL = "https://api.openai.com/v1"
REQUEST = httpx2.Request("POST", "https://example.invalid/")


def _response(status: int, headers: dict[str, str] | None = None) -> httpx2.Response:
    return httpx2.Response(status, headers=headers or {}, request=REQUEST)


def _connection_error(sdk: type[BaseException]) -> BaseException:
    try:
        try:
            raise ConnectionRefusedError("refused")
        except ConnectionRefusedError as cause:
            raise sdk(request=REQUEST) from cause  # type: ignore[call-arg]  # both SDKs take request=
    except BaseException as exc:
        return exc


def _anthropic_status(status: int, error_type: str = "api_error", **headers: str) -> Exception:
    body = {"type": "error", "error": {"type": error_type, "message": "the server's words"}}
    return anthropic.APIStatusError("msg", response=_response(status, headers), body=body)


def _openai_status(status: int, **headers: str) -> Exception:
    body = {"message": "the server's words", "type": "invalid_request_error"}
    return openai.APIStatusError("msg", response=_response(status, headers), body=body)


def classify_anthropic(exc: BaseException) -> Transient | None:
    return AnthropicChatModel(api_key="k", timeout=7.5)._classify(exc)


def classify_openai(exc: BaseException) -> Transient | None:
    return openai_common.classify(exc, 7.5, None)


@pytest.mark.parametrize(
    ("classify", "exc", "reason", "retry_after"),
    [
        (
            classify_anthropic,
            anthropic.APITimeoutError(REQUEST),
            "no answer within 7.5 s (timeout)",
            None,
        ),
        (
            classify_openai,
            openai.APITimeoutError(REQUEST),
            "no answer within 7.5 s (timeout)",
            None,
        ),
        (classify_anthropic, httpx2.ReadTimeout("slow"), "no answer within 7.5 s (timeout)", None),
        (classify_openai, httpx2.ReadTimeout("slow"), "no answer within 7.5 s (timeout)", None),
        (
            classify_anthropic,
            _connection_error(anthropic.APIConnectionError),
            f"connection to {ANTHROPIC_URL} failed: ConnectionRefusedError",
            None,
        ),
        (
            classify_openai,
            _connection_error(openai.APIConnectionError),
            f"connection to {OPENAI_URL} failed: ConnectionRefusedError",
            None,
        ),
        (
            classify_anthropic,
            anthropic.APIConnectionError(request=REQUEST),
            f"connection to {ANTHROPIC_URL} failed",
            None,
        ),
        (
            classify_anthropic,
            httpx2.RemoteProtocolError("cut"),
            f"connection to {ANTHROPIC_URL} failed: RemoteProtocolError",
            None,
        ),
        (
            classify_openai,
            httpx2.ReadError("cut"),
            f"connection to {OPENAI_URL} failed: ReadError",
            None,
        ),
        (
            classify_anthropic,
            _anthropic_status(429, **{"retry-after": "3"}),
            "rate limited (429)",
            3.0,
        ),
        (classify_openai, _openai_status(429, **{"retry-after": "3"}), "rate limited (429)", 3.0),
        (classify_anthropic, _anthropic_status(529), "overloaded (529)", None),
        (classify_openai, _openai_status(529), "server error (529)", None),
        (classify_anthropic, _anthropic_status(503), "server error (503)", None),
        (classify_openai, _openai_status(408), "server error (408)", None),
        (
            classify_anthropic,
            _anthropic_status(200, "overloaded_error"),
            "overloaded_error during the stream",
            None,
        ),
        (
            classify_openai,
            openai.APIError("boom", REQUEST, body={"type": "server_error"}),
            "server_error during the stream",
            None,
        ),
        (
            classify_openai,
            openai.APIError("boom", REQUEST, body={"code": "rate_limit_exceeded"}),
            "rate_limit_exceeded during the stream",
            None,
        ),
    ],
)
def test_transient_failures_are_named_the_same_way_by_both_sdks(
    classify: object, exc: BaseException, reason: str, retry_after: float | None
) -> None:
    assert callable(classify)
    assert classify(exc) == Transient(reason, retry_after)


@pytest.mark.parametrize(
    ("classify", "exc"),
    [
        (classify_anthropic, _anthropic_status(400, "invalid_request_error")),
        (classify_openai, _openai_status(400)),
        (classify_anthropic, _anthropic_status(200, "invalid_request_error")),
        # A status error is never an in-stream event for OpenAI, whatever its type says.
        (
            classify_openai,
            openai.APIStatusError("x", response=_response(400), body={"type": "server_error"}),
        ),
        (classify_openai, openai.APIError("boom", REQUEST, body={"type": "invalid_request_error"})),
        (classify_anthropic, ValueError("not ours")),
        (classify_openai, ValueError("not ours")),
    ],
)
def test_everything_else_is_not_retried(classify: object, exc: BaseException) -> None:
    assert callable(classify)
    assert classify(exc) is None


def test_the_rest_is_worded_alike_for_both_sdks() -> None:
    model = AnthropicChatModel(api_key="k")
    bad = model._translate(_anthropic_status(422, "invalid_request_error"), "m")
    assert isinstance(bad, BadRequest) and "the server's words" in str(bad)
    other = model._translate(_anthropic_status(409, "conflict"), "m")
    assert isinstance(other, RuntimeFailure)
    assert str(other) == f"Anthropic at {ANTHROPIC_URL} answered 409: the server's words"
    shape = model._translate(ValueError("x" * 400), "m")
    assert isinstance(shape, ProviderResponseError)
    assert f"ValueError: {'x' * 288})" in str(shape)

    bad = openai_common.translate(_openai_status(413), "openai", "m", None)
    assert isinstance(bad, BadRequest) and "the server's words" in str(bad)
    other = openai_common.translate(_openai_status(409), "ollama", "m", "http://h:1/v1/")
    assert isinstance(other, RuntimeFailure)
    assert str(other) == "Ollama at http://h:1/v1 answered 409: the server's words"
    failed = openai_common.translate(openai.OpenAIError("odd"), "openai", "m", None)
    assert isinstance(failed, RuntimeFailure)
    assert str(failed) == f"OpenAI at {OPENAI_URL} failed: odd"
    assert openai_common.translate(KeyError("x"), "openai", "m", None) is None
