"""A real Redis for the tests: Debian's `redis-server` on a free port in a temp dir, or the
server at CARRIER_TEST_REDIS_URL. No persistence unless asked (a restart test passes
`appendonly=True` and restarts the same directory)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server") or (
    "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    url: str
    directory: Path | None = None
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    appendonly: bool = False

    def start(self) -> RedisServer:
        assert REDIS_SERVER and self.directory is not None
        args = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--daemonize",
            "no",
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError((self.directory / "redis.log").read_text())
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def start_redis(directory: Path, *, appendonly: bool = False) -> RedisServer:
    """A fresh redis-server in `directory` (skips the test where there is none)."""
    given = os.environ.get("CARRIER_TEST_REDIS_URL")
    if given:
        return RedisServer(url=given)
    if REDIS_SERVER is None:
        pytest.skip("redis-server not found: `apt-get install redis-server` (as .ci/run does)")
    port = free_port()
    server = RedisServer(
        url=f"redis://127.0.0.1:{port}/0", directory=directory, port=port, appendonly=appendonly
    )
    return server.start()
