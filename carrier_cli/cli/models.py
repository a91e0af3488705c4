"""`carrier models show|list`: which model Carrier would use, and what the provider offers."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    help="Show the model Carrier picks (and why) and list the provider's models.",
    no_args_is_help=True,
)

ProviderOpt = Annotated[
    str | None,
    typer.Option(
        "--provider",
        help="openai, anthropic, ollama, openai-compatible, openrouter, vllm or lmstudio.",
    ),
]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Large model name.")]
CharacterOpt = Annotated[
    str | None, typer.Option("--character", help="Character name or file whose model block counts.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _resolve(provider: str | None, model: str | None, character: str | None):  # type: ignore[no-untyped-def]
    from carrier_cli.llm.factory import resolve_model_config
    from carrier_cli.state import STATE

    settings = STATE.settings().settings
    character_model = None
    if character is not None:
        from carrier_cli.character import resolve_character

        character_model = resolve_character(character).model
    return resolve_model_config(settings, character_model, provider=provider, model=model)


@app.command("show")
def show(
    provider: ProviderOpt = None,
    model: ModelOpt = None,
    character: CharacterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The resolved provider, large/small models, base URL and context window (no secrets)."""
    from carrier_cli.output import key_value_lines, out, print_json

    config = _resolve(provider, model, character)
    row = {
        "provider": config.provider,
        "large": config.large,
        "small": config.small,
        "base_url": config.base_url or "(provider default)",
        "api_key": "set" if config.api_key else "not needed",
        "context_window": config.context_window,
        "temperature": config.temperature,
        "max_tokens": config.max_tokens,
        "chosen_by": config.source,
    }
    if as_json:
        print_json(row)
        return
    for line in key_value_lines(row.items()):
        out().print(line, markup=False)


@app.command("list")
def list_models(
    provider: ProviderOpt = None,
    character: CharacterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask the provider which models it offers (GET /v1/models)."""
    import asyncio

    from carrier_cli.llm.probe import offered_models
    from carrier_cli.output import print_json

    names = asyncio.run(offered_models(_resolve(provider, None, character)))
    if as_json:
        print_json(names)
        return
    for name in names:
        typer.echo(name)


@app.command("check")
def check(
    provider: ProviderOpt = None,
    model: ModelOpt = None,
    character: CharacterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send a tiny prompt to the large and small models: proves the key, URL and names work."""
    import asyncio

    from carrier_cli.llm.probe import probe_models
    from carrier_cli.output import print_json

    config = _resolve(provider, model, character)
    rows = asyncio.run(probe_models(config))
    if as_json:
        print_json({"provider": config.provider, "models": rows})
        return
    for row in rows:
        typer.echo(f"{config.provider} {row['model']}: OK in {row['seconds']} s")
