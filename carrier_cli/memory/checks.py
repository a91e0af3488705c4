"""What `carrier db check` reports, shared by the backends' own checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from carrier_cli.errors import InputError, RuntimeFailure
from carrier_cli.memory.urls import mask_url

if TYPE_CHECKING:
    from carrier_cli.memory.async_engine import AsyncEngine
    from carrier_cli.memory.failures import StorageFailure
    from carrier_cli.memory.migrate import SchemaState


def check(name: str, ok: bool, detail: str) -> dict[str, Any]:
    return {"name": name, "ok": ok, "detail": detail}


def revision_check(revisions: list[str]) -> dict[str, Any]:
    from carrier_cli.memory.migrate import head_revisions, quick_heads

    heads = quick_heads() or head_revisions()
    found = tuple(sorted(revisions))
    if found == heads:
        return check("schema", True, f"revision {', '.join(found)} (current)")
    if not found:
        return check("schema", False, "no schema revision recorded: run `carrier db init`")
    return check(
        "schema",
        False,
        f"revision {', '.join(found)}, this Carrier expects {', '.join(heads)}: "
        "run `carrier db upgrade` (or upgrade Carrier if it is newer)",
    )


async def connect_check(
    engine: AsyncEngine,
    url: str,
    *,
    explain: Callable[[BaseException, str], StorageFailure | None],
    hint: str,
) -> SchemaState:
    """The schema state, reading it being the first thing done with a database: an error
    here is said in the operator's words (`explain`: the backend's failure classifier,
    then "Cannot open the database ..." with the backend's `hint`)."""
    from carrier_cli.memory.migrate import schema_state

    try:
        return await schema_state(engine)
    except (InputError, RuntimeFailure):
        raise
    except Exception as exc:
        failure = explain(exc, url)  # a damaged, read-only or full SQLite file...
        if failure is not None:
            raise failure from exc
        name = type(exc).__name__
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else name
        raise RuntimeFailure(
            f"Cannot open the database {mask_url(url)}: {name}: {message}.", hint=hint
        ) from exc
