"""`carrier serve` as a library: the API under uvicorn, beside the other clients.

The supervisor (clients/supervisor.py) owns the signals and the runtimes' lifetimes; the
API is one of its services, over every runtime at once. All runtimes share one store, so
one database connection pool serves the API and the clients alike.

We bind the listening socket ourselves: a port in use is then a clear error before any
runtime opens (uvicorn would `sys.exit`), and with port 0 the port really taken is known
for the banner. uvicorn's own signal handling is off (the supervisor's event stops it),
and on stop it finishes in-flight requests within `shutdown_grace`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from carrier_cli.config import Settings
from carrier_cli.errors import InputError, RuntimeFailure

log = logging.getLogger("carrier.api")

Printer = Callable[[str], None]


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    characters: Sequence[str | None] = (None,)
    clients: Sequence[str] = ()
    no_auth: bool = False
    role: str = "all"  # all: run turns here; api: hand them to workers over Redis


@dataclass
class FirstKey:
    """The admin key created because none existed; printed once, after binding."""

    raw: str
    name: str


@dataclass
class Banner:
    """What `carrier serve` prints once it listens (tests read the URL from it)."""

    url: str
    first_key: FirstKey | None = None
    agents: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [
            f"Carrier API listening on {self.url} (docs: {self.url}/docs)",
            f"Console: {self.url}/console/ (sign in with an API key)",
        ]
        if self.agents:
            out.append("Serving: " + ", ".join(self.agents))
        if self.first_key is not None:
            agent = self.agents[0] if self.agents else "carrier"
            out += [
                "",
                f"No API key existed, so an admin key named {self.first_key.name!r} was "
                "created. It is shown only this once; keep it somewhere safe:",
                "",
                f"    {self.first_key.raw}",
                "",
                f"Web console: open {self.url}/console/ and paste this key.",
                "",
                "Try it:",
                f"    curl -s {self.url}/v1/agents/{agent}/messages "
                f"-H 'Authorization: Bearer {self.first_key.raw}' "
                "-H 'Content-Type: application/json' "
                '-d \'{"room": "r1", "text": "hi"}\'',
                "",
                "More keys: carrier api-keys create NAME --scope chat|read|admin",
            ]
        return out


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_options(options: ServeOptions) -> None:
    if options.no_auth and not is_loopback(options.host):
        raise InputError(
            f"--no-auth is refused with --host {options.host}: anyone who can reach that "
            "address could talk to your agents and change their memory.",
            hint="Use --no-auth only on 127.0.0.1, or drop it and use API keys "
            "(`carrier api-keys create NAME`).",
        )
    if not 0 <= options.port <= 65_535:
        raise InputError(
            f"--port {options.port} is not a TCP port.", hint="Give a port from 1 to 65535."
        )


def check_clients(names: Sequence[str], registry: Mapping[str, str]) -> None:
    """An unknown --client is refused before the port, the database or a key is touched."""
    unknown = [name for name in names if name not in registry]
    if unknown:
        raise InputError(
            f"Unknown client {unknown[0]!r} given to --client.",
            hint=f"Available clients: {', '.join(sorted(registry))}.",
        )


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, or an error naming the address and what to do."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InputError(
            f"--host {host!r} is not an address of this machine ({exc.strerror}).",
            hint="Use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface).",
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise RuntimeFailure(
            f"Could not listen on {host}:{port}: {exc.strerror}.",
            hint="Another program (or another `carrier serve`) holds that port: stop it, or "
            "pick another with --port.",
        ) from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _url(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


@contextlib.contextmanager
def _quiet_uvicorn() -> Iterator[None]:
    """uvicorn's own loggers stay at WARNING: Carrier logs its own request lines."""
    names = ("uvicorn", "uvicorn.error", "uvicorn.access")
    before = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for n, level in before.items():
            logging.getLogger(n).setLevel(level)


async def ensure_first_key(keys: Any) -> FirstKey | None:
    """An admin key when none is active, so a fresh install is secure and usable at once."""
    if await keys.any_active():
        return None
    name = "admin"
    existing = {k.name for k in await keys.list()}
    suffix = 1
    while name in existing:  # a revoked "admin" keeps its name
        suffix += 1
        name = f"admin-{suffix}"
    raw, _ = await keys.create(name, "admin")
    return FirstKey(raw=raw, name=name)


