"""`carrier db check` on PostgreSQL: the revision, every index valid, every row read."""

from __future__ import annotations

from typing import Any

from carrier_cli.memory.checks import check, connect_check, revision_check
from carrier_cli.memory.postgres.engine import make_engine
from carrier_cli.memory.postgres.failures import storage_failure

CONNECT_HINT = (
    "Check DATABASE_URL (host, port, user, password, database name) and that "
    "the server is running; unset it to use the built-in SQLite database."
)


async def check_postgres(full: str) -> list[dict[str, Any]]:
    from sqlalchemy import text

    from carrier_cli.memory.failures import StorageFailure

    checks: list[dict[str, Any]] = []
    engine = make_engine(full)
    try:
        state = await connect_check(engine, full, explain=storage_failure, hint=CONNECT_HINT)
        checks.append(revision_check(list(state.current)))
        async with engine.connect() as conn:
            invalid = (
                (
                    await conn.execute(
                        text(
                            "SELECT c.relname FROM pg_index i "
                            "JOIN pg_class c ON c.oid = i.indexrelid "
                            "JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE n.nspname = current_schema() "
                            "AND NOT (i.indisvalid AND i.indisready) ORDER BY 1"
                        )
                    )
                )
                .scalars()
                .all()
            )
            if invalid:
                names = ", ".join(invalid)
                checks.append(
                    check(
                        "indexes",
                        False,
                        f"invalid indexes: {names} (an interrupted CREATE INDEX; "
                        "`REINDEX INDEX <name>` rebuilds one)",
                    )
                )
            else:
                checks.append(check("indexes", True, "every index is valid"))
            if state.status in ("current", "behind"):
                # pg_column_size of each row: the heap is read, not only an index.
                sql = "SELECT count(*), sum(pg_column_size(m.*)) FROM memories m"
                try:
                    count = (await conn.execute(text(sql))).one()[0]
                    checks.append(check("memories", True, f"{count} memories (every row read)"))
                except StorageFailure as failure:
                    checks.append(check("memories", False, failure.message))
    finally:
        await engine.dispose()
    return checks
