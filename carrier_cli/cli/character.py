"""`carrier character ...`: validate, import, list, show and create character files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Validate, import, list and create character files.", no_args_is_help=True)


@app.command("validate")
def validate(
    files: Annotated[
        list[Path], typer.Argument(help="Character files (YAML, JSON, ElizaOS) or directories.")
    ],
    strict: Annotated[
        bool, typer.Option("--strict", help="Treat warnings (unknown keys...) as errors.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
) -> None:
    """Report every problem in each file with file:line:column; exit 2 on any error."""
    from carrier_cli.character import character_files, validate_character_file
    from carrier_cli.output import out, print_json

    reports = [validate_character_file(f, strict=strict) for f in character_files(files)]
    errors = sum(len(r.errors) for r in reports)
    warnings = sum(len(r.warnings) for r in reports)
    if as_json:
        print_json(
            [
                {
                    "file": str(r.file),
                    "ok": r.ok,
                    "name": r.character.name if r.character else None,
                    "errors": [p.as_dict() for p in r.errors],
                    "warnings": [p.as_dict() for p in r.warnings],
                }
                for r in reports
            ]
        )
    else:
        from rich.text import Text

        from carrier_cli.state import scrub

        # File names, messages quoting the file and names are Text: never markup or emoji.
        console = out()
        for report in reports:
            for problem in report.problems:
                colour = "red" if problem.severity == "error" else "yellow"
                where = f"{problem.path}: " if problem.path else ""
                console.print(
                    Text.assemble(
                        f"{problem.mark}: ",
                        (problem.severity, colour),
                        f": {scrub(where + problem.message)}",
                    ),
                    soft_wrap=True,
                )
            if report.ok and report.character is not None:
                console.print(
                    Text.assemble(
                        f"{report.file}: ", ("ok", "green"), f" ({report.character.name})"
                    ),
                    soft_wrap=True,
                )
        plural = "s" if len(reports) != 1 else ""
        console.print(
            f"{len(reports)} file{plural} checked: {errors} error"
            f"{'s' if errors != 1 else ''}, {warnings} warning"
            f"{'s' if warnings != 1 else ''}."
        )
    if errors:
        from carrier_cli.errors import InputError

        bad = sum(1 for r in reports if not r.ok)
        raise InputError(
            f"{errors} error{'s' if errors != 1 else ''} in {bad} character "
            f"file{'s' if bad != 1 else ''} (listed above).",
            hint="Fix them and run `carrier character validate` again.",
        )


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="An ElizaOS character file (0.x or v1 JSON).")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write YAML here instead of stdout.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --output.")] = False,
) -> None:
    """Convert an ElizaOS character to Carrier YAML and report what was not carried over."""
    from carrier_cli.character import dump_character_yaml, import_eliza
    from carrier_cli.errors import InputError
    from carrier_cli.output import notice, warn

    if output is not None and output.exists() and not force:
        raise InputError(
            f"{output} (from --output) already exists.",
            hint="Choose another path or add --force to overwrite it.",
        )
    character, dropped = import_eliza(file)
    header = [f"Imported from {file.name} by `carrier character import`."]
    if dropped:
        header += ["Not carried over:"] + [f"  {d}" for d in dropped]
    text = dump_character_yaml(character, header=header)
    for item in dropped:
        warn(f"dropped {item}")
    if output is None:
        import sys

        sys.stdout.write(text)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    notice(f"Wrote {output} ({character.name}); {len(dropped)} item(s) not carried over.")


@app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Characters found by name: ./characters, then the user directory, then built-in."""
    from carrier_cli.character import list_characters, validate_character_file
    from carrier_cli.output import out, print_json

    rows = []
    for entry in list_characters():
        report = validate_character_file(entry.path)
        status = "ok" if report.ok else f"{len(report.errors)} error(s)"
        title = report.character.name if report.character else None
        rows.append((entry, title, status))
    if as_json:
        print_json([{**e.as_dict(), "character": t, "status": st} for e, t, st in rows])
        return
    from rich.text import Text

    from carrier_cli.output import table as Table

    table = Table("name", "character", "source", "status", "path", box=None, pad_edge=False)
    table.columns[-1].overflow = "fold"  # paths matter more than tidy columns
    for entry, title, status in rows:
        name = Text.assemble(entry.name, (" (shadowed)", "dim") if entry.shadowed else "")
        shown = Text(status, style="green" if status == "ok" else "red")
        table.add_row(name, title or "?", entry.source, shown, str(entry.path))
    out().print(table)


@app.command("show")
def show(
    name: Annotated[
        str | None,
        typer.Argument(help="A character name or file path (default: the `character` setting)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the full character as JSON.")
    ] = False,
) -> None:
    """Summarise a character: identity, model, style, examples, clients."""
    from carrier_cli.character import find_character, validate_character_file
    from carrier_cli.output import out, print_json, warn

    if name is None:
        from carrier_cli.state import STATE

        name = STATE.settings().settings.character
    report = validate_character_file(find_character(name))
    for problem in report.warnings:
        warn(f"{problem.mark}: {problem.path + ': ' if problem.path else ''}{problem.message}")
    character = report.require()
    if as_json:
        data = character.model_dump(mode="json")
        data["id"] = str(character.id)
        data["source_path"] = str(character.source_path)
        print_json(data)
        return
    from carrier_cli.character.view import render_character

    out().print(render_character(character))


@app.command("new")
def new(
    name: Annotated[str, typer.Argument(help="The character's name.")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="File to write (default ./characters/NAME.yaml)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented, valid character file to start from."""
    from carrier_cli.character import default_character_path, scaffold_character_yaml
    from carrier_cli.errors import InputError
    from carrier_cli.output import notice

    if not name.strip() or "\n" in name:
        raise InputError(
            "NAME must be a non-empty single line.", hint="e.g. carrier character new Ada"
        )
    path = output or default_character_path(name)
    if path.exists() and not force:
        raise InputError(
            f"{path} already exists.",
            hint="Pick another name or --output, or add --force to overwrite it.",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(scaffold_character_yaml(name.strip(), str(path)), encoding="utf-8")
    notice(f"Wrote {path}. Edit it, then check it with `carrier character validate {path}`.")
