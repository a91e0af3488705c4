"""PostgreSQL's failures in the operator's words (see `memory.failures`)."""

from __future__ import annotations

from carrier_cli.memory.failures import StorageFailure, chain, first_line
from carrier_cli.memory.urls import mask_url

# PostgreSQL SQLSTATEs of a connection lost or ended by the server (not "cannot connect",
# 08001/08004/57P03: _connect_check words those, with host and port advice).
PG_GONE_STATES = ("08000", "08003", "08006", "57P01", "57P02")
PG_DISK_FULL, PG_READ_ONLY = "53100", "25006"
PG_CORRUPT = ("XX001", "XX002")
PG_LOCK_TIMEOUT = "55P03"  # lock_not_available: a lock_timeout ran out (postgres.backend)


def storage_failure(exc: BaseException, url: str) -> StorageFailure | None:
    """What `exc` (or the driver error it wraps) means for the operator, or None when it
    is none of the failures below (then it stays what it was)."""
    for error in chain(exc):
        if isinstance(error, StorageFailure):
            return error
        found = _postgres_failure(error, url)
        if found is not None:
            return found
    return None


def server_gone(url: str, error: BaseException, detail: str | None = None) -> StorageFailure:
    """The server ended the connection: shut down, restarted, or the backend terminated."""
    return StorageFailure(
        "server_gone",
        f"The PostgreSQL server closed the connection ({mask_url(url)}: "
        f"{detail or first_line(error)}).",
        hint="Check that the server is running (and was not restarted or out of memory), "
        "then run the command again.",
    )


def _postgres_failure(error: BaseException, url: str) -> StorageFailure | None:
    shown = mask_url(url)
    state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    name = type(error).__name__
    gone = state in PG_GONE_STATES or name in (
        "ConnectionDoesNotExistError",
        "ConnectionFailureError",
        "AdminShutdownError",
        "CrashShutdownError",
    )
    if not gone and name == "InterfaceError" and "connection" in str(error).lower():
        gone = "closed" in str(error).lower()
    if not gone and state is None:
        gone = isinstance(error, ConnectionResetError | BrokenPipeError | ConnectionAbortedError)
    if gone:
        return server_gone(url, error)
    if state == PG_DISK_FULL:
        return StorageFailure(
            "disk_full",
            f"The disk of the PostgreSQL server is full ({shown}: {first_line(error)}).",
            hint="Free space on the database server, then run the command again.",
        )
    if state == PG_READ_ONLY:
        return StorageFailure(
            "read_only",
            f"The PostgreSQL database {shown} is read-only ({first_line(error)}).",
            hint="Point DATABASE_URL at the primary server, not a read-only replica.",
        )
    if state == PG_LOCK_TIMEOUT:
        return StorageFailure(
            "lock_timeout",
            f"A write to the PostgreSQL database {shown} waited too long for a lock held by "
            f"another session ({first_line(error)}).",
            hint="Another session keeps a lock on the table: a transaction left open, or a "
            "schema change or index build in another process (pg_locks and "
            "pg_stat_activity name it). Let it finish or end it, then run the command again.",
        )
    if state in PG_CORRUPT:
        return StorageFailure(
            "damaged",
            f"The PostgreSQL database {shown} reports damaged data ({first_line(error)}).",
            hint="Run `carrier db check`, and restore from a backup.",
        )
    return None
