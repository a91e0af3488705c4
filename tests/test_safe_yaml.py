"""carrier_cli.safe_yaml: the bounded YAML reading every Carrier file goes through.

An alias bomb, a recursive alias or absurd nesting must be refused quickly, with the file
and position named, while ordinary YAML (aliases and `<<` merges used modestly included)
loads exactly as `yaml.safe_load` loads it. The config.yaml tests run `carrier` in a
subprocess whose address space is capped, so a regression cannot eat the machine.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from carrier_cli import safe_yaml
from carrier_cli.safe_yaml import Limits, YamlLimitError

# Python with Carrier's imports fits in well under this; nine levels of nine aliases do not.
MEMORY_LIMIT = 300 * 1024 * 1024


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The "billion laughs" document: each anchor lists the previous one `width` times."""
    names = "abcdefghijklmnopqrstuvwxyz"
    lines = [f"{names[0]}: &{names[0]} [{', '.join(['lol'] * width)}]"]
    for index in range(1, levels):
        refs = ", ".join([f"*{names[index - 1]}"] * width)
        lines.append(f"{names[index]}: &{names[index]} [{refs}]")
    return "\n".join(lines) + "\n"


def bounded_carrier(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m carrier_cli ARGS` with its address space capped at MEMORY_LIMIT."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    return subprocess.run(
        [sys.executable, "-m", "carrier_cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "CARRIER_CONFIG_DIR": str(cwd), "CARRIER_DATA_DIR": str(cwd)},
        cwd=cwd,
        timeout=60,
        preexec_fn=cap,
    )


def test_ordinary_yaml_loads_like_safe_load() -> None:
    text = (
        "base: &base {temperature: 0.5, tags: [a, b]}\n"
        "one:\n  <<: *base\n  name: x\n"
        "two: [*base, *base]\n"
        "when: 2024-01-02\nflag: yes\nnum: 0x1f\nempty:\nlist:\n  - - 1\n    - 2\n"
    )
    assert safe_yaml.load(text, "f.yaml") == yaml.safe_load(text)
    assert safe_yaml.load("", "f.yaml") is None
    assert safe_yaml.load("just text", "f.yaml") == "just text"


def test_syntax_errors_stay_yaml_errors() -> None:
    for text in ("a: [1\n", "a: *nope\n", "a: &x 1\nb: &x 2\n", "a: 1\n---\nb: 2\n"):
        with pytest.raises(yaml.YAMLError):
            safe_yaml.load(text, "f.yaml")


def test_alias_bomb_is_refused_quickly_naming_file_and_line() -> None:
    started = time.perf_counter()
    with pytest.raises(YamlLimitError) as caught:
        safe_yaml.load(alias_bomb(), "evil.yaml")
    assert time.perf_counter() - started < 1.0
    # Refused at the first anchor whose expansion exceeds the limit (9**6 > 200,000).
    assert caught.value.line == 6 and "evil.yaml:6:" in caught.value.message
    assert "200,000 values" in caught.value.message and caught.value.exit_code == 2


def test_recursive_alias_is_refused() -> None:
    with pytest.raises(YamlLimitError, match=r"\*r is inside the value &r"):
        safe_yaml.load("bio: &r [*r]\n", "r.yaml")
    with pytest.raises(YamlLimitError, match=r"\*m is inside"):
        safe_yaml.load("a: &m {b: {c: *m}}\n", "r.yaml")


def test_depth_and_size_limits() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(YamlLimitError, match="nested more than 50 levels"):
        safe_yaml.load(deep, "deep.json")
    with pytest.raises(YamlLimitError, match="nested more than 3 levels"):
        safe_yaml.load("a: {b: {c: [1]}}\n", "d.yaml", Limits(max_depth=3))
    # Depth through an alias counts as if the value were written out there (scalars are a
    # level too: `x` alone is 4 deep, under `y.z` it would be 5).
    assert safe_yaml.load("x: &x {b: [1]}\n", "d.yaml", Limits(max_depth=4))
    with pytest.raises(YamlLimitError, match="nested more than 4 levels"):
        safe_yaml.load("x: &x {b: [1]}\ny: {z: *x}\n", "d.yaml", Limits(max_depth=4))
    with pytest.raises(YamlLimitError, match="more than the 10 Carrier reads"):
        safe_yaml.load("a: 12345678901\n", "s.yaml", Limits(max_chars=10))
    with pytest.raises(YamlLimitError, match="more than 2 \\*alias"):
        safe_yaml.load("a: &a 1\nb: [*a, *a, *a]\n", "a.yaml", Limits(max_aliases=2))
    many = "".join(f"- {i}\n" for i in range(300_000))
    with pytest.raises(YamlLimitError, match="200,000 values"):
        safe_yaml.load(many, "big.yaml", Limits(max_chars=10**7))


def bomb_in_one_setting() -> str:
    """The bomb as the value of a real setting, so nothing else about the file is wrong."""
    lines = alias_bomb().splitlines()
    return "character:\n" + "".join(f"  - {line.split(': ', 1)[1]}\n" for line in lines)


@pytest.mark.parametrize(
    "body",
    [bomb_in_one_setting(), "character: &r [*r]\n"],
    ids=["alias-bomb", "recursive-alias"],
)
def test_config_yaml_is_read_through_the_same_limits(tmp_path: Path, body: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(body)
    result = bounded_carrier(["--config", str(config), "config", "show"], tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    shown = " ".join(result.stderr.split())
    # The paragraph is wrapped at 100 columns, possibly inside the path.
    assert "".join(f"Config file {config}:".split()) in "".join(shown.split()), shown
    assert "Traceback" not in shown and "Unexpected" not in shown


def test_pure_python_parser_gives_the_same_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without libyaml (PyYAML built without it) the same limits hold."""
    monkeypatch.delattr(yaml, "CSafeLoader", raising=False)
    text = "base: &b {x: [1, 2]}\nother:\n  <<: *b\n  y: 2\n"
    assert safe_yaml.load(text, "f.yaml") == yaml.safe_load(text)
    with pytest.raises(YamlLimitError, match="200,000 values"):
        safe_yaml.load(alias_bomb(), "evil.yaml")
    with pytest.raises(YamlLimitError, match="nested more than 50"):
        safe_yaml.load("[" * 5000 + "]" * 5000, "deep.json")
