"""Runs a doc page's `sh` blocks as a reader would (bash and curl), for the tests that keep
docs/api.md and docs/api-instagram.md true.

A block runs with `curl --fail-with-body` (STRICT_CURL), so an example answering 4xx/5xx
fails; a block after an `<!-- expect-error -->` line must print our error shape instead.
A `<!-- model-actions: NAME -->` line before a block names the action the model chooses
for it. The block exporting placeholders (`crr_...`) is skipped: the tests set
CARRIER_URL and CARRIER_KEY themselves.

Each shown answer (a `# {...}` comment line and its `#  ` continuation lines) must name
only keys that some JSON answer printed by its block has (`check_block`), so a page
shows no field the server does not send.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_BLOCK = re.compile(
    r"(?:<!-- model-actions: (?P<action>[A-Z_]+) -->\n)?"
    r"(?P<marker><!-- expect-error -->\n)?```sh\n(?P<body>.*?)```",
    re.S,
)
STRICT_CURL = 'curl() { command curl --silent --show-error --fail-with-body --max-time 60 "$@"; }\n'
_KEY = re.compile(r'"(\w+)":')


@dataclass(frozen=True)
class DocBlock:
    line: int  # of the block's first line in the page
    expects_error: bool
    body: str
    action: str | None  # the model's chosen action, from a model-actions marker

    def __str__(self) -> str:  # the test id
        return str(self.line)


def doc_blocks(page: Path) -> list[DocBlock]:
    """Every runnable sh block of a page, in order."""
    text = page.read_text(encoding="utf-8")
    blocks = []
    for match in _BLOCK.finditer(text):
        body = match.group("body")
        if "crr_..." in body:
            continue
        line = text.count("\n", 0, match.start("body")) + 1
        blocks.append(DocBlock(line, bool(match.group("marker")), body, match.group("action")))
    return blocks


def run_script(
    script: str, env: dict[str, str], cwd: Path, *, strict: bool
) -> subprocess.CompletedProcess[str]:
    """bash -euo pipefail over the script, with the strict curl unless an error is expected."""
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", (STRICT_CURL if strict else "") + script],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def check_block(page: str, block: DocBlock, done: subprocess.CompletedProcess[str]) -> None:
    """The block ran, printed no traceback, printed our error shape exactly when it
    expects an error, and every answer it shows has keys some printed answer has."""
    where = f"{page} line {block.line}:\n{block.body}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    assert done.returncode == 0, where
    assert "Traceback" not in done.stdout + done.stderr, where
    printed = printed_json(done.stdout)
    errors = [
        v["error"] for v in printed if isinstance(v, dict) and isinstance(v.get("error"), dict)
    ]
    if block.expects_error:
        assert errors and errors[0]["code"] and errors[0]["message"], where
    else:
        assert not errors, where
    for keys in shown_answers(block.body):
        assert any(keys <= all_keys(value) for value in printed), (
            f"no answer printed has all the keys shown ({sorted(keys)}): {where}"
        )


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


def missing_examples(paths: dict[str, Any], blocks: list[DocBlock], wanted: Any) -> list[str]:
    """`METHOD path` of each documented operation (of the paths `wanted(path)` keeps) that
    no runnable curl command of the blocks sends."""
    commands = [c for block in blocks for c in curl_commands(block.body)]
    missing = []
    for path, item in paths.items():
        if not wanted(path):
            continue
        pattern = re.escape(path)
        pattern = re.sub(r"\\\{[^}]+\\\}", r"[^/?\" ]+", pattern) + r"(?:[?\"' ]|$)"
        for method in (m.upper() for m in item if m in ("get", "post", "put", "patch", "delete")):
            if not any(m == method and re.search(pattern, c) for m, c in commands):
                missing.append(f"{method} {path}")
    return missing
