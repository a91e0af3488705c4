"""A database that cannot be reached while serving is an outage (503), not a bug (500),
in a Server-Sent Events stream too.

The memory layer names the failures it knows (`memory.failures.StorageFailure`, which
answers 503 by itself), but a server that stopped or a database that was dropped under a
running process reaches a request as the driver's own error. A JSON answer gets 503 from
the app's handlers (errors.install: any SQLAlchemy DBAPIError or pool timeout); a stream
has already sent its 200, so the streaming route asks this module and sends the same
error object as an `error` event. Besides what those handlers take, the driver's own
errors are recognised from what the exception wraps: connection refused, "database does
not exist", too many connections.
"""

from __future__ import annotations

from carrier_cli.clients.api.errors import ApiError
from carrier_cli.memory.failures import chain

# SQLSTATE classes and codes of "cannot reach the database now": connection exceptions
# (08...), operator intervention (57P...), the database missing (3D000), too many
# connections (53300), authentication now refused (28P01, 28000).
_STATE_PREFIXES = ("08", "57P")
_STATES = ("3D000", "53300", "28P01", "28000")


def database_outage(exc: BaseException) -> ApiError | None:
    """503 `unavailable` when `exc` is the database being unreachable, else None."""
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    for error in chain(exc):
        state = str(getattr(error, "sqlstate", None) or getattr(error, "pgcode", None) or "")
        reachable_lost = (
            isinstance(error, DBAPIError | PoolTimeout | ConnectionError)
            or getattr(error, "connection_invalidated", False)
            or state.startswith(_STATE_PREFIXES)
            or state in _STATES
        )
        if reachable_lost:
            return ApiError(
                503,
                "unavailable",
                "The database is not reachable right now.",
                hint="Try again shortly; the server's log says what the database answered.",
            )
    return None
