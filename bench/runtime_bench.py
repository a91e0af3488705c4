"""Per-turn overhead of the runtime pipeline and throughput with many rooms at once.

Everything real except the model: SQLite MemoryStore preloaded with 10k memories, local
wordllama embeddings, the fact evaluator on, and a zero-latency ScriptedChatModel, so the
figures are the runtime's own cost (intake, store writes, retrieval, prompt, parsing).

Goals (issue 4): overhead p50 under 10 ms per turn; at least 100 turns/s with 100 rooms.
Issue 15: overhead p50 <= 8 ms at 100k memories (`--memories 100000`).

    .venv/bin/python bench/runtime_bench.py [--quick] [--memories N] [--turns N] [--rooms N]
                                            [--metrics]

`--metrics` turns the Prometheus metrics on (carrier_cli.metrics) before the runtime is
built, as `carrier run --metrics-port` does, to compare the overhead with them off (issue
12: a negligible cost per turn).

`--analyze` runs SQLite's ANALYZE after preloading. It used to matter: without statistics
SQLite answered the store's embedding-cache lookup (embedding_model = ? AND content_hash
IN ...) through the low-selectivity embedding_model index, a scan of every row (~25 ms at
10k memories) on each embedded write. The lookup now filters on content_hash alone in SQL,
so the plan is the content_hash index either way (~0.04 ms).

Where the time went and what fixed it (see docs/memory.md, "Runtime path"): SQLAlchemy's
aiosqlite adapter made four thread hops per statement, and 100 rooms' writers busy-waited
in SQLite's busy handler for the write lock. Now statements take one hop, writes run whole
in one writer thread, small hot-path reads run inline on the event loop, and the vector
index takes this process's own inserts without reading them back.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from carrier_cli.character import Character
from carrier_cli.config import Settings
from carrier_cli.llm.base import ChatMessage
from carrier_cli.llm.scripted import ScriptedChatModel
from carrier_cli.memory.store import MemoryStore
from carrier_cli.memory.types import Memory, MemoryKind
from carrier_cli.runtime.agent import AgentRuntime
from carrier_cli.runtime.types import IncomingMessage

WORDS = [
    "sea",
    "tide",
    "tea",
    "boat",
    "harbor",
    "wind",
    "sail",
    "rope",
    "lighthouse",
    "storm",
    "calm",
    "fish",
    "net",
    "island",
    "map",
    "compass",
    "star",
    "night",
    "morning",
    "coffee",
    "book",
    "music",
    "garden",
    "rain",
    "sun",
    "cloud",
    "river",
    "stone",
    "bridge",
    "market",
    "bread",
    "cheese",
    "wine",
    "friend",
    "family",
    "work",
    "project",
    "deadline",
    "meeting",
    "travel",
    "train",
]

REPLY = (
    "<response><thought>short and kind</thought><actions>REPLY</actions>"
    "<text>That sounds lovely. Tell me more?</text></response>"
)


def script(messages: list[ChatMessage]) -> str:
    prompt = messages[-1].content
    if "Extract lasting facts" in prompt:
        return "<facts></facts>"
    if "RESPOND, IGNORE or STOP" in prompt:
        return "RESPOND"
    return REPLY


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))).capitalize() + "."


def character() -> Character:
    return Character(
        name="Eliza",
        bio=["Eliza is a sailor.", "Eliza drinks tea.", "Eliza reads maps.", "Eliza listens."],
        lore=[f"Eliza once {w}." for w in WORDS[:15]],
        topics=WORDS[:10],
        adjectives=["curious", "calm", "dry"],
        style={"all": ["Be brief."], "chat": ["Ask back."], "post": ["No emojis."]},
        message_examples=[[{"name": "{{user1}}", "text": "Hi"}, {"name": "Eliza", "text": "Ahoy."}]]
        * 6,
    )


async def preload(store: MemoryStore, agent_id: Any, count: int, rng: random.Random) -> None:
    rooms = [await store.ensure_room(agent_id, "discord", f"pre-{i}") for i in range(50)]
    kinds = [MemoryKind.MESSAGE] * 7 + [MemoryKind.FACT, MemoryKind.FRAGMENT, MemoryKind.LORE]
    batch: list[Memory] = []
    for i in range(count):
        kind = rng.choice(kinds)
        batch.append(
            Memory(
                agent_id=agent_id,
                content={"text": f"{sentence(rng)} #{i}", "name": "Someone"},
                kind=kind,
                room_id=rng.choice(rooms).id if kind == MemoryKind.MESSAGE else None,
            )
        )
        if len(batch) == 500:
            await store.add_many(batch, dedupe=False)
            batch = []
    if batch:
        await store.add_many(batch, dedupe=False)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(args: argparse.Namespace) -> None:
    rng = random.Random(42)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        store = await MemoryStore.open(url)
        model = ScriptedChatModel(script, record=False)
        if args.metrics:
            from carrier_cli import metrics

            metrics.enable()
        runtime = await AgentRuntime.create(
            character(), Settings(), store=store, model=model, model_name="zero-latency"
        )
        began = time.perf_counter()
        await preload(store, runtime.agent_id, args.memories, rng)
        total = await store.count(agent_id=runtime.agent_id)
        if args.analyze and store.backend == "sqlite":
            from sqlalchemy import text

            async with store.engine.begin() as conn:
                await conn.execute(text("ANALYZE"))
        print(
            f"metrics {'on' if args.metrics else 'off'}; preloaded {total} memories in "
            f"{time.perf_counter() - began:.1f} s "
            f"({store.backend}, {store.embedder.model_id})"
        )

        # -- overhead: sequential direct turns in one room ---------------------------------
        for i in range(10):  # warm caches (room, entity, vector index, wordllama)
            await runtime.handle_message(_msg(rng, "warm", i))
        overheads: list[float] = []
        cpu: list[float] = []
        stages: dict[str, list[float]] = {}
        for i in range(args.turns):
            cpu_before = time.process_time()
            result = await runtime.handle_message(_msg(rng, "solo", i))
            cpu.append((time.process_time() - cpu_before) * 1000)
            overheads.append(result.timings["overhead"] * 1000)
            for key, value in result.timings.items():
                stages.setdefault(key, []).append(value * 1000)
        await runtime.wait_idle()
        print(f"\noverhead per turn ({args.turns} direct turns, model time excluded):")
        print(
            f"  p50 {pct(overheads, 0.5):6.2f} ms   p99 {pct(overheads, 0.99):6.2f} ms   "
            f"mean {statistics.fmean(overheads):6.2f} ms   (goal: p50 < 10 ms)"
        )
        # CPU time of the whole process (all threads) per turn: on a shared, loaded
        # machine the wall figures above include waiting for a core; this does not.
        print(f"  CPU per turn p50 {pct(cpu, 0.5):6.2f} ms   mean {statistics.fmean(cpu):6.2f} ms")
        print(
            "  stage p50 ms: "
            + ", ".join(
                f"{k}={pct(v, 0.5):.2f}" for k, v in stages.items() if k not in ("total", "model")
            )
        )

        # -- recording: the same turns with and without the usage meter on the model -------
        # Alternating blocks of 10 turns, so drift in machine load falls on both sides; the
        # meter's background writes land in the turns that follow, so they are counted.
        with_meter: list[float] = []
        without: list[float] = []
        observe = runtime.usage.observe
        for block in range(max(2, args.turns // 5)):
            recording = block % 2 == 0
            if recording and observe not in model.observers:
                model.observers.append(observe)
            elif not recording and observe in model.observers:
                model.observers.remove(observe)
            for i in range(10):
                result = await runtime.handle_message(_msg(rng, "recording", block * 10 + i))
                (with_meter if recording else without).append(result.timings["overhead"] * 1000)
        if observe not in model.observers:
            model.observers.append(observe)
        await runtime.usage.flush()
        added = pct(with_meter, 0.5) - pct(without, 0.5)
        print("\nrecording model calls (usage records stored in the same database):")
        print(
            f"  overhead p50 with {pct(with_meter, 0.5):.2f} ms, without {pct(without, 0.5):.2f} "
            f"ms -> {added:+.3f} ms per turn (goal: < 0.3 ms); "
            f"{runtime.usage.written} records written"
        )

        # -- throughput: many rooms at once --------------------------------------------------
        per_room = args.per_room

        async def room(r: int) -> None:
            for i in range(per_room):
                await runtime.handle_message(_msg(rng, f"room-{r}", i, group=(i % 2 == 1)))

        began = time.perf_counter()
        await asyncio.gather(*(room(r) for r in range(args.rooms)))
        elapsed = time.perf_counter() - began
        await runtime.wait_idle()
        turns = args.rooms * per_room
        print(
            f"\nthroughput: {args.rooms} rooms x {per_room} turns = {turns} turns in "
            f"{elapsed:.2f} s -> {turns / elapsed:.0f} turns/s   (goal: >= 100 turns/s)"
        )
        print("  (half the turns are group messages decided by the small model)")
        await runtime.aclose()
        await store.close()


def _msg(rng: random.Random, room: str, i: int, *, group: bool = False) -> IncomingMessage:
    return IncomingMessage(
        text=sentence(rng),
        source="discord" if group else "terminal",
        room_key=room,
        sender_key=f"user-{room}",
        sender_name=f"User {room}",
        message_key=f"{room}-{i}",
        is_direct=not group,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2k memories, fewer turns")
    parser.add_argument("--memories", type=int, default=None)
    parser.add_argument("--turns", type=int, default=None)
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--per-room", type=int, default=None)
    parser.add_argument(
        "--database-url",
        default=None,
        help="an EMPTY database to use instead of a temporary SQLite file (e.g. PostgreSQL)",
    )
    parser.add_argument(
        "--analyze",
        action="store_true",
        help="run SQLite ANALYZE after preloading (query-planner statistics)",
    )
    parser.add_argument(
        "--metrics", action="store_true", help="with the Prometheus metrics on (issue 12)"
    )
    args = parser.parse_args()
    args.memories = args.memories or (2000 if args.quick else 10_000)
    args.turns = args.turns or (60 if args.quick else 300)
    args.per_room = args.per_room or (2 if args.quick else 5)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
