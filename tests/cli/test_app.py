from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import run_carrier

HEAVY = [
    "openai",
    "anthropic",
    "discord",
    "sqlalchemy",
    "aiohttp",
    "numpy",
    "alembic",
    "wordllama",
    "PIL",
    "asyncpg",
    "tiktoken",
    "prometheus_client",
]


def _imported_modules(args: list[str]) -> set[str]:
    code = (
        "import sys\n"
        "from carrier_cli.cli.app import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit as exc:\n"
        "    print('EXIT', exc.code, file=sys.stderr)\n"
        "print('MODULES', ' '.join(sorted(sys.modules)), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert "EXIT 0" in result.stderr, result.stderr[-2000:]
    line = [ln for ln in result.stderr.splitlines() if ln.startswith("MODULES ")][-1]
    return set(line.split()[1:])


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        *[
            [group, "--help"]
            for group in [
                *["character", "keys", "config", "memory", "db", "instagram", "chat", "run"],
                *["models", "plugins", "version", "logs", "usage"],
            ]
        ],
    ],
)
def test_help_does_not_import_heavy_libraries(args: list[str]) -> None:
    modules = _imported_modules(args)
    loaded = sorted(m for m in HEAVY if m in modules)
    assert not loaded, f"`carrier {' '.join(args)}` imported {loaded}"


def test_version() -> None:
    result = run_carrier(["version", "--json"])
    assert result.returncode == 0
    assert json.loads(result.stdout)["carrier"]


def test_unknown_command_is_exit_2() -> None:
    result = run_carrier(["frobnicate"])
    assert result.returncode == 2 and "No such command" in result.stderr


def test_home_flag_moves_all_files(tmp_path: Path) -> None:
    home = tmp_path / "elsewhere"
    result = run_carrier(["--home", str(home), "config", "path", "--json"])
    data = json.loads(result.stdout)
    assert data["data_dir"].startswith(str(home))
    assert data["config_dir"].startswith(str(home))


def test_config_init_writes_valid_commented_file(tmp_path: Path) -> None:
    target = tmp_path / "c.yaml"
    assert run_carrier(["config", "init", "--path", str(target)]).returncode == 0
    assert "# --- Database ---" in target.read_text()
    again = run_carrier(["config", "init", "--path", str(target)])
    assert again.returncode == 2 and "--force" in again.stderr
    shown = run_carrier(["--config", str(target), "config", "show", "--json"])
    assert shown.returncode == 0, shown.stderr


def test_bad_config_file_is_one_paragraph_exit_2(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("request_timeout: soon\n")
    result = run_carrier(["config", "show"], cwd=tmp_path)
    assert result.returncode == 2
    assert "request_timeout" in result.stderr and "Traceback" not in result.stderr


def test_typer_exit_code_survives_main(capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    from carrier_cli.cli.app import app, main

    @app.command("exit-three-test", hidden=True)
    def exit_three() -> None:
        raise typer.Exit(3)

    with pytest.raises(SystemExit) as info:
        main(["exit-three-test"])
    assert info.value.code == 3


def test_error_paragraph_never_splits_a_path(capsys: pytest.CaptureFixture[str]) -> None:
    from carrier_cli.cli.app import _print_error

    path = "/tmp/pytest-of-root/pytest-12/test-a-very-long-name-0/characters/evil-bomb.yaml"
    _print_error(f"{path}:6:4: the document expands to more than 200,000 values " * 2)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) > 1  # it is still wrapped
    assert all(path in line or "/tmp" not in line for line in lines)
    assert sum(line.count(path) for line in lines) == 2


def test_a_command_imports_only_its_own_cli_module() -> None:
    """cli/lazy_group.py: `carrier chat` builds chat alone, not all 58 commands."""
    modules = _imported_modules(["chat", "--help"])
    cli = sorted(
        m for m in modules if m.startswith("carrier_cli.cli.") and m != "carrier_cli.cli.app"
    )
    assert cli == ["carrier_cli.cli.chat", "carrier_cli.cli.lazy_group"]


def test_every_cli_module_is_in_the_command_table() -> None:
    """A group or command module missing from app.COMMANDS would vanish from `carrier`."""
    import importlib
    import pkgutil

    import carrier_cli.cli
    from carrier_cli.cli.app import COMMANDS

    listed = {module for _, module, _ in COMMANDS}
    defining = set()
    for info in pkgutil.iter_modules(carrier_cli.cli.__path__):
        module = importlib.import_module(f"carrier_cli.cli.{info.name}")
        if info.name != "app" and (hasattr(module, "register") or hasattr(module, "app")):
            defining.add(module.__name__)
    # Added by their parent group (`carrier instagram queue|insights`), not top level.
    nested = {"carrier_cli.cli.instagram_queue", "carrier_cli.cli.instagram_insights"}
    assert defining - nested == listed


def test_the_top_level_help_builds_no_command() -> None:
    """`carrier --help` lists the commands from app.SUMMARIES: building all 16 to read
    their help was ~77 ms of its ~140 ms (cli/lazy_group.py)."""
    modules = _imported_modules(["--help"])
    cli = sorted(
        m for m in modules if m.startswith("carrier_cli.cli.") and m != "carrier_cli.cli.app"
    )
    assert cli == ["carrier_cli.cli.lazy_group"]


def test_the_help_listing_is_what_the_built_commands_give() -> None:
    """app.SUMMARIES cannot drift from the commands' own help: the help printed from the
    table equals the help printed once every command is built, at several widths."""
    import typer
    from typer._click import Context, HelpFormatter

    from carrier_cli.cli.app import COMMANDS, SUMMARIES, app

    assert list(SUMMARIES) == [name for name, _, _ in COMMANDS]
    for width in (60, 80, 200):
        group = typer.main.get_command(app)
        context = Context(group, info_name="carrier")
        from_table = HelpFormatter(width=width)
        group.format_commands(context, from_table)
        for name in group.list_commands(context):
            group.get_command(context, name)  # build it
        from_commands = HelpFormatter(width=width)
        group.format_commands(context, from_commands)
        assert from_table.getvalue() == from_commands.getvalue()
        assert "chat" in from_table.getvalue() and "webhooks" in from_table.getvalue()
