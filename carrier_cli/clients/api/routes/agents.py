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
