"""Text from files, users and settings is printed literally by the real `carrier` command:
Rich markup (`[bold]`, a stray `[/]` that would raise MarkupError, `[link=...]`) and emoji
codes (`:x:`) are neither applied nor fatal, in problems, panels and tables alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_carrier

pytestmark = pytest.mark.slow

EVIL = "[/] [bold]b[/] :x: [link=https://evil]l[/link]"  # a stray [/] first


def _flat(text: str) -> str:
    """Output with line wrapping and table borders undone, to find a phrase in it."""
    for border in "│┃":
        text = text.replace(border, " ")
    return " ".join(text.split())


def _wide() -> dict[str, str]:
    return {"COLUMNS": "200"}


def test_extends_etc_passwd_quotes_the_line_literally(tmp_path: Path) -> None:
    if not Path("/etc/passwd").read_text().startswith("root:x:0:0"):
        pytest.skip("this /etc/passwd does not start with root:x:0:0")
    path = tmp_path / "c.yaml"
    path.write_text("name: x\nextends: /etc/passwd\n", encoding="utf-8")
    result = run_carrier(["character", "validate", str(path)], env=_wide())
    assert result.returncode == 2
    assert "root:x:0:0" in result.stdout, result.stdout
    assert "❌" not in result.stdout + result.stderr


def test_character_name_in_validate_show_and_list(tmp_path: Path) -> None:
    (tmp_path / "characters").mkdir()
    path = tmp_path / "characters" / "evil.yaml"
    path.write_text(
        f'name: "Eve {EVIL}"\nbio: ["bio {EVIL}"]\ntopics: ["topic {EVIL}"]\n', encoding="utf-8"
    )
    validate = run_carrier(["character", "validate", str(path)], env=_wide())
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert f"ok (Eve {EVIL})" in validate.stdout
    show = run_carrier(["character", "show", str(path)], env=_wide())
    assert show.returncode == 0, show.stderr
    for shown in (f"Eve {EVIL}", f"bio {EVIL}", f"topic {EVIL}"):
        assert shown in _flat(show.stdout), show.stdout
    listed = run_carrier(["character", "list"], env=_wide(), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert f"Eve {EVIL}" in _flat(listed.stdout), listed.stdout
    everything = validate.stdout + show.stdout + listed.stdout
    assert "❌" not in everything and "Traceback" not in everything + show.stderr


def test_memory_text_in_add_list_and_search() -> None:
    added = run_carrier(["memory", "add", f"note {EVIL}"], env=_wide())
    assert added.returncode == 0, added.stderr
    listed = run_carrier(["memory", "list"], env=_wide())
    assert listed.returncode == 0, listed.stderr
    assert f"note {EVIL}" in _flat(listed.stdout), listed.stdout
    found = run_carrier(["memory", "search", "note"], env=_wide())
    assert found.returncode == 0, found.stderr
    assert f"note {EVIL}" in _flat(found.stdout), found.stdout
    assert "❌" not in listed.stdout + found.stdout


def test_setting_value_in_config_show() -> None:
    # A value from the environment (or config.yaml) is shown as written, a `[/]` included.
    result = run_carrier(["config", "show"], env={**_wide(), "CARRIER_CHARACTER": f"c {EVIL}"})
    assert result.returncode == 0, result.stderr
    assert f"c {EVIL}" in _flat(result.stdout), result.stdout
    assert "❌" not in result.stdout


def test_shared_printing_paths_are_literal(capsys: pytest.CaptureFixture[str]) -> None:
    """The mechanism itself: Carrier's consoles, `output.table()` and notices/warnings."""
    import io

    from carrier_cli.output import console, notice, table, warn

    buffer = io.StringIO()
    shown = console(buffer)
    shown.width = 200
    grid = table("name", "value")
    grid.add_row(f"n {EVIL}", f"v {EVIL}")
    shown.print(grid)
    shown.print(f"escaped {EVIL.replace('[', chr(92) + '[')}")  # our markup, escaped text
    notice(f"notice {EVIL}")
    warn(f"warn {EVIL}")
    printed = _flat(buffer.getvalue())
    assert f"n {EVIL}" in printed and f"v {EVIL}" in printed
    assert f"escaped {EVIL}" in printed  # emoji codes stay off even in markup strings
    stderr = _flat(capsys.readouterr().err)
    assert f"notice {EVIL}" in stderr and f"warning: warn {EVIL}" in stderr
