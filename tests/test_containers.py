"""What can be checked of the Dockerfile and compose.yaml without a Docker engine.

There is no Docker here, so nothing builds an image; instead every command the image and
the compose file would run is run for real, as written in those files:

* compose.yaml parses as YAML with its services, healthchecks, depends_on conditions,
  volumes and env files, and its DATABASE_URL (after compose-style `${...}` interpolation)
  is a URL Carrier accepts;
* every `carrier ...` command in the Dockerfile and compose.yaml is a real CLI command with
  real flags (`carrier <cmd> ... --help` exits 0 and lists each flag); a flag that belongs
  to a branch not yet merged is an xfail naming that branch, anything else missing fails;
* the Dockerfile's build-time check (the wordllama weights load offline) passes;
* the image's ENTRYPOINT + CMD (`carrier serve --host 0.0.0.0`), with the image's ENV, runs
  against PostgreSQL and Redis after compose's `carrier db init`, answers a turn, and the
  HEALTHCHECK line and compose's api healthcheck (the same `python -c`) exit 0 against it
  and non-zero once it is stopped;
* .dockerignore keeps secrets, the git directory and virtualenvs out of the build context
  but not the files the Dockerfile copies.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.api_server import ServeProcess, serve_env
from tests.support.model_server import ModelServerProcess, start_server_process
from tests.support.postgres import _run, with_database
from tests.support.redis_server import RedisServer, free_port, start_redis

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
DOCKERIGNORE = ROOT / ".dockerignore"

# Flags the compose file already uses that another helper's branch adds: until it is merged
# their check is an xfail naming the branch; once it is, they are checked like the others
# (the entry can then go).
PENDING_FLAGS = {
    ("run", "--role"): "h/queue (worker roles: `carrier run --role worker`)",
    ("serve", "--role"): "h/queue (worker roles: `carrier serve --role api`)",
}


# --- reading the files ------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    lines = [
        line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")
    ]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def dockerfile_one(keyword: str) -> str:
    values = [rest for key, rest in dockerfile_instructions() if key == keyword]
    assert len(values) == 1, f"the Dockerfile should have exactly one {keyword}: {values}"
    return values[0]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for key, rest in dockerfile_instructions():
        if key == "ENV":
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                env[name] = value
    return env


def healthcheck_argv() -> list[str]:
    """The HEALTHCHECK's command (shell form after CMD), with the interpreter of this venv
    standing in for the image's `python`."""
    rest = dockerfile_one("HEALTHCHECK")
    options, _, command = rest.partition(" CMD ")
    assert command, f"HEALTHCHECK without CMD: {rest}"
    assert "--interval=" in options and "--timeout=" in options
    argv = shlex.split(command)
    assert argv[:2] == ["python", "-c"], f"slim has no curl: use python -c ({argv})"
    return [sys.executable, *argv[1:]]


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def carrier_services() -> dict[str, dict[str, Any]]:
    """The compose services that run the Carrier image (they are built from this repo)."""
    return {name: svc for name, svc in compose()["services"].items() if "build" in svc}


def interpolate(text: str, env: dict[str, str]) -> str:
    """compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}` (enough for this file)."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        value = env.get(name, "")
        if op == ":-":
            return value or arg
        if op == ":?" and not value:
            raise ValueError(f"{name}: {arg}")
        return value

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, text)


def carrier_commands() -> list[tuple[str, list[str]]]:
    """Every `carrier` argv in the Dockerfile and compose.yaml, with where it comes from."""
    entrypoint = json.loads(dockerfile_one("ENTRYPOINT"))
    assert entrypoint == ["carrier"], entrypoint
    found = [("Dockerfile CMD", json.loads(dockerfile_one("CMD")))]
    for key, rest in dockerfile_instructions():
        if key == "RUN":
            for words in shell_commands(rest):
                if words[:1] == ["carrier"]:
                    found.append(("Dockerfile RUN", words[1:]))
    for name, service in carrier_services().items():
        found.append((f"compose {name}", list(service["command"])))
    return found


def shell_commands(line: str) -> list[list[str]]:
    """The simple commands of a shell line (split at && || ; |), redirections dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    redirect = False
    for token in lexer:
        if token in ("&&", "||", ";", "|"):
            commands.append([])
            redirect = False
        elif token in (">", ">>", "<", "2>"):
            redirect = True
        elif redirect:
            redirect = False
        else:
            commands[-1].append(token)
    return [words for words in commands if words]


def subcommand(argv: list[str]) -> list[str]:
    """The command path of an argv: the words before its first option."""
    path = []
    for word in argv:
        if word.startswith("-"):
            break
        path.append(word)
    return path


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "carrier_cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env or {**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )


# --- compose.yaml -----------------------------------------------------------------------------


