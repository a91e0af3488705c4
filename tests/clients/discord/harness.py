"""Starting the real `carrier run --client discord` process against the fakes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.fake_discord import FakeDiscordServer

ROOT = Path(__file__).resolve().parents[3]


def yaml_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def write_character(path: Path, name: str = "Carrier", **discord: object) -> Path:
    lines = [f"name: {name}", f"username: {name.lower()}", "bio: [A test bot.]"]
    if discord:
        lines.append("clients:")
        lines.append("  discord:")
        lines.extend(f"    {key}: {yaml_value(value)}" for key, value in discord.items())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class CarrierProcess:
    process: subprocess.Popen[str]
    stdout_lines: list[str] = field(default_factory=list)
    stderr_lines: list[str] = field(default_factory=list)
    home: Path | None = None
    readers: list[threading.Thread] = field(default_factory=list)

    def message_memories(self) -> list[dict[str, Any]]:
        """Contents of the stored message memories (read straight from the SQLite file)."""
        import json
        import sqlite3

        assert self.home is not None
        db = sqlite3.connect(self.home / "data" / "carrier.db", timeout=10)
        try:
            rows = db.execute("SELECT content FROM memories WHERE kind = 'message'").fetchall()
        finally:
            db.close()
        return [json.loads(row[0]) if isinstance(row[0], str) else row[0] for row in rows]

    def _pump(self) -> None:
        assert self.process.stdout is not None and self.process.stderr is not None

        def read(stream: object, into: list[str]) -> None:
            for line in stream:  # type: ignore[attr-defined]
                into.append(line.rstrip("\n"))

        for stream, into in (
            (self.process.stdout, self.stdout_lines),
            (self.process.stderr, self.stderr_lines),
        ):
            reader = threading.Thread(target=read, args=(stream, into), daemon=True)
            reader.start()
            self.readers.append(reader)

    def _drain(self, timeout: float = 30) -> None:
        """Once the process has exited: wait until its output has been read to the end (a
        fixed pause was too short for the reader threads on a loaded machine)."""
        deadline = time.monotonic() + timeout
        for reader in self.readers:
            reader.join(max(0.0, deadline - time.monotonic()))

    def wait_status(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.stdout_lines:
                if "Discord: connected as" in line:
                    return line
            if self.process.poll() is not None:
                self._drain()
                raise AssertionError(
                    f"carrier run exited {self.process.returncode} before connecting:\n"
                    + self.stderr
                )
            time.sleep(0.05)
        raise AssertionError("carrier run did not print its status line:\n" + self.stderr)

    @property
    def stderr(self) -> str:
        return "\n".join(self.stderr_lines)

    def log_lines(self, needle: str) -> list[str]:
        return [line for line in self.stderr_lines if needle in line]

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

    def wait_exit(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout=timeout)
        self._drain()
        return code


def start_carrier(
    discord: FakeDiscordServer,
    model_url: str,
    home: Path,
    characters: list[Path],
    *,
    env: dict[str, str] | None = None,
    token: str | None = None,
    args: list[str] | None = None,
) -> CarrierProcess:
    """`args`: more `carrier run` flags (e.g. --metrics-port)."""
    full_env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CARRIER_", "DISCORD_", "OPENAI_", "ANTHROPIC_"))
    }
    full_env.update(
        {
            "CARRIER_HOME": str(home),
            "CARRIER_KEYRING": "file",
            "OPENAI_BASE_URL": model_url + "/v1",
            "OPENAI_API_KEY": "sk-test-discord-0123456789",
            "CARRIER_MAX_RETRIES": "0",
            "PYTHONPATH": str(ROOT),
            **discord.env(token),
            **(env or {}),
        }
    )
    command = [sys.executable, "-m", "carrier_cli", "run", "--client", "discord", *(args or [])]
    for character in characters:
        command += ["--character", str(character)]
    process = subprocess.Popen(
        command,
        cwd=home.parent,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    carrier = CarrierProcess(process, home=home)
    carrier._pump()
    return carrier


def xml_reply(text: str) -> str:
    """The runtime's reply format, for scripting the fake model."""
    return (
        "<response><thought>Answering.</thought><actions>REPLY</actions>"
        f"<text>{text}</text></response>"
    )
