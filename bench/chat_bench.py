"""`carrier chat` as an operator feels it, against the fake model server (no real model):

* start-up: from launching `printf 'hi' | carrier chat` to its first reply line;
* piped turns: per-message time in one long piped session (prompt composition, memory
  writes and search, the streamed HTTP call, printing), excluding start-up;
* terminal: on a pseudo-terminal, from pressing Enter to the first reply text on screen.

    .venv/bin/python bench/chat_bench.py           # 5 starts, 60 piped turns, 20 pty turns
    .venv/bin/python bench/chat_bench.py --quick   # 2 starts, 10 piped turns, 5 pty turns
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _env(home: Path, url: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "DATABASE_URL"):
        env.pop(name, None)
    env.update(
        {
            "CARRIER_HOME": str(home),
            "CARRIER_KEYRING": "file",
            "OPENAI_BASE_URL": url + "/v1",
            "OPENAI_API_KEY": "sk-bench-0123456789abcdef",
            "PYTHONPATH": str(ROOT),
            "TERM": "xterm-256color",
        }
    )
    return env


def _carrier(*args: str) -> list[str]:
    return [sys.executable, "-m", "carrier_cli", "chat", *args]


def startup(env: dict[str, str], runs: int) -> list[float]:
    samples = []
    for i in range(runs):
        start = time.perf_counter()
        proc = subprocess.Popen(
            _carrier("--room", f"start{i}"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("hi\n")
        proc.stdin.close()
        proc.stdout.readline()
        samples.append(time.perf_counter() - start)
        proc.wait(timeout=60)
    return samples


def piped_turns(env: dict[str, str], turns: int) -> list[float]:
    proc = subprocess.Popen(
        _carrier("--room", "piped"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
        bufsize=1,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("warm up\n")
    proc.stdin.flush()
    proc.stdout.readline()
    samples = []
    for i in range(turns):
        start = time.perf_counter()
        proc.stdin.write(f"message number {i} about topic {i % 7}\n")
        proc.stdin.flush()
        proc.stdout.readline()
        samples.append(time.perf_counter() - start)
    proc.stdin.close()
    proc.wait(timeout=60)
    return samples


def pty_first_text(env: dict[str, str], turns: int) -> list[float]:
    import pexpect

    child = pexpect.spawn(
        sys.executable,
        _carrier("--room", "pty")[1:],
        env=env,
        encoding="utf-8",
        timeout=60,
        dimensions=(40, 100),
    )
    child.expect("you> ")
    samples = []
    for i in range(turns):
        child.sendline(f"ping {i}")
        start = time.perf_counter()
        child.expect("Echo:")
        samples.append(time.perf_counter() - start)
        child.expect("you> ")
    child.sendeof()
    child.expect(pexpect.EOF)
    return samples


def _report(label: str, samples: list[float]) -> None:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[max(0, math.ceil(len(ms) * 0.95) - 1)]
    print(f"{label:42} median {statistics.median(ms):7.0f} ms   p95 {p95:7.0f} ms   (n={len(ms)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run")
    args = parser.parse_args()
    starts, turns, pty_turns = (2, 10, 5) if args.quick else (5, 60, 20)

    from tests.support.model_server import start_server_process

    server = start_server_process()
    try:
        home = Path(tempfile.mkdtemp(prefix="carrier-chat-bench-"))
        env = _env(home / "home", server.url)
        os.chdir(home)
        _report("start-up to first piped reply", startup(env, starts))
        _report("piped turn (one session)", piped_turns(env, turns))
        _report("terminal: Enter to first reply text", pty_first_text(env, pty_turns))
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)


if __name__ == "__main__":
    main()
