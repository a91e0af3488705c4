"""`carrier chat` as an operator feels it, against the fake model server (no real model):

* start-up: from launching `printf 'hi' | carrier chat` to its first reply line;
* piped turns: per-message time in one long piped session (prompt composition, memory
  writes and search, the streamed HTTP call, printing), excluding start-up;
* terminal: on a pseudo-terminal, from pressing Enter to the first reply text on screen.

Start-up sends `hi` each time; from the second start on, that message's vector is found in
the database by its content hash and the local embedding model is never loaded. A new
message (what an operator sends) needs the model before its memory search: `--novel`
measures that start. Its medians are noisy at load 5-7 (three 5-6 round A/B runs of
h7/chatcpu's embedder fix gave 0.83x, 0.91x and 1.14x); a trace of the first reply is
steadier: the embedding after the model's load took 125-130 ms CPU before, 1 ms after.

Start-up is measured beside Simon Willison's `llm` (`llm -m fake hi`) against the same fake
server when `llm` is installed (issue 15's peer: goal <= 1.0x), runs alternating so both see
the same load; each line gives the median wall time and the median CPU time (user + system
of the process up to its first line, read from /proc when the line arrives, and of the
whole process including its shutdown; steadier than the wall on a loaded machine), and the
ratios. Carrier's own modules are byte-compiled first (PYTHONDONTWRITEBYTECODE may be set,
and compiling ~1,300 modules on every start would cost Carrier ~0.5 s that `llm`, installed
with its bytecode, never pays).

    .venv/bin/python bench/chat_bench.py           # 5 starts, 60 piped turns, 20 pty turns
    .venv/bin/python bench/chat_bench.py --quick   # 2 starts, 10 piped turns, 5 pty turns
    .venv/bin/python bench/chat_bench.py --startup-only --starts 9
    .venv/bin/python bench/chat_bench.py --startup-only --attribute   # + the imports' CPU
    .venv/bin/python bench/chat_bench.py --startup-only --phases      # + where Carrier's goes
    .venv/bin/python bench/chat_bench.py --startup-only --novel  # a new message each start

`--attribute` adds the CPU of the imports that decide the start-up, each measured in fresh
interpreters after what Carrier imports before it (median of `--starts` runs): `openai` and
numpy, which `llm` pays too (sqlite_utils imports numpy when it is installed), SQLAlchemy
and the schema, which only Carrier pays, and `llm`'s own modules, which only `llm` pays.
Start-up is ~90% imports (cProfile of a whole start: 1.48 of 1.61 s), so these lines say
how much of the gap to `llm` each one is. `--phases` adds Carrier's start-up CPU phase by
phase (bench/chat_phases.py), where each import lands in the step that first needs it.

Where the gap stood on 2026-12-07 (quiet machine, load 0.5-1.5, nothing else running;
medians of 9): CPU to the first reply was 1100-1150 ms for Carrier and 920-1010 ms for `llm`
(1.12-1.25x). The biggest phase that only Carrier pays is "import store (SQLAlchemy)" at
189 ms, more than the whole gap. openai (441 ms in its phase) and numpy (86 ms) are paid
by both. Carrier's other steps come to ~290 ms: arguments and settings 73, turn 48,
import CLI 36, runtime 33, character 30, terminal client 28, open store 26, agent row 11,
plugins 4. `llm`'s own modules come to 93 ms. Part of Carrier's phases is pydantic and
asyncio, which `llm` imports too (through openai), so they move cost rather than add it.
A start without SQLAlchemy would take a SQLite layer on plain sqlite3 beside the
SQLAlchemy one.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
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


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_so_far(pid: int) -> float:
    """CPU seconds (user + system, every thread) a live process has used; NaN off Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def _first_line(
    args: list[str], env: dict[str, str], stdin: str | None = None
) -> tuple[float, float, float]:
    """Seconds from launch to the first line of output, the process's CPU seconds up to
    that line, and its CPU seconds in all (with its shutdown)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        args,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    assert proc.stdout is not None
    if stdin is not None:
        assert proc.stdin is not None
        proc.stdin.write(stdin)
        proc.stdin.close()
    line = proc.stdout.readline()
    wall = time.perf_counter() - start
    cpu_first = _cpu_so_far(proc.pid)
    proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if not line.strip() or proc.returncode:
        raise SystemExit(f"{args[:4]} failed (exit {proc.returncode}, first line {line!r})")
    return wall, cpu_first, usage.ru_utime + usage.ru_stime


def compile_tree() -> None:
    """Byte-compile Carrier (see the module docstring): a no-op when it is up to date."""
    import compileall

    compileall.compile_dir(ROOT / "carrier_cli", quiet=1)


def find_llm() -> str | None:
    """The `llm` command: beside this Python (a venv) or on PATH."""
    beside = Path(sys.executable).with_name("llm")
    return str(beside) if beside.exists() else shutil.which("llm")


def llm_env(home: Path, url: str) -> dict[str, str]:
    """`llm` configured for the fake server: an extra OpenAI-compatible model `fake`."""
    config = home / "llm"
    config.mkdir(parents=True, exist_ok=True)
    (config / "extra-openai-models.yaml").write_text(
        f"- model_id: fake\n  model_name: gpt-4o-mini\n  api_base: {url}/v1\n  api_key_name: fake\n"
    )
    (config / "keys.json").write_text('{"fake": "sk-bench-0123456789abcdef"}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLM_"))}
    env["LLM_USER_PATH"] = str(config)
    return env


Sample = tuple[float, float, float]  # wall to the first line, CPU to it, CPU in all


def startup(
    env: dict[str, str], runs: int, llm: tuple[str, dict[str, str]] | None, novel: bool = False
) -> tuple[list[Sample], list[Sample]]:
    """Carrier's start-up samples and, alternating with them, llm's. `novel`: each start
    sends a message never sent before, so its memory search loads the local embedding
    model (with `hi` every time, the stored message's vector is found by its hash)."""
    carrier: list[Sample] = []
    peer: list[Sample] = []
    for i in range(runs):
        message = f"hi, this is start {i} at {time.time_ns()}" if novel else "hi"
        carrier.append(_first_line(_carrier("--room", f"start{i}"), env, stdin=message + "\n"))
        if llm is not None:
            peer.append(_first_line([llm[0], "-m", "fake", "hi"], llm[1]))
    return carrier, peer


def _report_startup(label: str, samples: list[Sample]) -> tuple[float, float, float]:
    wall, cpu_first, cpu = (statistics.median(s[i] for s in samples) * 1000 for i in range(3))
    print(
        f"{label:42} median {wall:7.0f} ms   CPU to it {cpu_first:7.0f} ms   "
        f"CPU in all {cpu:7.0f} ms   (n={len(samples)})"
    )
    return wall, cpu_first, cpu


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


# (label, imported first and not counted, measured): Carrier's order is the CLI, then the
# store (numpy, SQLAlchemy, the schema), then the chat model (openai). `llm` imports numpy
# too: sqlite_utils imports it whenever it is installed, as it is beside Carrier.
ATTRIBUTED = (
    ("openai (llm too)", "import carrier_cli.memory.store", "import openai"),
    (
        # Core and Carrier's own async engine: no ORM since memory/async_engine.py.
        "SQLAlchemy+schema (Carrier)",
        "import numpy",
        "import carrier_cli.memory.async_engine, carrier_cli.memory.schema",
    ),
    ("numpy (llm too, via sqlite_utils)", "", "import numpy"),
)
# What only `llm` pays beside openai and numpy (its CLI, click, pluggy, sqlite_utils); run
# in the Python that has llm, when that is this one.
LLM_ONLY = ("llm, click, sqlite_utils (llm)", "import numpy, openai", "import llm.cli")

IMPORT_CPU = """
import time
{before}
start = time.process_time()
{measured}
print(time.process_time() - start)
"""


def import_cpu(env: dict[str, str], before: str, measured: str, runs: int) -> float:
    """Median CPU milliseconds of `measured` in fresh interpreters, after `before`."""
    code = IMPORT_CPU.format(before=before, measured=measured)
    samples = [
        float(
            subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(runs)
    ]
    return statistics.median(samples) * 1000


def report_imports(env: dict[str, str], runs: int) -> None:
    attributed = list(ATTRIBUTED)
    if importlib.util.find_spec("llm") is not None:
        attributed.append(LLM_ONLY)
    for label, before, measured in attributed:
        cpu = import_cpu(env, before, measured, runs)
        print(f"{'  import ' + label:42} CPU {cpu:5.0f} ms   (n={runs})")


def report_phases(env: dict[str, str], runs: int) -> None:
    """Median CPU of each start-up phase (bench/chat_phases.py), in the order they ran."""
    script = str(Path(__file__).with_name("chat_phases.py"))
    runs_phases: list[dict[str, float]] = []
    for i in range(runs):
        done = subprocess.run(
            [sys.executable, script, "--room", f"phases{i}"],
            input="hi\n",
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        line = next(x for x in done.stderr.splitlines() if x.startswith("PHASES "))
        runs_phases.append(json.loads(line.removeprefix("PHASES ")))
    for name in runs_phases[0]:
        cpu = statistics.median(p.get(name, 0.0) for p in runs_phases)
        print(f"{'  phase: ' + name:42} CPU {cpu:5.0f} ms   (n={runs})")


def _report(label: str, samples: list[float]) -> None:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[max(0, math.ceil(len(ms) * 0.95) - 1)]
    print(f"{label:42} median {statistics.median(ms):7.0f} ms   p95 {p95:7.0f} ms   (n={len(ms)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run")
    parser.add_argument("--startup-only", action="store_true", help="only the start-up")
    parser.add_argument("--starts", type=int, help="start-up runs of each (default 5)")
    parser.add_argument(
        "--novel",
        action="store_true",
        help="each start sends a new message (its memory search loads the embedding model)",
    )
    parser.add_argument(
        "--attribute", action="store_true", help="also the CPU of the imports that decide it"
    )
    parser.add_argument(
        "--phases", action="store_true", help="also Carrier's start-up CPU phase by phase"
    )
    args = parser.parse_args()
    starts, turns, pty_turns = (2, 10, 5) if args.quick else (5, 60, 20)
    starts = args.starts or starts

    from tests.support.model_server import start_server_process

    server = start_server_process()
    try:
        home = Path(tempfile.mkdtemp(prefix="carrier-chat-bench-"))
        env = _env(home / "home", server.url)
        os.chdir(home)
        llm = find_llm()
        peer = (llm, llm_env(home, server.url)) if llm else None
        compile_tree()
        carrier, others = startup(env, starts, peer, args.novel)
        wall, cpu_first, cpu = _report_startup("start-up to first piped reply", carrier)
        if others:
            peer_wall, peer_first, peer_cpu = _report_startup(
                "llm -m <same fake server> hi", others
            )
            print(
                f"{'  carrier / llm':42} wall {wall / peer_wall:.2f}x   CPU to it "
                f"{cpu_first / peer_first:.2f}x   CPU in all {cpu / peer_cpu:.2f}x   "
                "(goal <= 1.0x)"
            )
        else:
            print("  llm is not installed: its start-up is skipped (pip install llm)")
        if args.attribute:
            report_imports(env, starts)
        if args.phases:
            report_phases(env, starts)
        print(f"{'  load average (1, 5, 15 min)':42} {os.getloadavg()}")
        if args.startup_only:
            return
        _report("piped turn (one session)", piped_turns(env, turns))
        _report("terminal: Enter to first reply text", pty_first_text(env, pty_turns))
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)


if __name__ == "__main__":
    main()
