"""A webhook receiver on 127.0.0.1 (aiohttp) that checks every request's signature with
the `verify` receivers are told to copy, and answers from a script of statuses.

`Receiver(secret, script=[500, 500])` answers 500 twice and then 200. It runs in its own
thread (so sync tests driving a subprocess can use it) and records every request.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from carrier_cli.webhooks.signing import verify


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered
    verified: bool

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def delivery(self) -> str:
        return self.headers["X-Carrier-Delivery"]

    @property
    def event(self) -> str:
        return self.headers["X-Carrier-Event"]


@dataclass
class Receiver:
    secret: str
    script: list[int] = field(default_factory=list)  # statuses answered first, then 200
    delay: float = 0.0  # seconds before answering (timeouts)
    failing: bool = False  # answer 500 to everything while set
    received: list[Received] = field(default_factory=list)
    url: str = ""
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.delay:
            await asyncio.sleep(self.delay)
        with self._lock:
            status = self.script.pop(0) if self.script else 500 if self.failing else 200
            ok = verify(self.secret, dict(request.headers), body)
            self.received.append(Received(dict(request.headers), body, status, ok))
        if 300 <= status < 400:
            return web.Response(status=status, headers={"Location": "http://127.0.0.1:1/"})
        return web.Response(status=status, text="ok" if status < 300 else "no")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"

    def start(self) -> Receiver:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="webhook-receiver", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("receiver did not start")
        return self

    def stop(self) -> None:
        if self._loop is None or self._runner is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def requests(self, event: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.received if event is None or r.event == event]

    def wait_for(
        self, check: Callable[[], Any], *, timeout: float = 20, what: str = "deliveries"
    ) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; received: {self.received}")

    async def async_wait_for(
        self, check: Callable[[], Any], *, timeout: float = 20, what: str = "deliveries"
    ) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; received: {self.received}")
