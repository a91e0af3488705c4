"""What a failed turn answers, wherever it ran: in this process (routes/messages.py) or
on a queue worker (cluster/worker.py), which sends the same error to the waiting API
process. No FastAPI here, so a worker does not import the web stack."""

from __future__ import annotations

from carrier_cli.clients.api.errors import ApiError, from_carrier_error
from carrier_cli.errors import CarrierError

INTERNAL = (
    "internal",
    "The server failed on this request.",
    "It is logged on the server; try again, and report it if it repeats.",
)


def turn_failure(exc: CarrierError) -> ApiError:
    """A turn that failed: the database (503) or the model (502). A model provider
    refusing our key or model is this server's problem, not the caller's: 502, not the
    400 a CarrierError of bad input would get elsewhere."""
    mapped = from_carrier_error(exc)
    if mapped.status == 503:
        return mapped
    return ApiError(
        502,
        "upstream_failed",
        f"The agent's model failed: {exc.message}",
        hint=exc.hint
        or "Try again later; the message is stored, and a retry with the same "
        "Idempotency-Key answers it without storing it twice.",
    )


def failure_of(exc: BaseException) -> ApiError:
    """Any exception of a turn as the error the client gets: a CarrierError as above,
    the database unreachable 503, anything else 500 `internal` (never the detail)."""
    from carrier_cli.clients.api.outages import database_outage

    if isinstance(exc, CarrierError):
        return turn_failure(exc)
    if isinstance(exc, ApiError):
        return exc
    outage = database_outage(exc)
    if outage is not None:
        return outage
    return ApiError(500, INTERNAL[0], INTERNAL[1], hint=INTERNAL[2])
