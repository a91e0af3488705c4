"""Median wall time of `carrier --help` over cold runs, beside `python -c pass`.

Goal: `carrier --help` median under 150 ms. Each run is a fresh interpreter, as when an
operator types the command; the first run warms the OS file cache and is discarded.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time


def measure(cmd: list[str], runs: int) -> list[float]:
    subprocess.run(cmd, capture_output=True, check=False)  # warm the file cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="10 runs")
    args = parser.parse_args()
    runs = 10 if args.quick else args.runs
    carrier = shutil.which("carrier") or f"{sys.prefix}/bin/carrier"
    rows = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("carrier --help", [carrier, "--help"]),
        ("carrier memory --help", [carrier, "memory", "--help"]),
    ]
    print(f"{'command':28} {'median ms':>10} {'p90 ms':>8} {'min ms':>8}  (runs={runs})")
    for label, cmd in rows:
        try:
            t = measure(cmd, runs)
        except subprocess.CalledProcessError:
            print(f"{label:28} {'failed':>10}")
            continue
        p90 = statistics.quantiles(t, n=10)[-1]
        print(f"{label:28} {statistics.median(t):10.1f} {p90:8.1f} {min(t):8.1f}")
    print("goal: carrier --help median < 150 ms")


if __name__ == "__main__":
    main()
