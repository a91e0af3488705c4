"""Character loading cost: how long `load_character` takes per file (parse with positions,
ElizaOS conversion, unknown-key/secret passes, pydantic validation), and `extends` chains.

Loading happens on every `carrier chat`/`run` start and for every `validate`, so it should
stay in the low milliseconds even for large ElizaOS files (trump.character.json is 23 kB).

    .venv/bin/python bench/character_bench.py           # 200 loads per file
    .venv/bin/python bench/character_bench.py --quick   # 20 loads per file
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FIXTURES = ROOT / "tests" / "character" / "fixtures" / "eliza-characters"


def timed(fn: object, runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 loads per file instead of 200")
    args = parser.parse_args()
    runs = 20 if args.quick else 200

    tmp = Path(tempfile.mkdtemp(prefix="carrier-char-bench-"))
    os.environ["CARRIER_HOME"] = str(tmp / "home")
    os.chdir(tmp)

    start = time.perf_counter()
    from carrier_cli.character import dump_character_yaml, import_eliza, load_character

    import_ms = (time.perf_counter() - start) * 1000
    print(f"import carrier_cli.character: {import_ms:.0f} ms")

    files = sorted((ROOT / "characters").glob("*.yaml")) + sorted(FIXTURES.glob("*.json"))
    # An `extends` chain five deep over the default character.
    previous = str(ROOT / "characters" / "carrier.yaml")
    for depth in range(5):
        link = tmp / f"chain{depth}.yaml"
        link.write_text(
            f"extends: {json.dumps(previous)}\nname: Chain {depth}\ntopics: [level {depth}]\n"
        )
        previous = str(link)
    files.append(Path(previous))
    big = tmp / "trump.yaml"
    big.write_text(dump_character_yaml(import_eliza(FIXTURES / "trump.character.json")[0]))
    files.append(big)

    print(f"{'file':36} {'size':>8} {'median':>9} {'p95':>9}   ({runs} loads each)")
    for path in files:
        median, p95 = timed(lambda p=path: load_character(p), runs)
        size = path.stat().st_size
        label = path.name if path.parent != tmp else f"{path.name} (tmp)"
        print(f"{label:36} {size / 1024:6.1f}kB {median:7.2f}ms {p95:7.2f}ms")


if __name__ == "__main__":
    main()
