"""docs/api-instagram.md stays true: every `sh` block in it runs, in order, with bash and
curl (as a reader would) against a real `carrier serve` configured for Instagram with the
local fakes (fake Graph API, FTPS server, HTTP media server: test_instagram.py's `servers`).

The blocks run and are checked by tests/support/doc_runner.py, as docs/api.md's are
(strict curl, `expect-error` markers, shown answers' keys); this test sets CARRIER_URL,
CARRIER_KEY and MEDIA_DIR itself. Blocks share the shell variables they set (`POST=...`)
through a state file, so later blocks use the ids earlier ones captured; run the module
whole, not one block alone.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.clients.api.test_instagram import Servers, _serve, servers  # noqa: F401
from tests.clients.instagram.helpers import make_image
from tests.support.api_server import ROOT, ServeProcess, serve_env
from tests.support.doc_runner import (
    DocBlock,
    check_block,
    curl_commands,
    doc_blocks,
    missing_examples,
    printed_json,
    run_script,
    shown_answers,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.service,
    pytest.mark.skipif(
        not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq"
    ),
]

DOC = ROOT / "docs" / "api-instagram.md"
# Every variable a block sets is exported (set -a) and written to the state file at its
# end; the next block starts by reading it.
_PRELUDE = 'set -a\nif [ -f "$DOC_STATE" ]; then source "$DOC_STATE"; fi\n'
_EPILOGUE = '\nset +a\nexport -p > "$DOC_STATE"\n'


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
    return run_script(_PRELUDE + body + _EPILOGUE, env, workdir, strict=strict)


def test_the_doc_has_examples_for_every_instagram_endpoint(served: ServeProcess) -> None:
    """Each /v1/instagram/* operation the server documents (method and path) is in a
    runnable example."""
    document = httpx.get(served.url + "/openapi.json", timeout=30).json()
    missing = missing_examples(
        document["paths"], doc_blocks(DOC), lambda path: path.startswith("/v1/instagram/")
    )
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


@pytest.mark.parametrize("block", doc_blocks(DOC), ids=str)
def test_doc_example_runs(
    block: DocBlock,
    served: ServeProcess,
    servers: Servers,  # noqa: F811
    workdir: Path,
) -> None:
    done = run_block(block.body, served, servers, workdir, strict=not block.expects_error)
    check_block("docs/api-instagram.md", block, done)