def test_compose_has_the_services_volumes_and_secrets_from_env_files() -> None:
    data = compose()
    services = data["services"]
    assert {"postgres", "redis", "api", "worker"} <= set(services)
    assert services["postgres"]["image"].startswith("pgvector/pgvector:")
    assert services["redis"]["image"].startswith("redis:")
    assert services["worker"]["deploy"]["replicas"] == 2
    assert subcommand(services["api"]["command"]) == ["serve"]
    assert services["api"]["command"][1:] == ["--host", "0.0.0.0", "--role", "api"]
    assert services["worker"]["command"][:3] == ["run", "--role", "worker"]
    for name in ("postgres", "redis", "api", "worker"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for name, service in carrier_services().items():
        assert service["env_file"] == ".env", name
        assert "carrier-data:/data" in service["volumes"], name
        conditions = {k: v["condition"] for k, v in service["depends_on"].items()}
        assert conditions["postgres"] == "service_healthy", name
        if name != "migrate":
            assert conditions == {
                "postgres": "service_healthy",
                "redis": "service_healthy",
                "migrate": "service_completed_successfully",
            }, name
    assert {"carrier-data", "postgres-data", "redis-data"} <= set(data["volumes"])


def test_compose_holds_no_secret_and_its_database_url_is_one_carrier_accepts() -> None:
    from carrier_cli.memory.urls import check_database_url

    text = COMPOSE.read_text()
    # Passwords and keys only by reference to .env, never a literal value in the file.
    for line in text.splitlines():
        if re.search(r"(PASSWORD|API_KEY|TOKEN|SECRET)\w*\s*:", line) and "#" not in line[:4]:
            assert "${" in line, f"a literal secret in compose.yaml: {line.strip()}"
    url_template = carrier_services()["api"]["environment"]["DATABASE_URL"]
    with pytest.raises(ValueError, match="POSTGRES_PASSWORD"):
        interpolate(url_template, {})  # compose refuses to start without the password
    url = interpolate(url_template, {"POSTGRES_PASSWORD": "s3cret"})
    assert url == "postgresql://carrier:s3cret@postgres:5432/carrier"
    check_database_url(url)


# --- the carrier commands ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("where", "argv"), carrier_commands(), ids=lambda v: v if isinstance(v, str) else " ".join(v)
)
def test_every_carrier_command_in_the_files_is_a_real_command(where: str, argv: list[str]) -> None:
    path = subcommand(argv)
    flags = [word.split("=")[0] for word in argv if word.startswith("--")]
    usage = cli(*path, "--help")
    assert usage.returncode == 0, f"{where}: `carrier {' '.join(path)}` is no command:\n{usage}"
    for flag in flags:
        if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", usage.stdout):
            branch = PENDING_FLAGS.get((" ".join(path), flag))
            if branch:
                pytest.xfail(f"{where}: `carrier {' '.join(path)} {flag}` comes with {branch}")
            pytest.fail(f"{where}: `carrier {' '.join(path)}` has no {flag}:\n{usage.stdout}")
    parsed = cli(*argv, "--help")  # the whole line parses (no unknown option)
    assert parsed.returncode == 0, f"{where}: `carrier {' '.join(argv)}`:\n{parsed.stderr}"


