"""GET /v1/agents and /v1/agents/{agent}: the characters this server serves."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from carrier_cli.clients.api.auth import require, state_of

router = APIRouter(prefix="/v1", tags=["agents"])


class Agent(BaseModel):
    id: str = Field(description="The character's id (stable across restarts).")
    name: str
    username: str | None = None
    model: str = Field(description="The large model replies are generated with.")
    small_model: str | None = None
    provider: str
    clients: list[str] = Field(description="Clients serving it in this process, api included.")


class AgentList(BaseModel):
    agents: list[Agent]


def agent_view(runtime: Any, clients: list[str]) -> Agent:
    config = runtime.model_config
    return Agent(
        id=str(runtime.agent_id),
        name=runtime.character.name,
        username=runtime.character.username,
        model=config.large,
        small_model=config.small,
        provider=config.provider,
        clients=["api", *clients],
    )


@router.get("/agents", response_model=AgentList, summary="The characters served here")
async def list_agents(request: Request, _: Any = Depends(require("read"))) -> AgentList:
    state = state_of(request)
    return AgentList(agents=[agent_view(r, state.clients) for r in state.agents])


@router.get(
    "/agents/{agent}",
    response_model=Agent,
    summary="One character, by id or name",
    responses={404: {"description": "No such agent"}},
)
async def get_agent(agent: str, request: Request, _: Any = Depends(require("read"))) -> Agent:
    state = state_of(request)
    return agent_view(state.agents.get(agent), state.clients)


class ExampleTurn(BaseModel):
    name: str
    text: str
    actions: list[str] = []


class CharacterWarning(BaseModel):
    path: str = Field(description="The field, dotted (e.g. `style.chat`); empty: the file.")
    message: str
    code: str = Field(description="unknown-key, eliza-dropped, missing-knowledge, ...")
    line: int | None = Field(None, description="Its line in the file, when known.")


class CharacterModel(BaseModel):
    provider: str
    large: str
    small: str | None = None
    temperature: float
    max_tokens: int


class CharacterView(BaseModel):
    """The loaded character, read-only. Its `settings`, client settings and templates are
    left out: they may name key entries and are the operator's business."""

    id: str
    name: str
    username: str | None = None
    system: str | None = None
    bio: list[str]
    lore: list[str]
    adjectives: list[str]
    topics: list[str]
    style: dict[str, list[str]] = Field(description="all, chat and post directions.")
    message_examples: list[list[ExampleTurn]]
    post_examples: list[str]
    knowledge: int = Field(description="Inline knowledge entries and files.")
    plugins: list[str]
    model: CharacterModel
    file: str | None = Field(None, description="The file's name (not its path).")
    warnings: list[CharacterWarning] = Field(
        description="What `carrier character validate` warns about in the file now."
    )


def _warnings(character: Any) -> list[CharacterWarning]:
    """The file's warnings, validated again now (a few ms: one YAML file and its parents);
    none for a character not loaded from a file."""
    from carrier_cli.character.loader import validate_character_file

    path = getattr(character, "source_path", None)
    if path is None:
        return []
    report = validate_character_file(path)
    return [
        CharacterWarning(path=p.path, message=p.message, code=p.code, line=p.mark.line)
        for p in report.warnings
    ]


@router.get(
    "/agents/{agent}/character",
    response_model=CharacterView,
    summary="The character's definition, read-only, with validation warnings",
    description="Scope: read. Bio, lore, style, examples and model as loaded, and what "
    "`carrier character validate` would warn about in its file.",
    responses={404: {"description": "No such agent"}},
)
async def get_character(
    agent: str, request: Request, _: Any = Depends(require("read"))
) -> CharacterView:
    import asyncio

    runtime = state_of(request).agents.get(agent)
    character = runtime.character
    config = runtime.model_config
    path = getattr(character, "source_path", None)
    return CharacterView(
        id=str(runtime.agent_id),
        name=character.name,
        username=character.username,
        system=character.system,
        bio=list(character.bio),
        lore=list(character.lore),
        adjectives=list(character.adjectives),
        topics=list(character.topics),
        style={
            "all": list(character.style.all),
            "chat": list(character.style.chat),
            "post": list(character.style.post),
        },
        message_examples=[
            [ExampleTurn(name=m.name, text=m.text, actions=list(m.actions)) for m in conversation]
            for conversation in character.message_examples
        ],
        post_examples=list(character.post_examples),
        knowledge=len(character.knowledge),
        plugins=list(character.plugins),
        model=CharacterModel(
            provider=config.provider,
            large=config.large,
            small=config.small,
            temperature=character.model.temperature,
            max_tokens=character.model.max_tokens,
        ),
        file=path.name if path is not None else None,
        warnings=await asyncio.to_thread(_warnings, character),
    )
