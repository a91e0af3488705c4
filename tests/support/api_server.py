"""A real `carrier serve` process (uvicorn) for the API tests, against the fake model server.

`start_serve(tmp, model_url)` starts it on a free port (`--port 0`; the port is read from
its banner) in its own CARRIER_HOME, and returns a `ServeProcess` with its URL and the
admin key it printed on first start. Drive it with `httpx2` (the HTTP client the venv has;
`import httpx2 as httpx`) and the `websockets` library.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"Carrier API listening on (http://\S+)")
_KEY = re.compile(r"^\s+(crr_[A-Za-z0-9_-]{20,})\s*$")


def write_character(path: Path, name: str = "Carrier", extra: str = "") -> Path:
    path.write_text(
        f"name: {name}\nusername: {name.lower()}\nbio: [A test character.]\n{extra}",
        encoding="utf-8",
    )
    return path


@dataclass
class ServeProcess:
    process: subprocess.Popen[str]
    home: Path
    stdout_lines: list[str] = field(default_factory=list)
    stderr_lines: list[str] = field(default_factory=list)
    readers: list[threading.Thread] = field(default_factory=list)
    url: str = ""
    key: str | None = None  # the first admin key, when this start created it

    @property
    def stderr(self) -> str:
        return "\n".join(self.stderr_lines)

    @property
    def stdout(self) -> str:
        return "\n".join(self.stdout_lines)

    def _pump(self) -> None:
        def read(stream: Any, into: list[str]) -> None:
            for line in stream:
                into.append(line.rstrip("\n"))

        for stream, into in (
            (self.process.stdout, self.stdout_lines),
            (self.process.stderr, self.stderr_lines),
        ):
            reader = threading.Thread(target=read, args=(stream, into), daemon=True)
            reader.start()
            self.readers.append(reader)

    def wait_ready(self, timeout: float = 60) -> ServeProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.stdout_lines):
                found = _LISTENING.search(line)
                if found:
                    self.url = found.group(1)
            if self.url:
                time.sleep(0.05)  # the banner's key lines follow the URL line
                for line in list(self.stdout_lines):
                    key = _KEY.match(line)
                    if key:
                        self.key = key.group(1)
                return self
            if self.process.poll() is not None:
                self._drain()
                raise AssertionError(
                    f"carrier serve exited {self.process.returncode} before listening:\n"
                    + self.stdout
                    + "\n"
                    + self.stderr
                )
            time.sleep(0.05)
        raise AssertionError("carrier serve did not print its banner:\n" + self.stderr)

    def _drain(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        for reader in self.readers:
            reader.join(max(0.0, deadline - time.monotonic()))

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    def terminate(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise
        self._drain()
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._drain()


def serve_env(home: Path, model_url: str, env: dict[str, str] | None = None) -> dict[str, str]:
    full = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CARRIER_", "DISCORD_", "OPENAI_", "ANTHROPIC_", "INSTAGRAM_"))
    }
    full.update(
        {
            "CARRIER_HOME": str(home),
            "CARRIER_KEYRING": "file",
            "OPENAI_BASE_URL": model_url.rstrip("/") + "/v1",
            "OPENAI_API_KEY": "sk-test-api-0123456789",
            "CARRIER_MAX_RETRIES": "0",
            "CARRIER_SHUTDOWN_GRACE": "5",
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        }
    )
    return full


def start_serve(
    home: Path,
    model_url: str,
    *,
    characters: list[Path] | None = None,
    args: list[str] | None = None,
    env: dict[str, str] | None = None,
    wait: bool = True,
) -> ServeProcess:
    """`carrier serve --port 0` in CARRIER_HOME=`home` (created if missing)."""
    home.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "carrier_cli", "serve", "--port", "0", *(args or [])]
    for character in characters or []:
        command += ["--character", str(character)]
    process = subprocess.Popen(
        command,
        cwd=home.parent,
        env=serve_env(home, model_url, env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    served = ServeProcess(process, home)
    served._pump()
    return served.wait_ready() if wait else served