def api_service(
    options: ServeOptions,
    store: Any,
    keys: Any,
    sock: socket.socket,
    out: Printer,
    turn_queue: Any = None,
    relay: Any = None,
) -> Any:
    """The supervisor service running the API over the process's runtimes. The first
    admin key is made here, once every runtime opened: a start that fails earlier (a bad
    --character, a client's preflight) must not store a key nobody was shown."""

    async def service(runtimes: Sequence[Any], settings: Settings, stop: asyncio.Event) -> None:
        import uvicorn

        from carrier_cli.clients.api.app import create_app
        from carrier_cli.clients.api.options import ApiOptions
        from carrier_cli.clients.api.state import AgentDirectory, ApiState
        from carrier_cli.clients.api.ws_frames import MAX_FRAME_CHARS

        options_ = ApiOptions.from_settings(settings)
        state = ApiState(
            options=options_,
            store=store,
            agents=AgentDirectory(list(runtimes)),
            keys=keys,
            clients=list(options.clients),
        )
        from carrier_cli.clients.api.file_store import FileStore

        files = state.extras["files"] = FileStore.from_settings(settings)
        for runtime in runtimes:  # a reply's files are stored before reply.completed names them
            runtime.file_sink = files.keep
        from carrier_cli.clients.api.instagram_posts import open_poster

        poster = await open_poster(settings, store)
        state.extras["instagram"] = poster  # its events go to the webhooks (poster.listeners)
        if turn_queue is not None:  # --role api: turns go to the workers
            state.extras["turn_queue"] = turn_queue
            await turn_queue.start()
        if relay is not None:  # other processes' events reach this server's WebSockets
            from carrier_cli.clients.api.hub import Hub

            hub = state.extras["hub"] = Hub()
            relay.sinks.append(hub.publish)
        shared_limit = None
        if settings.redis_url and options_.rate_limit:  # one budget per key on every server
            from carrier_cli.cluster.rate_limit import open_rate_limiter

            shared_limit = await open_rate_limiter(settings.redis_url, options_.rate_limit)
            state.extras["rate_limiter"] = shared_limit
        app = create_app(state)
        first_key = await ensure_first_key(keys) if keys is not None else None
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=max(1, int(options_.shutdown_grace)),
            ws_ping_interval=20.0,
            ws_ping_timeout=20.0,
            # A frame's text is refused past ws_frames.MAX_FRAME_CHARS (256 K characters);
            # this stops the bytes of a larger one from being buffered at all (uvicorn's
            # default is 16 MiB per frame, per connection). 4 bytes per character at most.
            ws_max_size=4 * MAX_FRAME_CHARS,
            server_header=False,
        )
        server = _server(config)
        with _quiet_uvicorn():
            serving = asyncio.create_task(server.serve(sockets=[sock]), name="uvicorn")
            while not server.started and not serving.done():
                await asyncio.sleep(0.01)
            if serving.done():
                serving.result()  # its error, if it failed to start
            banner = Banner(
                _url(sock, options.host), first_key, [r.character.name for r in runtimes]
            )
            for line in banner.lines():
                out(line)
            log.info("Carrier API listening on %s", banner.url)
            if turn_queue is not None:
                log.info(
                    "Role api: turns go to `carrier run --role worker` processes over Redis at %s",
                    turn_queue.where,
                )
            await poster.resume_interrupted()
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            server.should_exit = True
            await asyncio.gather(serving, poster.stop())
            if turn_queue is not None:
                await turn_queue.close()
            if shared_limit is not None:
                await shared_limit.aclose()
        if not stop.is_set():  # uvicorn stopped on its own: stop the process too
            stop.set()

    return service


def _server(config: Any) -> Any:
    """uvicorn.Server without its signal handlers (the supervisor owns SIGINT/SIGTERM)."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server(config)


async def serve(
    options: ServeOptions,
    settings: Settings,
    registry: Mapping[str, str],
    *,
    out: Printer = print,
    stop_event: asyncio.Event | None = None,
) -> None:
    """Run `carrier serve` until SIGINT/SIGTERM (or `stop_event`)."""
    from carrier_cli.auth.keys import ApiKeys
    from carrier_cli.clients.supervisor import run_clients
    from carrier_cli.cluster import event_relay
    from carrier_cli.memory.store import MemoryStore
    from carrier_cli.runtime.agent import AgentRuntime
    from carrier_cli.webhooks.sender import services as webhook_services

    check_options(options)
    check_clients(options.clients, registry)
    hooks = webhook_services(settings)  # a webhook's missing secret: refused before binding
    # What opens below closes in reverse order on every way out, a failed start included.
    async with contextlib.AsyncExitStack() as opened:
        # With redis_url: Redis must answer now (exit 1 in a paragraph), before any runtime.
        relay = await event_relay.open_relay(settings, receive=True)
        if relay is not None:  # closed by its service; again here if that never ran
            opened.push_async_callback(relay.close)
        redis = await _redis_for(options, settings)
        turn_queue = None
        if redis is not None:
            opened.push_async_callback(redis.aclose)
            from carrier_cli.cluster.turn_queue import TurnQueue

            turn_queue = TurnQueue.from_settings(redis, settings)
        sock = bind(options.host, options.port)
        opened.callback(sock.close)
        store = await MemoryStore.from_settings(settings)
        opened.push_async_callback(store.close)
        keys = None if options.no_auth else ApiKeys(store)

        async def runtime_factory(character: Any, settings: Settings) -> Any:
            return await AgentRuntime.create(character, settings, store=store)

        await run_clients(
            list(options.clients),
            list(options.characters) or [None],
            settings,
            registry,
            runtime_factory=runtime_factory,
            stop_event=stop_event,
            services=[
                ("api", api_service(options, store, keys, sock, out, turn_queue, relay)),
                *hooks,
                *event_relay.services(relay),
            ],
        )


async def _redis_for(options: ServeOptions, settings: Settings) -> Any:
    """Redis for --role api (checked with a PING before anything else opens), else None."""
    if options.role == "all":
        return None
    if options.role != "api":
        raise InputError(
            f"--role {options.role!r} is not a role of carrier serve.",
            hint="Use --role all (run turns here, the default) or --role api (hand them to "
            "`carrier run --role worker` processes over Redis).",
        )
    if not settings.redis_url:
        raise InputError(
            "--role api hands turns to workers over Redis, but no Redis is configured.",
            hint="Set REDIS_URL (or redis_url in config.yaml), the same for the workers, or "
            "drop --role api to run turns in this process.",
        )
    from carrier_cli.cluster.redis_client import connect

    return await connect(settings.redis_url)
