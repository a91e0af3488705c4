"""One module per resource; each defines `router`. routers() imports them when the app
is built (never at `carrier --help`)."""

from __future__ import annotations

from typing import Any


def routers() -> list[Any]:
    from carrier_cli.clients.api.routes import (
        agents,
        console,
        docs,
        files,
        health,
        instagram,
        instagram_queue,
        memories,
        messages,
        meta_webhooks,
        rooms,
        turns,
        usage,
        ws,
    )

    return [
        health.router,
        agents.router,
        messages.router,
        files.router,
        rooms.router,
        memories.router,
        instagram.router,
        meta_webhooks.router,
        turns.router,
        usage.router,
        instagram_queue.router,
        ws.router,
        console.router,
        docs.router,
    ]
