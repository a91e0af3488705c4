"""What the HTTP and WebSocket API of `carrier serve` costs over the runtime it serves.

A server subprocess (this script with `--serve`) builds one runtime with a zero-latency
ScriptedChatModel (the same character and script as runtime_bench.py; SQLite in a temp
dir, local wordllama embeddings), measures that runtime directly first (sequential turns
in one room, then 50 rooms at once), and then serves it through the real `carrier serve`
code path (`api_service`: create_app, the middlewares and uvicorn, exactly as the command
runs them) with the request log at WARNING and no rate limit. This process is the client:
httpx2 with keep-alive and the `websockets` library, over loopback.

(a) overhead: the same sequential turns through `POST /v1/agents/Eliza/messages`, p50/p99
    and the ratio to the direct turn, in alternating blocks with the direct ones; sent with
    httpx2 and with hand-written HTTP/1.1 on a raw socket (httpx2's own cost, 0.5-5 ms a
    request on a busy machine, is the client's, not the server's); plus `GET /healthz`
    and `GET /v1/agents` (the key check, routing, JSON; no turn);
(b) requests/s with 50 concurrent clients, each in its own room (and GET /v1/agents);
(c) 500 idle WebSocket connections (RSS growth of the server per connection, psutil), then
    50 more that each send `message` frames: time to the first `reply.token`, between
    tokens, and to `reply.completed`, with the 500 idle ones still open.

Goals (issue 13): API overhead p50 under 2 ms over the runtime; 500 idle WebSockets under
100 MB of extra RSS.

    .venv/bin/python bench/api_bench.py [--quick] [--turns N] [--clients 50] [--idle 500]

The client and the server share the machine: the figures include the client's own CPU
time on a loaded box; the load and the busiest other processes are printed first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # runtime_bench, beside this file

AGENT = "Eliza"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> str:
    return f"p50 {pct(values, 0.5):7.2f} ms   p99 {pct(values, 0.99):7.2f} ms"


# --- the server ------------------------------------------------------------------------------


async def serve(args: argparse.Namespace) -> None:
    """The server subprocess: the API over one runtime, plus a control channel on stdin
    that runs turns on the same runtime directly, so the client can interleave direct and
    API blocks and both see the same machine load.

    stdin commands, one JSON line answered on stdout each: `direct ROOM N` (N sequential
    turns: their ms), `concurrent CLIENTS PER` (CLIENTS rooms at once: turns/s)."""
    import random

    from runtime_bench import _msg, character, script

    from carrier_cli.auth.keys import ApiKeys
    from carrier_cli.clients.api.server import ServeOptions, api_service, bind
    from carrier_cli.config import Settings
    from carrier_cli.llm.scripted import ScriptedChatModel
    from carrier_cli.memory.store import MemoryStore
    from carrier_cli.runtime.agent import AgentRuntime

    settings = Settings(api_rate_limit=0, shutdown_grace=2.0)
    store = await MemoryStore.open(args.database_url)
    model = ScriptedChatModel(script, record=False)
    runtime = await AgentRuntime.create(
        character(), settings, store=store, model=model, model_name="zero-latency"
    )
    rng = random.Random(7)
    for i in range(10):  # warm caches (room, entity, vector index, wordllama)
        await runtime.handle_message(_msg(rng, "warm", i))
    counter = iter(range(10**9))

    async def direct(room: str, count: int) -> list[float]:
        times = []
        for _ in range(count):
            began = time.perf_counter()
            await runtime.handle_message(_msg(rng, room, next(counter)))
            times.append((time.perf_counter() - began) * 1000)
        return times

    async def concurrent(clients: int, per: int) -> float:
        began = time.perf_counter()
        await asyncio.gather(*(direct(f"direct-{r}", per) for r in range(clients)))
        return clients * per / (time.perf_counter() - began)

    keys = ApiKeys(store)
    raw, _ = await keys.create("bench", "admin")
    sock = bind("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def out(line: str) -> None:
        print(line, file=sys.stderr)

    extra: dict[str, Any] = {}
    if "first_key" in inspect.signature(api_service).parameters:  # before it made its own
        extra["first_key"] = None
    service = api_service(ServeOptions(port=0), store, keys, sock, out=out, **extra)
    running = asyncio.create_task(service([runtime], settings, stop))
    await _wait_listening(url, running)
    print(json.dumps({"url": url, "key": raw, "pid": os.getpid()}), flush=True)

    async def control() -> None:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            command, *rest = line.split()
            if command == "direct":
                answer: Any = await direct(rest[0], int(rest[1]))
            elif command == "concurrent":
                answer = await concurrent(int(rest[0]), int(rest[1]))
            else:
                answer = None
            await runtime.wait_idle()
            print(json.dumps(answer), flush=True)

    controller = asyncio.create_task(control())
    try:
        await running
    finally:
        controller.cancel()
        sock.close()
        await runtime.aclose()
        await store.close()


async def _wait_listening(url: str, running: asyncio.Task[None]) -> None:
    import httpx2 as httpx

    async with httpx.AsyncClient(base_url=url, timeout=2) as client:
        for _ in range(500):
            if running.done():
                running.result()
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.02)
    raise RuntimeError("the bench server did not answer /healthz")


# --- the client ------------------------------------------------------------------------------


def machine_report() -> None:
    import psutil

    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    procs = list(psutil.process_iter(["pid", "name", "cmdline"]))
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.cpu_percent(None)
    busy_share = psutil.cpu_percent(interval=1.0)  # every CPU, short-lived processes too
    print(f"CPU busy over the last second: {busy_share:.0f}% of the machine")
    busy = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            share = p.cpu_percent(None)
            if share >= 5 and p.pid != os.getpid():
                cmd = " ".join(p.info.get("cmdline") or [p.info.get("name") or "?"])[:90]
                busy.append((share, p.pid, cmd))
    if busy:
        print("also running (>= 5% CPU over 1 s):")
        for share, pid, cmd in sorted(busy, reverse=True)[:8]:
            print(f"  {share:5.0f}%  pid {pid}  {cmd}")
    else:
        print("also running: nothing above 5% CPU over 1 s")


class Server:
    """The server subprocess and its control channel (stdin commands, stdout answers)."""

    def __init__(self, process: subprocess.Popen[str], info: dict[str, Any]) -> None:
        self.process = process
        self.url: str = info["url"]
        self.key: str = info["key"]
        self.pid: int = info["pid"]

    def ask(self, command: str) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def start_server(tmp: Path) -> Server:
    command = [sys.executable, __file__, "--serve", "--database-url"]
    command.append(f"sqlite:///{tmp / 'api-bench.db'}")
    env = {**os.environ, "CARRIER_HOME": str(tmp / "home")}
    log = tmp / "server.log"  # a file, not a pipe: nothing reads it while the bench runs
    with log.open("w") as errors:
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            env=env,
        )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.strip():
        process.wait(30)
        raise RuntimeError("the bench server failed:\n" + log.read_text()[-4000:])
    return Server(process, json.loads(line))


async def http_phase(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    """(a) and (b): blocks of 10 direct turns and 10 API turns, alternating, so drift in
    the machine's load falls on both sides alike."""
    import httpx2 as httpx

    headers = {"Authorization": f"Bearer {server.key}"}
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    results: dict[str, Any] = {"direct": [], "api": [], "server_total": [], "added": []}
    async with httpx.AsyncClient(
        base_url=server.url, headers=headers, limits=limits, timeout=60
    ) as client:
        path = f"/v1/agents/{AGENT}/messages"
        counter = iter(range(10**9))

        def body(room: str) -> dict[str, Any]:
            return {
                "room": room,
                "text": f"Tell me about the harbor and the tide, please ({next(counter)}).",
                "sender": {"id": f"user-{room}", "name": f"User {room}"},
            }

        async def send(room: str) -> httpx.Response:
            return await client.post(path, json=body(room))

        probe = await send("warm")
        results["messages"] = probe.status_code == 200
        if not results["messages"]:
            print(
                f"\nPOST {path} answered {probe.status_code}: this build has no messages "
                "endpoint yet, so (a) and (b) measure GET /v1/agents only."
            )
        else:
            for _ in range(9):
                (await send("warm")).raise_for_status()
            results["raw"] = []
            raw = await RawHttp(server.url, headers).__aenter__()
            for _ in range(max(1, args.turns // 10)):
                results["direct"] += server.ask("direct direct 10")
                for _ in range(10):
                    began = time.perf_counter()
                    status, _ = await raw.request("POST", path, body("raw"))
                    results["raw"].append((time.perf_counter() - began) * 1000)
                    assert status == 200, status
                for _ in range(10):
                    began = time.perf_counter()
                    response = await send("api")
                    elapsed = (time.perf_counter() - began) * 1000
                    response.raise_for_status()
                    results["api"].append(elapsed)
                    total = (response.json().get("timings") or {}).get("total")
                    if total is not None:  # milliseconds, as the server timed the turn
                        results["server_total"].append(float(total))
                        results["added"].append(elapsed - float(total))

            await raw.__aexit__()

            async def client_loop(r: int) -> None:
                for _ in range(args.per_client):
                    (await send(f"api-{r}")).raise_for_status()

            results["direct_rps"] = server.ask(f"concurrent {args.clients} {args.per_client}")
            began = time.perf_counter()
            await asyncio.gather(*(client_loop(r) for r in range(args.clients)))
            results["rps"] = args.clients * args.per_client / (time.perf_counter() - began)

        for path in ("/healthz", "/v1/agents"):
            for _ in range(20):
                (await client.get(path)).raise_for_status()
            times: list[float] = []
            for _ in range(args.turns * 3):
                began = time.perf_counter()
                (await client.get(path)).raise_for_status()
                times.append((time.perf_counter() - began) * 1000)
            results[path] = times
        results["raw /healthz"] = await raw_gets(server.url, "/healthz", args.turns * 3)
        results["raw /v1/agents"] = await raw_gets(
            server.url, "/v1/agents", args.turns * 3, headers
        )
        count = args.clients * args.per_client * 4

        async def get_loop() -> None:
            for _ in range(count // args.clients):
                (await client.get("/v1/agents")).raise_for_status()

        began = time.perf_counter()
        await asyncio.gather(*(get_loop() for _ in range(args.clients)))
        results["agents_rps"] = count / (time.perf_counter() - began)
    return results


class RawHttp:
    """Hand-written HTTP/1.1 over one keep-alive socket: the server's own cost plus
    loopback, without an HTTP client library's (httpx2 adds about 0.5-1 ms a request)."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.host, port = url.removeprefix("http://").split(":")
        self.port = int(port)
        self.headers = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> RawHttp:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.writer is not None:
            self.writer.close()

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        data = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.headers}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + data)
        answer = await self.reader.readuntil(b"\r\n\r\n")
        lines = answer.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = next(
            int(line.split(b":", 1)[1])
            for line in lines
            if line.lower().startswith(b"content-length:")
        )
        return status, await self.reader.readexactly(length)


async def raw_gets(
    url: str, path: str, count: int, headers: dict[str, str] | None = None
) -> list[float]:
    times: list[float] = []
    async with RawHttp(url, headers or {}) as raw:
        for i in range(count + 20):
            began = time.perf_counter()
            status, _ = await raw.request("GET", path)
            assert status == 200, status
            if i >= 20:  # the first ones warm up
                times.append((time.perf_counter() - began) * 1000)
    return times


async def ws_phase(server: Server, args: argparse.Namespace) -> dict[str, Any] | None:
    import psutil
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus, WebSocketException

    uri = server.url.replace("http://", "ws://") + "/v1/ws"
    protocols: Any = ["carrier.v1", server.key]
    process = psutil.Process(server.pid)

    async def open_one() -> Any:
        ws = await connect(uri, subprotocols=protocols, open_timeout=30, max_queue=64)
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame.get("type") != "authenticated":
            raise RuntimeError(f"unexpected first frame {frame}")
        return ws

    try:
        warm = await open_one()  # the hub and the protocol code are loaded before measuring
    except (InvalidStatus, WebSocketException, OSError) as exc:
        print(f"\n/v1/ws refused the connection ({exc}): this build has no WebSocket API yet.")
        return None
    await warm.close()
    await asyncio.sleep(0.5)
    rss_before = process.memory_info().rss
    idle: list[Any] = []
    for start in range(0, args.idle, 50):
        idle += await asyncio.gather(*(open_one() for _ in range(min(50, args.idle - start))))
    await asyncio.sleep(1.0)
    rss_idle = process.memory_info().rss
    results: dict[str, Any] = {
        "idle": len(idle),
        "rss_before": rss_before,
        "rss_idle": rss_idle,
    }
    streaming = await asyncio.gather(*(open_one() for _ in range(args.clients)))
    first: list[float] = []
    gaps: list[float] = []
    complete: list[float] = []
    tokens = 0

    async def talk(n: int, ws: Any) -> None:
        nonlocal tokens
        for i in range(args.ws_rounds):
            client_id = f"c{n}-{i}"
            await ws.send(
                json.dumps(
                    {
                        "type": "message",
                        "agent": AGENT,
                        "room": f"ws-{n}",
                        "text": f"What is the weather at sea today? ({i})",
                        "sender": {"id": f"ws-user-{n}", "name": f"Sailor {n}"},
                        "client_id": client_id,
                    }
                )
            )
            sent = last = time.perf_counter()
            seen_first = False
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
                kind = frame.get("type")
                if kind == "error":
                    raise RuntimeError(f"error frame: {frame}")
                if frame.get("client_id") != client_id:
                    continue
                at = time.perf_counter()
                if kind == "reply.token":
                    tokens += 1
                    if not seen_first:
                        first.append((at - sent) * 1000)
                        seen_first = True
                    else:
                        gaps.append((at - last) * 1000)
                    last = at
                elif kind == "reply.completed":
                    complete.append((at - sent) * 1000)
                    break

    began = time.perf_counter()
    await asyncio.gather(*(talk(n, ws) for n, ws in enumerate(streaming)))
    elapsed = time.perf_counter() - began
    results.update(
        rss_streaming=process.memory_info().rss,
        first=first,
        gaps=gaps,
        complete=complete,
        tokens=tokens,
        turns_per_s=args.clients * args.ws_rounds / elapsed,
        still_open=sum(1 for ws in idle if ws.state.name == "OPEN"),
    )
    await asyncio.gather(*(ws.close() for ws in [*idle, *streaming]), return_exceptions=True)
    return results


def report(args: argparse.Namespace, http: dict[str, Any], ws: dict[str, Any] | None) -> None:
    print("\n(a) overhead per request (sequential turns in one room, keep-alive; blocks of 10")
    print("    direct and 10 API turns alternating):")
    if http.get("messages"):
        direct, api = http["direct"], http["api"]
        print(f"  runtime.handle_message  {summary(direct)}   ({len(direct)} turns)")
        print(f"  POST .../messages       {summary(api)}   ({len(api)} requests, httpx2)")
        print(f"  POST .../messages, raw  {summary(http['raw'])}   (no client library)")
        for label, series in (("with httpx2", api), ("raw HTTP", http["raw"])):
            over = pct(series, 0.5) - pct(direct, 0.5)
            print(
                f"  -> {label}: the API adds {over:.2f} ms at p50 "
                f"({pct(series, 0.99) - pct(direct, 0.99):.2f} ms at p99); "
                f"ratio {pct(series, 0.5) / pct(direct, 0.5):.2f}x   (goal: < 2 ms at p50)"
            )
        if http["added"]:
            print(
                f"  per request, client time minus the turn as the server timed it: "
                f"{summary(http['added'])}"
            )
    print(f"  GET /healthz            {summary(http['/healthz'])}   (HTTP + client, no key)")
    print(f"  GET /healthz, raw HTTP  {summary(http['raw /healthz'])}   (no client library)")
    print(f"  GET /v1/agents          {summary(http['/v1/agents'])}   (+ the key check, no turn)")
    print(f"  GET /v1/agents, raw     {summary(http['raw /v1/agents'])}   (no client library)")

    print(f"\n(b) requests/s with {args.clients} concurrent clients, one room each:")
    if http.get("messages"):
        print(
            f"  direct turns {http['direct_rps']:7.0f}/s   POST .../messages {http['rps']:7.0f}/s"
            f"   ratio {http['rps'] / http['direct_rps']:.2f}"
        )
    print(f"  GET /v1/agents {http['agents_rps']:7.0f}/s")

    if ws is None:
        return
    mib = 1024 * 1024
    grown = ws["rss_idle"] - ws["rss_before"]
    print(f"\n(c) WebSocket: {ws['idle']} idle connections")
    print(
        f"  server RSS {ws['rss_before'] / mib:.1f} MiB -> {ws['rss_idle'] / mib:.1f} MiB: "
        f"+{grown / mib:.1f} MiB, {grown / ws['idle'] / 1024:.1f} KiB per connection   "
        "(goal: < 100 MB for 500)"
    )
    if ws["first"]:
        print(
            f"  + {args.clients} streaming connections, "
            f"{ws['turns_per_s']:.0f} turns/s, {ws['tokens']} reply.token frames "
            f"(RSS {ws['rss_streaming'] / mib:.1f} MiB; {ws['still_open']} idle still open):"
        )
        print(f"  send -> first reply.token   {summary(ws['first'])}")
        print(f"  between reply.token frames  {summary(ws['gaps'])}")
        print(f"  send -> reply.completed     {summary(ws['complete'])}")
    else:
        print("  the streaming connections saw no reply.token frames")


async def client_main(args: argparse.Namespace, server: Server) -> None:
    http = await http_phase(server, args)
    ws = await ws_phase(server, args)
    report(args, http, ws)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer turns and requests")
    parser.add_argument("--turns", type=int, default=None, help="sequential turns, each side")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients")
    parser.add_argument("--per-client", type=int, default=None, help="requests per client")
    parser.add_argument("--idle", type=int, default=500, help="idle WebSocket connections")
    parser.add_argument("--ws-rounds", type=int, default=None, help="messages per WS client")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.turns = args.turns or (60 if args.quick else 300)
    args.per_client = args.per_client or (2 if args.quick else 6)
    args.ws_rounds = args.ws_rounds or (2 if args.quick else 4)
    if args.serve:
        asyncio.run(serve(args))
        return
    machine_report()
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        server = start_server(Path(tmp))
        print(f"server ready in {time.perf_counter() - began:.1f} s (pid {server.pid})")
        try:
            asyncio.run(client_main(args, server))
        finally:
            server.stop()
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
