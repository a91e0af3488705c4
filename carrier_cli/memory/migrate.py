"""Alembic, driven from code: the scripts ship inside the package, so there is no
alembic.ini to find and `carrier db init` works from any directory."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from carrier_cli.errors import RuntimeFailure
from carrier_cli.memory.async_engine import AsyncEngine

if TYPE_CHECKING:
    from alembic.config import Config

SCRIPT_LOCATION = Path(__file__).parent / "migrations"
_REVISION = re.compile(r"^revision(?:\s*:[^=]*)?\s*=\s*[\"']([^\"']+)[\"']", re.M)
_DOWN = re.compile(r"^down_revision(?:\s*:[^=]*)?\s*=\s*(.+)$", re.M)

SchemaStatus = Literal["empty", "current", "behind", "unknown"]


@dataclass(frozen=True)
class SchemaState:
    status: SchemaStatus
    current: tuple[str, ...]
    heads: tuple[str, ...]

    @property
    def revision(self) -> str | None:
        return ",".join(self.current) or None


def _import_alembic() -> None:
    """Import Alembic without pygments. Alembic imports mako, and mako's exceptions module
    loads pygments (when it is installed) to highlight code on its HTML error pages,
    which nothing here renders: pygments' 42 modules were 4.7 MB of the resident memory
    a first start's migration leaves behind (14.7 -> 10.0 MB, measured alone), which the
    Discord bot's idle RSS carried. mako falls back to plain escaping on ImportError;
    its plugin module is blocked only for this import, so a later import of it works."""
    if "alembic.util" in sys.modules:
        return
    plugin = "mako.ext.pygmentplugin"
    blocked = plugin not in sys.modules
    if blocked:
        sys.modules[plugin] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        import alembic.util  # noqa: F401  (imports mako.exceptions)
    finally:
        if blocked and plugin in sys.modules and sys.modules[plugin] is None:
            del sys.modules[plugin]


def alembic_config(connection: Connection | None = None) -> Config:
    _import_alembic()
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revisions() -> tuple[str, ...]:
    _import_alembic()
    from alembic.script import ScriptDirectory

    return tuple(sorted(ScriptDirectory.from_config(alembic_config()).get_heads()))


@cache
def quick_heads() -> tuple[str, ...] | None:
    """Heads read from the revision files' text, without importing Alembic (a fifth of a
    second on every command). None when a file does not look as expected; callers then
    ask Alembic."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (SCRIPT_LOCATION / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        revision, down = _REVISION.search(source), _DOWN.search(source)
        if revision is None or down is None:
            return None
        revisions.add(revision.group(1))
        parents.update(re.findall(r"[\"']([^\"']+)[\"']", down.group(1)))
    heads = tuple(sorted(revisions - parents))
    return heads or None


def _state(connection: Connection) -> SchemaState:
    _import_alembic()
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    heads = head_revisions()
    current = tuple(sorted(MigrationContext.configure(connection).get_current_heads()))
    if not current:
        tables = set(inspect(connection).get_table_names())
        if "memories" in tables:
            # Tables without a version row: made by hand or by a broken run; treat as old.
            return SchemaState("behind", (), heads)
        return SchemaState("empty", (), heads)
    if set(current) == set(heads):
        return SchemaState("current", current, heads)
    script = ScriptDirectory.from_config(alembic_config())
    known = {rev.revision for rev in script.walk_revisions()}
    status: SchemaStatus = "behind" if set(current) <= known else "unknown"
    return SchemaState(status, current, heads)


async def schema_state(engine: AsyncEngine) -> SchemaState:
    from sqlalchemy.exc import DBAPIError

    heads = quick_heads()
    if heads is not None:  # the common case, without Alembic: the schema is current
        async with engine.connect() as conn:
            try:
                rows = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
            except DBAPIError:  # no version table yet: Alembic looks closer below
                rows = None
        if rows is not None and tuple(sorted(str(r[0]) for r in rows)) == heads:
            return SchemaState("current", heads, heads)
    async with engine.connect() as conn:
        return await conn.run_sync(_state)


def _upgrade(connection: Connection, revision: str) -> None:
    _import_alembic()
    from alembic import command

    command.upgrade(alembic_config(connection), revision)


def _downgrade_all(connection: Connection) -> None:
    _import_alembic()
    from alembic import command

    command.downgrade(alembic_config(connection), "base")


async def upgrade(engine: AsyncEngine, revision: str = "heads") -> None:
    """Create or upgrade the schema. On PostgreSQL this also creates the vector extension."""
    from carrier_cli.memory.engine import IMMEDIATE, MIGRATION_LOCK

    try:
        async with engine.connect() as conn:
            # Serialise concurrent first runs: two processes auto-initialising one database
            # (SQLite: BEGIN IMMEDIATE; an engine may name a lock statement of its own).
            await conn.execution_options(**{IMMEDIATE: True})
            lock = engine.sync_engine.get_execution_options().get(MIGRATION_LOCK)
            async with conn.begin():
                if lock:
                    await conn.execute(text(lock))
                await conn.run_sync(_upgrade, revision)
    except Exception as exc:
        raise _explain_migration_error(exc) from exc


async def drop_everything(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(_downgrade_all)


def _explain_migration_error(exc: Exception) -> Exception:
    original = getattr(exc, "orig", None) or exc  # the driver's error, without SQLAlchemy's
    text_ = str(original)
    lowered = text_.lower()
    if "permission denied" in lowered and "extension" in lowered:
        return RuntimeFailure(
            f"Not allowed to create the pgvector extension: {_first_line(text_)}.",
            hint="Ask a superuser to run `CREATE EXTENSION vector;` in this database once "
            "(or grant this role the right to), then run `carrier db init` again.",
        )
    if "vector" in lowered and ("extension" in lowered or "control file" in lowered):
        return RuntimeFailure(
            "The PostgreSQL server does not have the pgvector extension installed "
            f"(CREATE EXTENSION vector failed: {_first_line(text_)}).",
            hint="Install pgvector on the database server (Debian/Ubuntu: apt install "
            "postgresql-<version>-pgvector; macOS: brew install pgvector; Docker: use the "
            "pgvector/pgvector image), then run `carrier db init` again.",
        )
    return exc


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def describe(state: SchemaState) -> dict[str, Any]:
    return {"status": state.status, "revision": state.revision, "head": ",".join(state.heads)}
