"""/webhooks/instagram: Meta's webhooks (the `comments` field) for `carrier serve`.

Meta cannot send an API key, so this is the one endpoint besides the health probes that
takes none; the signature stands in for it. `GET` is the subscription handshake (the
verify token, `hub.challenge` echoed back as text), `POST` an event batch signed with the
app secret (`X-Hub-Signature-256`: 401 without it, 403 when it does not match the raw
body, compared in constant time). Accepted comments go to the account's running replier
(`carrier serve --client instagram`), which answers them through the same exactly-once
path as polled ones; the answer to Meta is immediate. Without the two settings both
methods answer 503 `not_configured`, naming them. The logic is in
clients/instagram/webhooks.py.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from carrier_cli.clients.api.auth import state_of
from carrier_cli.clients.api.errors import ApiError

router = APIRouter(tags=["webhooks"])
log = logging.getLogger("carrier.api")

PATH = "/webhooks/instagram"
_SETUP_HINT = (
    "Set instagram_app_secret (CARRIER_INSTAGRAM_APP_SECRET, the Meta app's secret) and "
    "instagram_webhook_verify_token (the token typed in the app's webhook setup), then "
    "restart `carrier serve --client instagram`."
)


class WebhookReceipt(BaseModel):
    received: int = Field(description="Changes in the delivery.")
    accepted: int = Field(description="Comments handed to a running replier of their account.")


def _not_configured(setting: str) -> ApiError:
    return ApiError(
        503,
        "not_configured",
        f"Instagram webhooks are not configured on this server ({setting} is not set).",
        hint=_SETUP_HINT,
    )


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The signed body is not JSON"},
    401: {"description": "No X-Hub-Signature-256 header"},
    403: {"description": "The signature (or the verify token) does not match"},
    413: {"description": "Request body too large"},
    415: {"description": "Request body is not JSON"},
    503: {"description": "Webhooks are not configured (instagram_app_secret, ...)"},
}

_BODY_SCHEMA = {
    "type": "object",
    "description": "A Meta webhook delivery (object `instagram`, field `comments`).",
    "properties": {
        "object": {"type": "string", "example": "instagram"},
        "entry": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "description": "The Instagram account id."},
                    "time": {"type": "integer"},
                    "changes": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "field": {"type": "string", "example": "comments"},
                                "value": {"type": "object"},
                            },
                        },
                    },
                },
            },
        },
    },
}


@router.get(
    PATH,
    summary="Meta's webhook verification handshake",
    response_class=PlainTextResponse,
    responses={
        200: {
            "description": "hub.challenge, echoed",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        403: _ERRORS[403],
        503: _ERRORS[503],
    },
)
async def verify(
    request: Request,
    mode: Annotated[str, Query(alias="hub.mode", max_length=100)],
    token: Annotated[str, Query(alias="hub.verify_token", max_length=1_000)],
    challenge: Annotated[str, Query(alias="hub.challenge", max_length=1_000)],
) -> PlainTextResponse:
    """Meta calls this once when the webhook is set up in the app dashboard."""
    from carrier_cli.clients.instagram.webhooks import handshake_matches

    expected = state_of(request).options.instagram_webhook_verify_token
    if not expected:
        raise _not_configured("instagram_webhook_verify_token")
    if mode != "subscribe" or not handshake_matches(token, expected):
        raise ApiError(
            403,
            "forbidden",
            "The verify token (hub.verify_token) is not this server's, or hub.mode is not "
            "`subscribe`.",
            hint="Type the value of instagram_webhook_verify_token as the Verify Token in the "
            "Meta app's webhook setup.",
        )
    return PlainTextResponse(challenge)


@router.post(
    PATH,
    summary="Receive Meta's webhook events (Instagram comments)",
    response_model=WebhookReceipt,
    responses=_ERRORS,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": _BODY_SCHEMA}}}
    },
)
async def receive(
    request: Request,
    signature: Annotated[
        str | None,
        Header(alias="X-Hub-Signature-256", max_length=200, description="sha256=HEX"),
    ] = None,
) -> WebhookReceipt:
    """Signed by Meta with the app secret; comments go to the account's replier."""
    from carrier_cli.clients.instagram import comment_inbox
    from carrier_cli.clients.instagram.webhooks import comments_in, signature_matches

    secret = state_of(request).options.instagram_app_secret
    if not secret:
        raise _not_configured("instagram_app_secret")
    if not signature:
        raise ApiError(
            401,
            "unauthorized",
            "This endpoint takes only deliveries signed by Meta (X-Hub-Signature-256).",
            hint="Meta signs every webhook it sends; other senders are refused.",
        )
    body = await request.body()
    if not signature_matches(body, signature, secret):
        raise ApiError(
            403,
            "forbidden",
            "X-Hub-Signature-256 does not match the body.",
            hint="Set instagram_app_secret to the secret of the Meta app that sends the "
            "webhooks (App settings > Basic > App secret).",
        )
    try:
        payload = json.loads(body)
    except ValueError:
        raise ApiError(
            400, "bad_request", "The webhook body is not JSON.", hint="Meta sends JSON."
        ) from None
    received, found = comments_in(payload)
    accepted = 0
    for item in found:
        taken = comment_inbox.deliver(item.account_id, item.comment)
        if not taken:
            log.warning(
                "Instagram webhook: comment %s for account %s, but no replier of that account "
                "runs here (run `carrier serve --client instagram` with a character that has "
                "clients.instagram.reply_to_comments); the poll of a running client finds it",
                item.comment.id,
                item.account_id,
            )
        accepted += 1 if taken else 0
    return WebhookReceipt(received=received, accepted=accepted)
