"""`/v1/ws`: the WebSocket API (see ws_session.py for the protocol)."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from carrier_cli.clients.api.auth import state_of
from carrier_cli.clients.api.hub import Hub
from carrier_cli.clients.api.ws_session import Session

router = APIRouter()


def hub_of(websocket: WebSocket) -> Hub:
    """The process's hub, made on the first connection (state.extras["hub"])."""
    extras = state_of(websocket).extras
    hub = extras.get("hub")
    if not isinstance(hub, Hub):
        hub = extras["hub"] = Hub()
    return hub


@router.websocket("/v1/ws")
async def websocket_api(websocket: WebSocket) -> None:
    await Session(websocket, state_of(websocket), hub_of(websocket)).run()
