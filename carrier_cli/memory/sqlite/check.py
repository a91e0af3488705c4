"""`carrier db check` on an SQLite file: read-only, never "repairs" what it inspects."""

from __future__ import annotations

from typing import Any

from carrier_cli.memory.checks import check, revision_check


async def check_sqlite_file(path: Any) -> list[dict[str, Any]]:
    import asyncio
    import sqlite3

    if not path.exists():
        return [check("file", False, f"{path} does not exist (any memory command creates it)")]

    def run() -> list[dict[str, Any]]:
        checks: list[dict[str, Any]] = []
        try:
            # Read-only: a check must not change (or "repair") what it inspects. immutable
            # as a fallback for a file on a read-only disk, where WAL cannot make its -shm.
            try:
                conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.OperationalError:
                conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
            try:
                rows = [str(r[0]) for r in conn.execute("PRAGMA integrity_check(20)")]
                if rows == ["ok"]:
                    checks.append(check("integrity", True, "PRAGMA integrity_check: ok"))
                else:
                    shown = "; ".join(rows[:5]) + (
                        f"; and {len(rows) - 5} more" if len(rows) > 5 else ""
                    )
                    checks.append(check("integrity", False, f"PRAGMA integrity_check: {shown}"))
                try:
                    revisions = [
                        str(r[0]) for r in conn.execute("SELECT version_num FROM alembic_version")
                    ]
                except sqlite3.OperationalError:
                    revisions = []
                checks.append(revision_check(revisions))
                if revisions:
                    count = conn.execute("SELECT count(*) FROM memories").fetchone()[0]
                    checks.append(check("memories", True, f"{count} memories"))
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            text = str(exc)
            if "not a database" in text:
                detail = f"{path} is not an SQLite database (or its header is damaged)"
            else:
                detail = f"{path} is damaged: {text}"
            checks.append(check("integrity", False, detail))
        return checks

    return await asyncio.to_thread(run)
