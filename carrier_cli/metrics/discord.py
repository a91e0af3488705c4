"""The Discord bot as the metrics see it: gateway reconnects, send retries, queued turns.

A subclass of the bot rather than counters inside it, so the bot's code stays the same
with metrics off and the runner picks this class only when `metrics.active()`:
- reconnects: discord.py dispatches `connect` on every new session (READY) and `resumed`
  on every resumed one; all but the first connection are reconnects;
- send retries: discord.py retries a request answered 429 (after retry_after) or 500,
  502, 504, 524 by itself, without an event; an aiohttp trace on the bot's HTTP session
  sees those answers, and the ones to "create message" are the send retries;
- queued messages: the turns the bot holds (queued behind their channel's, or running),
  read at scrape time.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp

from carrier_cli.clients.discord.bot import CarrierDiscordBot
from carrier_cli.metrics.collectors import CarrierMetrics

# The statuses discord.py's HTTPClient.request retries (429 unless past its max timeout).
RETRIED_STATUSES = frozenset({429, 500, 502, 504, 524})
_CREATE_MESSAGE = re.compile(r"/channels/\d+/messages$")


class MeteredDiscordBot(CarrierDiscordBot):
    def __init__(self, *args: Any, metrics: CarrierMetrics, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.metrics = metrics
        self.connections = 0
        character = self.runtime.character.name
        self._reconnects = metrics.discord_reconnects.labels(character)
        self._send_retries = metrics.discord_send_retries.labels(character)
        # Read by HTTPClient.static_login when it opens the session (at `start`).
        self.http.http_trace = self._send_trace()
        metrics.watch(
            "carrier_discord_queued_messages",
            self,
            lambda: {(character,): float(len(self._in_flight))},
        )

    async def on_connect(self) -> None:
        self.connections += 1
        if self.connections > self.initial_connections:  # one per shard at start
            self._reconnects.inc()

    async def on_resumed(self) -> None:
        self._reconnects.inc()
        await super().on_resumed()

    async def close(self) -> None:
        self.metrics.unwatch(self)
        await super().close()

    def _send_trace(self) -> aiohttp.TraceConfig:
        trace = aiohttp.TraceConfig()

        async def on_request_end(
            _session: aiohttp.ClientSession,
            _context: Any,
            params: aiohttp.TraceRequestEndParams,
        ) -> None:
            if (
                params.method == "POST"
                and params.response.status in RETRIED_STATUSES
                and _CREATE_MESSAGE.search(params.url.path)
            ):
                self._send_retries.inc()

        trace.on_request_end.append(on_request_end)
        return trace
