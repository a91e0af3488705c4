"""`carrier memory` and `carrier db` end to end, as an operator runs them (subprocesses)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from alembic import command
from alembic.script import ScriptDirectory

from carrier_cli.memory.backends import make_engine
from carrier_cli.memory.migrate import alembic_config, head_revisions
from carrier_cli.memory.urls import normalise_url
from tests.helpers import run_carrier


def _flat(text: str) -> str:
    """stderr paragraphs are wrapped at 100 columns; compare without the line breaks."""
    return " ".join(text.split())


def _ok(args: list[str], env: dict[str, str] | None = None, **kw: object) -> str:
    result = run_carrier(args, env=env, **kw)  # type: ignore[arg-type]
    assert result.returncode == 0, f"{args}: {result.stderr}"
    assert "Traceback" not in result.stderr
    return result.stdout


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def cli_env(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "sqlite":
        return {}  # no configuration at all: SQLite in CARRIER_HOME's data directory
    factory: Callable[[], str] = request.getfixturevalue("pg_database_factory")
    return {"DATABASE_URL": factory()}


@pytest.mark.slow
def test_acceptance_add_search_export_import(cli_env: dict[str, str], tmp_path: Path) -> None:
    init = json.loads(_ok(["db", "init", "--json"], cli_env))
    assert init["changed"] and init["before"] is None
    _ok(["memory", "add", "Our office cat is called Miso", "--kind", "fact"], cli_env)
    _ok(["memory", "add", "The build server runs Debian", "--kind", "lore"], cli_env)
    query = ["memory", "search", "what is the name of the kitten", "--threshold", "-1"]
    hits = json.loads(_ok([*query, "--json"], cli_env))
    assert hits[0]["content"]["text"] == "Our office cat is called Miso"
    assert hits[0]["kind"] == "fact" and hits[0]["score"] > hits[1]["score"]
    table = _ok(query, cli_env)
    assert table.index("Miso") < table.index("Debian")

    export = tmp_path / "m.jsonl"
    export.write_text(_ok(["memory", "export"], cli_env), encoding="utf-8")
    assert sum('"type":"memory"' in line for line in export.read_text().splitlines()) == 2
    for _ in range(2):
        report = json.loads(_ok(["memory", "import", str(export), "--json"], cli_env))
        assert report["memories_added"] == 0 and report["memories_existing"] == 2
    status = json.loads(_ok(["db", "status", "--json"], cli_env))
    assert status["current"] and status["tables"]["memories"] == 2
    assert status["embedding_model"] == "local:wordllama-l2-supercat-256"
    assert status["embedding_dimension"] == 256
    if "DATABASE_URL" in cli_env:
        assert status["backend"] == "postgresql" and status["url"].startswith(
            "postgresql+asyncpg://"
        )
        assert status["vector_indexes"] == {
            "main": {"vectors": 2, "indexed": True},
            "bulk": {"vectors": 0, "indexed": True},
        }
        assert re.search(r"vectors: main index +2 \(HNSW\)", _ok(["db", "status"], cli_env))
    else:
        assert "vector_indexes" not in status
    stats = json.loads(_ok(["memory", "stats", "--json"], cli_env))
    assert stats["total"] == 2 and stats["by_kind"] == {"fact": 1, "lore": 1}


async def _downgrade_one(url: str) -> None:
    engine = make_engine(normalise_url(url))
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "-1"))
    await engine.dispose()


@pytest.mark.slow
def test_first_command_creates_the_database_and_errors_are_one_paragraph(
    carrier_home: Path,
) -> None:
    added = json.loads(_ok(["memory", "add", "Fresh machine, no db init", "--json"]))
    assert added["kind"] == "fact"
    db = carrier_home / "data" / "carrier.db"
    assert db.is_file()
    deleted = run_carrier(["memory", "delete", added["id"][:8]])
    assert deleted.returncode == 2 and "Pass --yes" in _flat(deleted.stderr)
    bad = run_carrier(["memory", "search", "x", "--kind", "poem"])
    assert (
        bad.returncode == 2
        and "--kind 'poem'" in _flat(bad.stderr)
        and "Traceback" not in bad.stderr
    )
    assert json.loads(_ok(["memory", "delete", added["id"][:8], "--yes", "--json"]))["deleted"] == 1

    # an older schema: every command says to run `carrier db upgrade`, which fixes it
    if len(list(ScriptDirectory.from_config(alembic_config()).walk_revisions())) > 1:
        asyncio.run(_downgrade_one(f"sqlite:///{db}"))
        old = run_carrier(["memory", "list"])
        assert old.returncode == 2 and "carrier db upgrade" in _flat(old.stderr)
        assert "Traceback" not in old.stderr
        upgraded = json.loads(_ok(["db", "upgrade", "--json"]))
        assert upgraded["changed"] and upgraded["revision"] == ",".join(head_revisions())
        _ok(["memory", "list"])
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM alembic_version")
        conn.execute("INSERT INTO alembic_version VALUES ('9999_future')")
    newer = run_carrier(["memory", "list"])
    assert newer.returncode == 2 and "newer Carrier" in _flat(newer.stderr)

    broken = run_carrier(["memory", "list"], env={"DATABASE_URL": "mysql://u:pw@h/db"})
    assert broken.returncode == 2 and "mysql://" in _flat(broken.stderr)


@pytest.mark.slow
def test_unreachable_postgres_masks_the_password() -> None:
    result = run_carrier(
        ["db", "status"], env={"DATABASE_URL": "postgresql://carrier:hunter2secret@127.0.0.1:1/x"}
    )
    assert result.returncode == 1
    assert "hunter2secret" not in result.stderr and "carrier:***@127.0.0.1:1" in _flat(
        result.stderr
    )
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_ingest_and_reset(tmp_path: Path) -> None:
    docs = tmp_path / "kb"
    docs.mkdir()
    (docs / "office.md").write_text(
        "# Office\n\nThe office cat Miso likes the sofa.\n", encoding="utf-8"
    )
    (docs / "notes.txt").write_text("Deploys happen every Tuesday.", encoding="utf-8")
    first = json.loads(_ok(["memory", "ingest", str(docs), "--json"]))
    assert first["documents_added"] == 2 and first["fragments_added"] == 2
    second = json.loads(_ok(["memory", "ingest", str(docs), "--json"]))
    assert second["documents_added"] == 0 and second["documents_unchanged"] == 2
    hits = json.loads(_ok(["memory", "search", "kitten", "--kind", "fragment", "--json"]))
    assert "Miso" in hits[0]["content"]["text"]
    refused = run_carrier(["db", "reset"])
    assert refused.returncode == 2 and "--yes" in _flat(refused.stderr)
    _ok(["db", "reset", "--yes"])
    assert json.loads(_ok(["memory", "stats", "--json"]))["total"] == 0


@pytest.mark.postgres
def test_db_init_without_rights_to_create_pgvector_says_what_to_do(
    postgres_admin_url: str, pg_database_factory: Callable[[], str]
) -> None:
    from tests.support.postgres import _run, with_database

    url = pg_database_factory()
    name = urlsplit(url).path.lstrip("/")
    try:
        _run(postgres_admin_url, "DROP ROLE IF EXISTS carrier_plain")
        _run(postgres_admin_url, "CREATE ROLE carrier_plain LOGIN PASSWORD 'plain-secret-pw'")
        _run(postgres_admin_url, f'ALTER DATABASE "{name}" OWNER TO carrier_plain')
    except Exception as exc:  # pragma: no cover - an external server, not superuser
        if os.environ.get("CARRIER_TEST_DATABASE_URL"):
            pytest.skip(f"cannot create a role on CARRIER_TEST_DATABASE_URL: {exc}")
        raise
    user_url = with_database(postgres_admin_url, name).replace(
        "://postgres:@", "://carrier_plain:plain-secret-pw@"
    )
    result = run_carrier(["db", "init"], env={"DATABASE_URL": user_url})
    message = _flat(result.stderr)
    assert result.returncode == 1, result.stderr
    assert "permission denied to create extension" in message
    assert "CREATE EXTENSION vector;" in message and "carrier db init" in message
    assert "plain-secret-pw" not in result.stderr and "Traceback" not in result.stderr
