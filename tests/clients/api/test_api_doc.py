"""docs/api.md stays true: every `sh` block in it runs, in order, against a real
`carrier serve` (with curl, as a reader would), and so does the curl line the server's
banner prints on a fresh home.

A block runs with `curl --fail-with-body`, so an example answering 4xx/5xx fails the
test; a block after an `<!-- expect-error -->` line must instead print our error shape.
The block that only exports placeholder values (`crr_...`) is skipped: the test provides
CARRIER_URL and CARRIER_KEY itself.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.clients.api.serve_support import model_server, serving
from tests.support.api_server import ROOT, ServeProcess, serve_env
from tests.support.model_server import ModelServerProcess

pytestmark = [
    pytest.mark.slow,
    pytest.mark.service,
    pytest.mark.skipif(
        not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq"
    ),
]

DOC = ROOT / "docs" / "api.md"
_BLOCK = re.compile(
    r"(?:<!-- model-actions: (?P<action>[A-Z_]+) -->\n)?"
    r"(?P<marker><!-- expect-error -->\n)?```sh\n(?P<body>.*?)```",
    re.S,
)
# The doc's server loads the file plugin (tests/support/file_plugin.py), and a block after
# `<!-- model-actions: SHOW_REPORT -->` gets a model that chooses that action (after REPLY).
PLUGIN_EXTRA = (
    'plugins: ["tests.support.file_plugin:PLUGIN"]\n'
    "settings:\n  fact_interval: 1000000\n"  # no fact calls take the scripted reply
)
_PRELUDE = """
carrier() { "$CARRIER_PYTHON" -m carrier_cli "$@"; }
"""
_STRICT_CURL = (
    'curl() { command curl --silent --show-error --fail-with-body --max-time 60 "$@"; }\n'
)


def doc_blocks() -> list[tuple[int, bool, str, str | None]]:
    """(line number, expects an error, body, the action the model chooses) of every
    runnable sh block."""
    text = DOC.read_text(encoding="utf-8")
    blocks = []
    for match in _BLOCK.finditer(text):
        body = match.group("body")
        if "crr_..." in body:
            continue
        line = text.count("\n", 0, match.start("body")) + 1
        blocks.append((line, bool(match.group("marker")), body, match.group("action")))
    return blocks


@pytest.fixture(scope="module")
def model() -> Iterator[ModelServerProcess]:
    with model_server() as server:
        yield server


@pytest.fixture(scope="module")
def served(
    model: ModelServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("api-doc")
    with serving(root, model, character_extra=PLUGIN_EXTRA) as server:
        yield server


def run_block(
    body: str, served: ServeProcess, model: ModelServerProcess, *, strict: bool
) -> subprocess.CompletedProcess[str]:
    env = serve_env(served.home, model.url)
    env.update(
        {
            "CARRIER_URL": served.url,
            "CARRIER_KEY": served.key or "",
            "CARRIER_PYTHON": sys.executable,
        }
    )
    script = _PRELUDE + (_STRICT_CURL if strict else "") + body
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env=env,
        cwd=served.home.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_doc_has_examples_for_every_endpoint(served: ServeProcess) -> None:
    """Each path the server documents (but the WebSocket and Instagram's own page) appears
    in a runnable example."""
    import httpx2 as httpx

    paths = httpx.get(served.url + "/openapi.json", timeout=30).json()["paths"]
    examples = "\n".join(body for _, _, body, _ in doc_blocks())
    missing = []
    for path in paths:
        if path.startswith(("/v1/instagram/posts", "/v1/instagram/queue")) or path == "/v1/ws":
            continue  # their own pages, tested by test_api_instagram_doc.py and test_ws.py
        pattern = re.escape(path)
        pattern = re.sub(r"\\\{[^}]+\\\}", r"[^/?\" ]+", pattern)
        if not re.search(pattern + r"(?:[?\"' ]|$)", examples, re.M):
            missing.append(path)
    assert not missing, f"docs/api.md has no runnable example for {missing}"


@pytest.mark.parametrize(
    ("line", "expects_error", "body", "action"),
    doc_blocks(),
    ids=lambda v: str(v) if isinstance(v, int) else "",
)
def test_doc_example_runs(
    line: int,
    expects_error: bool,
    body: str,
    action: str | None,
    served: ServeProcess,
    model: ModelServerProcess,
) -> None:
    if action is not None:
        from tests.support.file_plugin import reply_choosing

        model.push(reply_choosing(action))
    done = run_block(body, served, model, strict=not expects_error)
    where = f"docs/api.md line {line}:\n{body}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    assert done.returncode == 0, where
    assert "Traceback" not in done.stdout + done.stderr, where
    if expects_error:
        first = next(line for line in done.stdout.splitlines() if line.startswith("{"))
        error = json.loads(first)["error"]
        assert error["code"] and error["message"], where
    else:
        assert '"error"' not in done.stdout, where


def test_banner_curl_line_answers_with_the_reply(
    served: ServeProcess, model: ModelServerProcess
) -> None:
    """What a new user copies first: the curl line printed with the first key."""
    line = next(x.strip() for x in served.stdout_lines if x.strip().startswith("curl "))
    done = run_block(line, served, model, strict=True)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["reply"]["text"], answer
    assert answer["room"]["key"] == "r1"
