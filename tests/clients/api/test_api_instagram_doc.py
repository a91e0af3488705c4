"""docs/api-instagram.md stays true: every `sh` block in it runs, in order, with bash and
curl (as a reader would) against a real `carrier serve` configured for Instagram with the
local fakes (fake Graph API, FTPS server, HTTP media server: test_instagram.py's `servers`).

As in test_api_doc.py, a block runs with `curl --fail-with-body`, so an example answering
4xx/5xx fails; a block after an `<!-- expect-error -->` line must print our error shape.
The block exporting placeholders (`crr_...`) is skipped: the test sets CARRIER_URL,
CARRIER_KEY and MEDIA_DIR itself. Blocks share the shell variables they set (`POST=...`)
through a state file, so later blocks use the ids earlier ones captured; run the module
whole, not one block alone.

Each shown answer (a `# {...}` comment line and its continuation lines) must name only
keys that some JSON answer printed by its block has, so the page shows no field the
server does not send.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.clients.api.test_instagram import Servers, _serve, servers  # noqa: F401
from tests.clients.instagram.helpers import make_image
from tests.support.api_server import ROOT, ServeProcess, serve_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.service,
    pytest.mark.skipif(
        not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq"
    ),
]

DOC = ROOT / "docs" / "api-instagram.md"
_BLOCK = re.compile(r"(?P<marker><!-- expect-error -->\n)?```sh\n(?P<body>.*?)```", re.S)
_STRICT_CURL = (
    'curl() { command curl --silent --show-error --fail-with-body --max-time 60 "$@"; }\n'
)
# Every variable a block sets is exported (set -a) and written to the state file at its
# end; the next block starts by reading it.
_PRELUDE = 'set -a\nif [ -f "$DOC_STATE" ]; then source "$DOC_STATE"; fi\n'
_EPILOGUE = '\nset +a\nexport -p > "$DOC_STATE"\n'
_KEY = re.compile(r'"(\w+)":')


def doc_blocks() -> list[tuple[int, bool, str]]:
    """(line number, expects an error, body) of every runnable sh block."""
    text = DOC.read_text(encoding="utf-8")
    blocks = []
    for match in _BLOCK.finditer(text):
        body = match.group("body")
        if "crr_..." in body:
            continue
        line = text.count("\n", 0, match.start("body")) + 1
        blocks.append((line, bool(match.group("marker")), body))
    return blocks


def shown_answers(body: str) -> list[set[str]]:
    """The keys of each shown answer: a `# {` line and the `#  ` lines continuing it."""
    answers: list[set[str]] = []
    current: list[str] | None = None
    for line in body.splitlines():
        stripped = line.strip()
        if stripped.startswith("# {"):
            current = [stripped]
            answers.append(set())
        elif current is not None and stripped.startswith("#  "):
            current.append(stripped)
        else:
            current = None
            continue
        answers[-1] |= set(_KEY.findall(stripped))
    return answers


def printed_json(stdout: str) -> list[Any]:
    """Every JSON value printed (curl prints answers with no newline between them)."""
    decoder = json.JSONDecoder()
    values, at = [], 0
    while (at := _next_value(stdout, at)) < len(stdout):
        try:
            value, at = decoder.raw_decode(stdout, at)
        except json.JSONDecodeError:
            at = stdout.find("\n", at) + 1 or len(stdout)  # not JSON: skip the line
            continue
        values.append(value)
    return values


def _next_value(text: str, at: int) -> int:
    found = [i for i in (text.find("{", at), text.find("[", at)) if i >= 0]
    return min(found) if found else len(text)


def all_keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value).union(*(all_keys(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(all_keys(v) for v in value))
    return set()


@pytest.fixture(scope="module")
def served(servers: Servers) -> Iterator[ServeProcess]:  # noqa: F811
    serve = _serve(
        servers,
        servers.tmp / "home-doc",
        CARRIER_INSTAGRAM_QUEUE_POLL_INTERVAL="0.1",
    )
    try:
        yield serve
    finally:
        serve.terminate()


@pytest.fixture(scope="module")
def workdir(servers: Servers) -> Path:  # noqa: F811
    """The reader's directory: the files the examples upload, and MEDIA_DIR, a directory
    on the server's machine holding photo.jpg (the page's `$MEDIA_DIR/photo.jpg`)."""
    work = servers.tmp / "doc-work"
    (work / "media").mkdir(parents=True)
    make_image(work / "photo.jpg", (1080, 1080), color=(90, 110, 130))
    make_image(work / "quay.jpg", (1080, 1350), color=(40, 90, 60))
    make_image(work / "media" / "photo.jpg", (1080, 1080), color=(130, 70, 40))
    return work


def run_block(
    body: str,
    served: ServeProcess,
    stack: Servers,
    workdir: Path,
    *,
    strict: bool,
) -> subprocess.CompletedProcess[str]:
    env = serve_env(served.home, stack.model.url, stack.env)
    env.update(
        {
            "CARRIER_URL": served.url,
            "CARRIER_KEY": served.key or "",
            "MEDIA_DIR": str(workdir / "media"),
            "DOC_STATE": str(workdir / ".doc-state.sh"),
        }
    )
    script = _PRELUDE + (_STRICT_CURL if strict else "") + body + _EPILOGUE
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )


def curl_commands(body: str) -> list[tuple[str, str]]:
    """(method, command line) of each curl command in a block, continuations joined: -X
    names the method, else -F or -d make it a POST, else it is a GET."""
    commands = []
    for command in body.replace("\\\n", " ").splitlines():
        if "curl " not in command:
            continue
        method = re.search(r" -X (\w+)", command)
        posting = re.search(r" -[Fd] ", command)
        commands.append((method.group(1) if method else "POST" if posting else "GET", command))
    return commands


def test_the_doc_has_examples_for_every_instagram_endpoint(served: ServeProcess) -> None:
    """Each /v1/instagram/* operation the server documents (method and path) is in a
    runnable example."""
    document = httpx.get(served.url + "/openapi.json", timeout=30).json()
    commands = [c for _, _, body in doc_blocks() for c in curl_commands(body)]
    missing = []
    for path, item in document["paths"].items():
        if not path.startswith("/v1/instagram/"):
            continue
        pattern = re.escape(path)
        pattern = re.sub(r"\\\{[^}]+\\\}", r"[^/?\" ]+", pattern) + r"(?:[?\"' ]|$)"
        for method in (m.upper() for m in item if m in ("get", "post", "put", "patch", "delete")):
            if not any(m == method and re.search(pattern, c) for m, c in commands):
                missing.append(f"{method} {path}")
    assert not missing, f"docs/api-instagram.md has no runnable example for {missing}"


def test_shown_answers_are_read() -> None:
    """The parser of shown answers sees a continued comment as one answer."""
    body = 'curl x\n# {"a": 1, "b": {"c": 2},\n#  "d": null}\ncurl y\n# {..., "e": 3}\n'
    assert shown_answers(body) == [{"a", "b", "c", "d"}, {"e"}]
    assert curl_commands('curl -s u \\\n  -F a=b\ncurl -s -X POST u/x\ncurl "u?a=1"\n') == [
        ("POST", "curl -s u    -F a=b"),
        ("POST", "curl -s -X POST u/x"),
        ("GET", 'curl "u?a=1"'),
    ]
    assert printed_json('{"a": 1}{"b": [2]}\nnot json\n{"c": 3}') == [
        {"a": 1},
        {"b": [2]},
        {"c": 3},
    ]


@pytest.mark.parametrize(
    ("line", "expects_error", "body"),
    doc_blocks(),
    ids=lambda v: str(v) if isinstance(v, int) else "",
)
def test_doc_example_runs(
    line: int,
    expects_error: bool,
    body: str,
    served: ServeProcess,
    servers: Servers,  # noqa: F811
    workdir: Path,
) -> None:
    done = run_block(body, served, servers, workdir, strict=not expects_error)
    where = (
        f"docs/api-instagram.md line {line}:\n{body}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    )
    assert done.returncode == 0, where
    assert "Traceback" not in done.stdout + done.stderr, where
    printed = printed_json(done.stdout)
    errors = [
        v["error"] for v in printed if isinstance(v, dict) and isinstance(v.get("error"), dict)
    ]
    if expects_error:
        assert errors and errors[0]["code"] and errors[0]["message"], where
    else:
        assert not errors, where
    for keys in shown_answers(body):
        assert any(keys <= all_keys(value) for value in printed), (
            f"no answer printed has all the keys shown ({sorted(keys)}): {where}"
        )
