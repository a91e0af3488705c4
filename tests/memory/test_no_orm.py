"""Talking to memory imports no ORM.

`sqlalchemy.ext.asyncio` imports the whole ORM (its AsyncSession), about 15% of a
`carrier chat` start's CPU; memory is Core statements on Carrier's own async engine
(memory/async_engine.py) over Core tables (memory/schema.py). Only what uses ORM
sessions (the Instagram journal) imports them, when it runs.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import carrier_cli.memory
from tests.support.loaded_modules import ORM_PREFIXES, matching, run_watched

# The one module of the package that may import the ORM when imported (the ORM tables'
# Base); async_engine.orm_engine imports ext.asyncio inside the function, on first use.
ORM_MODULES = {"declarative.py"}

# A store opened, written and searched in a fresh interpreter; prints what it imported.
STORE_ROUND_TRIP = """
import asyncio, json, sys
import numpy as np
from carrier_cli.memory.store import MemoryStore
from carrier_cli.memory.types import Memory, MemoryKind

class Embedder:
    model_id, dimension = "test:eye-8", 8
    async def embed(self, texts):
        return [np.eye(8, dtype=np.float32)[len(t) % 8].tolist() for t in texts]

async def main():
    store = await MemoryStore.open(sys.argv[1], embedder=Embedder())
    try:
        agent = await store.ensure_agent("Ada")
        room = await store.ensure_room(agent, "cli", "r1")
        await store.add(Memory(agent_id=agent, content={"text": "hello"},
                               kind=MemoryKind.MESSAGE, room_id=room.id))
        hits = await store.search("hallo", agent_id=agent, k=3, threshold=-1.0)
        assert [h.memory.text for h in hits] == ["hello"], hits
        await store.recent(room.id, 5)
    finally:
        await store.close()

asyncio.run(main())
print(json.dumps(sorted(sys.modules)))
"""


def _module_level_imports(path: Path) -> list[str]:
    """Modules imported by the module's own body (not inside functions, not under `if
    TYPE_CHECKING:`)."""
    names: list[str] = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def test_no_memory_module_imports_the_orm_when_imported() -> None:
    package = Path(carrier_cli.memory.__file__).parent
    offenders = [
        f"{path.relative_to(package)}: {name}"
        for path in sorted(package.rglob("*.py"))
        if path.name not in ORM_MODULES
        for name in _module_level_imports(path)
        if matching([name], ORM_PREFIXES)
    ]
    assert offenders == []


def test_a_store_opens_writes_and_searches_without_the_orm(db_url: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", STORE_ROUND_TRIP, db_url],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert matching(json.loads(out.stdout)) == []


@pytest.mark.slow
def test_carrier_memory_search_imports_no_orm(db_url: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": db_url}
    added, _ = run_watched(
        ["memory", "add", "Our office cat is called Miso", "--kind", "fact"],
        tmp_path / "add.json",
        env=env,
    )
    assert added.returncode == 0, added.stderr
    found, modules = run_watched(
        ["memory", "search", "the cat's name", "--threshold", "-1", "--json"],
        tmp_path / "search.json",
        env=env,
    )
    assert found.returncode == 0, found.stderr
    assert "Miso" in found.stdout
    assert "sqlalchemy" in modules  # the listing was written, after the search
    assert matching(modules) == []


def test_the_instagram_journal_still_gets_orm_sessions(tmp_path: Path) -> None:
    """The journal's rows are ORM-mapped: its sessions run on SQLAlchemy's AsyncEngine,
    made on demand over the same engine (same pool, same error hooks)."""
    code = """
import asyncio, sys
from carrier_cli.clients.instagram.journal import Journal

async def main():
    journal = await Journal.open(sys.argv[1])
    try:
        assert "sqlalchemy.ext.asyncio" not in sys.modules
        assert await journal.get(1) is None
        orm = journal.engine.orm_engine()
        assert orm.sync_engine is journal.engine.sync_engine
        assert journal.engine.orm_engine() is orm
        assert "sqlalchemy.ext.asyncio" in sys.modules
    finally:
        await journal.close()

asyncio.run(main())
"""
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    out = subprocess.run(
        [sys.executable, "-c", code, url], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
