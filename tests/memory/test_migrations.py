"""The migrations and the ORM models describe the same schema (no drift), on both backends,
and a database can go down to nothing and back up again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from carrier_cli.memory import (  # noqa: F401  (register their tables on METADATA)
    apikeys,
    comment_replies,
    counters,
    outbox,
)
from carrier_cli.memory.migrate import drop_everything, schema_state, upgrade
from carrier_cli.memory.schema import METADATA
from carrier_cli.memory.store import MemoryStore

MINE = {
    "agents",
    "entities",
    "rooms",
    "participants",
    "memories",
    "relationships",
    "cache",
    "store_state",
    "model_calls",
    "usage_counters",
    "api_keys",
    "webhook_deliveries",
    "instagram_comment_replies",
}


def _table_of(diff: Any) -> str | None:
    item = diff[0] if isinstance(diff, list) else diff
    for part in item[1:]:
        name = getattr(part, "name", None)
        table = getattr(part, "table", None)
        if table is not None:
            return str(table.name)
        if name in MINE:
            return str(name)
        if isinstance(part, str) and part in MINE:
            return part
    return None


async def test_models_match_the_migrations(db_url: str) -> None:
    store = await MemoryStore.open(db_url)
    try:

        def diffs(connection: Any) -> list[Any]:
            context = MigrationContext.configure(connection, opts={"compare_type": False})
            return [d for d in compare_metadata(context, METADATA) if _table_of(d) in MINE]

        async with store.engine.connect() as conn:
            found = await conn.run_sync(diffs)
        assert found == []
    finally:
        await store.close()


async def test_down_to_nothing_and_back(db_url: str) -> None:
    store = await MemoryStore.open(db_url)
    try:
        await drop_everything(store.engine)
        async with store.engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert not (tables & MINE)
        assert (await schema_state(store.engine)).status == "empty"
        await upgrade(store.engine)
        assert (await schema_state(store.engine)).status == "current"
    finally:
        await store.close()


def test_migrating_a_new_database_imports_no_pygments(tmp_path: Path) -> None:
    """Alembic imports mako, which loaded pygments for HTML error pages nothing renders:
    4.7 MB of resident memory after a first start's migration (the Discord bot's idle
    RSS). Its plugin is blocked only for that import."""
    code = (
        "import asyncio, sys\n"
        "from carrier_cli.memory.migrate import schema_state, upgrade\n"
        "from carrier_cli.memory.sqlite.engine import make_engine\n"
        "async def main():\n"
        f"    engine = make_engine('sqlite+aiosqlite:///{tmp_path / 'm.db'}')\n"
        "    await upgrade(engine)\n"
        "    print((await schema_state(engine)).status)\n"
        "    await engine.dispose()\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pygments'))\n"
        "print(sys.modules.get('mako.ext.pygmentplugin', 'absent'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.split("\n")[:3] == ["current", "[]", "absent"], done.stdout + done.stderr