@pytest.mark.slow
def test_the_build_time_weights_check_passes_offline() -> None:
    """The Dockerfile's RUN that loads the wordllama weights (and runs `carrier --help`),
    with the image's ENV: the weights ship in the wordllama wheel, nothing downloads."""
    import wordllama

    package = Path(wordllama.__file__).parent
    assert (package / "weights" / "l2_supercat_256.safetensors").is_file()
    assert list((package / "tokenizers").glob("l2_supercat*.json"))
    checks = [
        rest for key, rest in dockerfile_instructions() if key == "RUN" and "wordllama" in rest
    ]
    assert len(checks) == 1, checks
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        **dockerfile_env(),
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "CARRIER_HOME": "/nonexistent-carrier-home",  # the build has no data directory yet
    }
    command = checks[0].replace("python -c", shlex.quote(sys.executable) + " -c", 1)
    done = subprocess.run(
        ["sh", "-c", command], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_dockerignore_keeps_secrets_out_but_not_what_the_dockerfile_copies() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        verdict = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            bare = pattern.lstrip("!").removeprefix("**/")
            if fnmatch.fnmatch(path, bare) or fnmatch.fnmatch(path.split("/")[0], bare):
                verdict = not negate
        return verdict

    for path in (".env", ".env.local", ".git", ".venv", "tests", "carrier.db"):
        assert ignored(path), f"{path} would be sent to the Docker build"
    copied = [
        word
        for key, rest in dockerfile_instructions()
        if key == "COPY"
        for word in shlex.split(rest)[:-1]
    ]
    assert copied, "the Dockerfile copies nothing"
    for path in copied:
        assert (ROOT / path).exists(), path
        assert not ignored(path), f".dockerignore drops {path}, which the Dockerfile copies"


# --- the image's CMD and HEALTHCHECK against a real server ------------------------------------


@pytest.fixture(scope="module")
def model() -> Iterator[ModelServerProcess]:
    server = start_server_process()
    try:
        yield server
    finally:
        server.process.terminate()
        server.process.wait(10)
        if server.process.stdout is not None:
            server.process.stdout.close()


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"), appendonly=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def compose_database(postgres_admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database for the module (postgres_url is per test)."""
    name = f"carrier_compose_{uuid.uuid4().hex[:10]}"
    _run(postgres_admin_url, f'CREATE DATABASE "{name}"')
    try:
        yield with_database(postgres_admin_url, name)
    finally:
        _run(postgres_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def image_env(
    home: Path, model: ModelServerProcess, database_url: str, redis: RedisServer
) -> dict[str, str]:
    """The container's environment: the Dockerfile's ENV, compose's (its DATABASE_URL and
    REDIS_URL pointed at the test's servers), the fake model as OPENAI_BASE_URL."""
    env = {**dockerfile_env(), "CARRIER_HOME": str(home)}
    env["DATABASE_URL"] = database_url
    env["REDIS_URL"] = redis.url
    return serve_env(home, model.url, env)


@pytest.fixture(scope="module")
def image_server(
    tmp_path_factory: pytest.TempPathFactory,
    model: ModelServerProcess,
    compose_database: str,
    redis: RedisServer,
) -> Iterator[ServeProcess]:
    """compose's `migrate` (carrier db init), then the image's ENTRYPOINT + CMD with the
    image's environment; only the port differs (CARRIER_API_PORT=0: any free one)."""
    home = tmp_path_factory.mktemp("image") / "data"
    home.mkdir()
    env = image_env(home, model, compose_database, redis)
    migrate = cli(*compose()["services"]["migrate"]["command"], env=env)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    argv = [*json.loads(dockerfile_one("ENTRYPOINT")), *json.loads(dockerfile_one("CMD"))]
    assert argv[0] == "carrier"
    process = subprocess.Popen(
        [sys.executable, "-m", "carrier_cli", *argv[1:]],
        cwd=home,
        env={**env, "CARRIER_API_PORT": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    served = ServeProcess(process, home)
    served._pump()
    try:
        yield served.wait_ready()
    finally:
        served.kill()


def run_healthcheck(argv: list[str], port: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **dockerfile_env(), "CARRIER_API_PORT": str(port)}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.slow
@pytest.mark.service
@pytest.mark.postgres
def test_the_image_cmd_serves_a_turn_on_postgres_and_redis(image_server: ServeProcess) -> None:
    import httpx2 as httpx

    assert image_server.key, "the first start prints an admin key (docker compose logs api)"
    with httpx.Client(base_url=image_server.url, headers=image_server.headers(), timeout=60) as c:
        ready = c.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["database"] == "ok"
        name = c.get("/v1/agents").json()["agents"][0]["name"]
        reply = c.post(
            f"/v1/agents/{name}/messages",
            json={"room": "compose", "text": "Hello from the container test"},
        )
        assert reply.status_code == 200, reply.text
        assert "Hello from the container test" in json.dumps(reply.json())


@pytest.mark.slow
@pytest.mark.service
@pytest.mark.postgres
def test_the_healthchecks_pass_against_the_server_and_fail_without_it(
    image_server: ServeProcess,
) -> None:
    port = int(image_server.url.rsplit(":", 1)[1])
    docker = healthcheck_argv()
    api_test = carrier_services()["api"]["healthcheck"]["test"]
    assert api_test[0] == "CMD" and api_test[1:3] == ["python", "-c"]
    composed = [sys.executable, *api_test[2:]]
    assert composed[2] == docker[2], "compose's api healthcheck should be the image's line"
    for argv in (docker, composed):
        done = run_healthcheck(argv, port)
        assert done.returncode == 0, done.stderr
    down = run_healthcheck(docker, free_port())  # nothing listens there
    assert down.returncode != 0
    assert "Connection refused" in down.stderr or "URLError" in down.stderr


@pytest.mark.slow
@pytest.mark.service
@pytest.mark.postgres
def test_the_worker_service_command_runs_and_its_healthcheck_passes(
    tmp_path: Path, model: ModelServerProcess, compose_database: str, redis: RedisServer
) -> None:
    """compose's worker command, its metrics port swapped for a free one (9100 may be
    taken here), and its healthcheck against it."""
    usage = cli("run", "--help")
    if "--role" not in usage.stdout:
        pytest.xfail(f"`carrier run --role worker` comes with {PENDING_FLAGS[('run', '--role')]}")
    worker = carrier_services()["worker"]
    port = str(free_port())
    argv = [port if word == "9100" else word for word in worker["command"]]
    check = [sys.executable, *[w.replace("9100", port) for w in worker["healthcheck"]["test"][2:]]]
    home = tmp_path / "data"
    home.mkdir()
    env = image_env(home, model, compose_database, redis)
    process = subprocess.Popen(
        [sys.executable, "-m", "carrier_cli", *argv],
        cwd=home,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        import time

        deadline = time.monotonic() + 60
        while True:
            done = subprocess.run(check, capture_output=True, text=True, timeout=30)
            if done.returncode == 0:
                break
            assert process.poll() is None, f"the worker exited {process.returncode}"
            assert time.monotonic() < deadline, done.stderr
            time.sleep(0.5)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
