"""Knowledge ingest: chunking throughput by kind of text, then whole files into SQLite.

    .venv/bin/python bench/ingest_bench.py           # 1, 2, 4 and 10 MB inputs
    .venv/bin/python bench/ingest_bench.py --quick   # 1 and 2 MB

Chunking must be linear in the input for any text (issue 15, goal 6): the bench prints
MB/s for prose (paragraphs and sentences), for a log without blank lines or sentence ends
(words only), and for a one-line file without spaces (minified JSON), at growing sizes.
A linear chunker shows the same MB/s at every size of one kind; the quadratic one this
replaced fell from 0.15 MB/s at 1 MB towards zero (a 1.17 MB log took 7.97 s).
Different kinds differ in tokens per byte (JSON: about one token per 1.5 bytes, prose
one per 6), so compare sizes within a kind, not kinds with each other.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 and 2 MB only")
    args = parser.parse_args()
    sizes = [1, 2] if args.quick else [1, 2, 4, 10]
    runs = 3
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
