"""Knowledge ingest: chunking throughput by kind of text, then whole files into SQLite.

    .venv/bin/python bench/ingest_bench.py           # 1, 2, 4 and 10 MB; 20k memories
    .venv/bin/python bench/ingest_bench.py --quick   # 1 and 2 MB; 10k memories

Chunking must be linear in the input for any text (issue 15, goal 6): the bench prints
MB/s for prose (paragraphs and sentences), for a log without blank lines or sentence ends
(words only), and for a one-line file without spaces (minified JSON), at growing sizes.
A linear chunker shows the same MB/s at every size of one kind; the quadratic one this
replaced fell from 0.15 MB/s at 1 MB towards zero (a 1.17 MB log took 7.97 s).
Different kinds differ in tokens per byte (JSON: about one token per 1.5 bytes, prose
one per 6), so compare sizes within a kind, not kinds with each other.

Then ingest with local embeddings (goal 5): short texts embedded with the bundled
wordllama model and stored, by Carrier (`MemoryStore.add_many` in overlapped batches of
1,000, as `carrier memory import` and ingest store them: content hashes, metadata, the
duplicate check against what is stored) and by a peer doing the least that can be called
the same job: the same wordllama embedding (wordllama's own `embed`), then `INSERT` into a
sqlite-vec `vec0` table plus a text table, through apsw (this Python's sqlite3 cannot load
extensions). A second peer line gives the peer Carrier's own embedding path (the same
vectors bit for bit, about half the CPU of wordllama's `embed`), so the figures show how
much of the ratio is the embedding and how much the storing. Runs alternate, each into a
fresh database; medians and the ratios are printed. Without apsw and
sqlite-vec (`pip install apsw sqlite-vec`) the peer is skipped with a line saying so.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MB = 1_000_000


def prose(size: int) -> str:
    sentence = "The keeper of the lighthouse counted ships until the fog came in. "
    paragraph = sentence * 6
    return ("\n\n".join([paragraph] * (size // (len(paragraph) + 2) + 1)))[:size]


def log_words(size: int) -> str:
    line = "worker-3 GET /api/v1/items status 200 bytes 5120 took 12ms cache hit "
    return (line * (size // len(line) + 1))[:size]


def minified_json(size: int) -> str:
    item = {"id": 1234, "name": "widget", "tags": ["a", "b"], "price": 9.5}
    one = json.dumps(item, separators=(",", ":"))
    return "[" + ",".join([one] * (size // (len(one) + 1) + 1))[: size - 2] + "]"


KINDS: dict[str, Callable[[int], str]] = {
    "prose": prose,
    "log (words, no sentence ends)": log_words,
    "minified JSON (one line)": minified_json,
}


def chunk_rate(text: str, runs: int) -> tuple[float, int]:
    from carrier_cli.memory.knowledge import chunk_text

    samples = []
    chunks = 0
    for _ in range(runs):
        start = time.perf_counter()
        chunks = len(chunk_text(text))
        samples.append(time.perf_counter() - start)
    return len(text) / MB / statistics.median(samples), chunks


def texts_for(n: int, seed: int) -> list[str]:
    import random

    words = [
        "memory",
        "agent",
        "harbor",
        "lantern",
        "river",
        "signal",
        "garden",
        "copper",
        "winter",
        "orbit",
        "quiet",
        "market",
        "thunder",
        "pocket",
        "silver",
        "meadow",
        "engine",
        "candle",
        "border",
        "velvet",
    ]
    rnd = random.Random(seed)
    return [f"{' '.join(rnd.choices(words, k=rnd.randint(6, 14)))} #{seed}-{i}" for i in range(n)]


def carrier_ingest(texts: list[str], folder: Path, *, dedupe: bool) -> tuple[float, float]:
    import asyncio

    from carrier_cli.memory.overlap import Overlapped
    from carrier_cli.memory.store import MemoryStore
    from carrier_cli.memory.types import Memory, MemoryKind

    async def run() -> tuple[float, float]:
        store = await MemoryStore.open(f"sqlite:///{folder / 'carrier.db'}")
        try:
            agent = await store.ensure_agent("bench")
            await store.embed_texts(["load the model"])  # model load is not ingest
            start, cpu = time.perf_counter(), time.process_time()
            async with store.bulk_load(rows=len(texts)), Overlapped() as pipeline:
                for i in range(0, len(texts), 1000):
                    batch = [
                        Memory(
                            agent_id=agent,
                            kind=MemoryKind.FACT,
                            content={"text": t},
                            metadata={"source": "bench", "line": i + j},
                        )
                        for j, t in enumerate(texts[i : i + 1000])
                    ]
                    await pipeline.submit(store.add_many(batch, dedupe=dedupe))
            return time.perf_counter() - start, time.process_time() - cpu
        finally:
            await store.close()

    return asyncio.run(run())


def peer_available() -> str | None:
    try:
        import apsw
        import sqlite_vec

        conn = apsw.Connection(":memory:")
        conn.enable_load_extension(True)
        conn.load_extension(sqlite_vec.loadable_path())
    except Exception as exc:  # ImportError, or an extension that does not load
        return f"{type(exc).__name__}: {exc}"
    return None


def peer_ingest(
    texts: list[str], folder: Path, *, carriers_embedder: bool = False
) -> tuple[float, float]:
    import apsw
    import numpy as np
    import sqlite_vec

    from carrier_cli.llm.embeddings import LocalEmbedder, load_through_wordllama

    # wordllama loaded and called as a plain script would (`WordLlama.load`, its own
    # `embed`): the peer of goal 5. Not `load_wordllama()`: Carrier reads the model's
    # files itself now, and that model's `embed` is Carrier's pooling. Carrier's
    # LocalEmbedder reaches the same vectors bit for bit by a cheaper path;
    # `carriers_embedder` gives the peer that path too, a second line that shows how
    # much of the ratio is the embedding and how much the storing.
    embed = LocalEmbedder().embed_sync if carriers_embedder else load_through_wordllama().embed
    conn = apsw.Connection(str(folder / "peer.db"))
    conn.enable_load_extension(True)
    conn.load_extension(sqlite_vec.loadable_path())
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE docs(id INTEGER PRIMARY KEY, text TEXT)")
    conn.execute("CREATE VIRTUAL TABLE vecs USING vec0(embedding float[256])")
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(texts), 1000):
        batch = texts[i : i + 1000]
        vectors = np.asarray(embed(batch), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        with conn:
            conn.executemany(
                "INSERT INTO docs(id, text) VALUES (?, ?)",
                [(i + j + 1, t) for j, t in enumerate(batch)],
            )
            conn.executemany(
                "INSERT INTO vecs(rowid, embedding) VALUES (?, ?)",
                [(i + j + 1, v.tobytes()) for j, v in enumerate(vectors)],
            )
    elapsed = time.perf_counter() - start, time.process_time() - cpu
    conn.close()
    return elapsed


def ingest_rates(n: int, rounds: int) -> None:
    import tempfile

    print(f"ingest with local embeddings: {n:,} texts, {rounds} alternating rounds")
    _print_load("before")
    why_not = peer_available()
    wall: dict[str, list[float]] = {
        "carrier": [],
        "carrier, dedupe": [],
        "peer": [],
        "peer with Carrier's embedder": [],
    }
    cpu: dict[str, list[float]] = {name: [] for name in wall}

    def record(label: str, figures: tuple[float, float]) -> None:
        wall[label].append(n / figures[0])
        cpu[label].append(figures[1] / n * 1e6)

    for r in range(rounds):
        texts = texts_for(n, seed=r)
        with tempfile.TemporaryDirectory() as tmp:
            record("carrier", carrier_ingest(texts, Path(tmp), dedupe=False))
        with tempfile.TemporaryDirectory() as tmp:
            record("carrier, dedupe", carrier_ingest(texts, Path(tmp), dedupe=True))
        if why_not is None:
            with tempfile.TemporaryDirectory() as tmp:
                record("peer", peer_ingest(texts, Path(tmp)))
            with tempfile.TemporaryDirectory() as tmp:
                record(
                    "peer with Carrier's embedder",
                    peer_ingest(texts, Path(tmp), carriers_embedder=True),
                )
    for label, rates in wall.items():
        if rates:
            print(
                f"  {label:34} median {statistics.median(rates):8,.0f} memories/s"
                f"   CPU {statistics.median(cpu[label]):6.1f} us a memory (all threads)"
            )
    if why_not is None:
        peer, peer_cpu = statistics.median(wall["peer"]), statistics.median(cpu["peer"])
        for label in ("carrier", "carrier, dedupe"):
            ratio = statistics.median(wall[label]) / peer
            cpu_ratio = peer_cpu / statistics.median(cpu[label])
            print(
                f"  {label:34} / peer: {ratio:.2f}x by rate, {cpu_ratio:.2f}x by CPU (goal >= 1.0)"
            )
        fast = statistics.median(wall["peer with Carrier's embedder"])
        fast_cpu = statistics.median(cpu["peer with Carrier's embedder"])
        print(
            f"  {'carrier':34} / peer with Carrier's embedder: "
            f"{statistics.median(wall['carrier']) / fast:.2f}x by rate, "
            f"{fast_cpu / statistics.median(cpu['carrier']):.2f}x by CPU (the storing alone)"
        )
    else:
        print(f"  peer (sqlite-vec + wordllama) skipped: it does not load here ({why_not})")
    _print_load("after")


def _print_load(when: str) -> None:
    """The load average beside the figures: on a shared machine the rates move with it
    (CPU a memory moves less), and only a ratio from one run means much."""
    import os

    one, five, fifteen = os.getloadavg()
    print(f"  load average {when}: {one:.2f}, {five:.2f}, {fifteen:.2f} ({os.cpu_count()} CPUs)")


def main() -> None:
    import logging

    logging.getLogger("alembic").setLevel(logging.WARNING)  # each fresh database migrates
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 and 2 MB, 10k memories")
    parser.add_argument("--skip-chunking", action="store_true", help="only the ingest rates")
    args = parser.parse_args()
    sizes = [1, 2] if args.quick else [1, 2, 4, 10]
    runs = 3
    if not args.skip_chunking:
        chunking(sizes, runs)
    ingest_rates(10_000 if args.quick else 20_000, rounds=3)


def chunking(sizes: list[int], runs: int) -> None:
    print(f"chunking (median of {runs}; MB/s should not fall as the size grows)")
    for kind, make in KINDS.items():
        rates = []
        for size in sizes:
            rate, chunks = chunk_rate(make(size * MB), runs)
            rates.append(rate)
            print(f"  {kind:32} {size:3} MB  {rate:6.2f} MB/s  {chunks:6} chunks")
        print(f"  {kind:32} largest/smallest rate: {rates[-1] / rates[0]:.2f}x (1.0: linear)")


if __name__ == "__main__":
    main()
