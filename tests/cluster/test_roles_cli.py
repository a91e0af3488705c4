"""`--role` on the command line: a role that needs Redis without it configured is bad
input (exit 2), Redis configured but absent is one clear paragraph (exit 1), both before
any port is bound or runtime opened; an unknown role names the valid ones."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.api_server import serve_env, write_character
from tests.support.redis_server import free_port

pytestmark = [pytest.mark.slow, pytest.mark.service]


def carrier(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    character = write_character(tmp_path / "carrier.yaml")
    result = subprocess.run(
        [sys.executable, "-m", "carrier_cli", *args, "--character", str(character)],
        env=serve_env(home, "http://127.0.0.1:9", env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize(
    "command", [["serve", "--port", "0", "--role", "api"], ["run", "--role", "worker"]]
)
def test_redis_absent_is_one_clear_error_exit_1(tmp_path: Path, command: list[str]) -> None:
    url = f"redis://:hunter2secret@127.0.0.1:{free_port()}/0"  # nothing listens there
    started = time.monotonic()
    code, output = carrier(tmp_path, *command, env={"REDIS_URL": url})
    assert code == 1, output
    assert "Could not reach Redis at redis://:***@127.0.0.1:" in output
    assert "hunter2secret" not in output
    assert "Traceback" not in output
    assert "listening" not in output  # refused before the port was bound
    assert time.monotonic() - started < 30


@pytest.mark.parametrize(
    ("command", "needs"),
    [
        (["serve", "--port", "0", "--role", "api"], "--role api"),
        (["run", "--role", "worker"], "--role worker"),
    ],
)
def test_a_redis_role_without_redis_is_bad_input(
    tmp_path: Path, command: list[str], needs: str
) -> None:
    code, output = carrier(tmp_path, *command)
    assert code == 2, output
    assert f"{needs}" in output and "no Redis is configured" in output
    assert "REDIS_URL" in output
    assert "Traceback" not in output


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["run"]])
def test_an_unknown_role_names_the_valid_ones(tmp_path: Path, command: list[str]) -> None:
    code, output = carrier(tmp_path, *command, "--role", "chef")
    assert code == 2, output
    assert "'chef' is not a role" in output
    assert "--role all" in output
