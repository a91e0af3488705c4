"""Driver errors raised outside a statement (a rollback or a pool check-in after the
server went away) are said in the operator's words by the command line too."""

from __future__ import annotations

from carrier_cli.memory.backends import escaped_failure


def test_a_lost_postgres_connection_outside_a_statement_is_server_gone() -> None:
    from asyncpg.exceptions import ConnectionDoesNotExistError

    error = ConnectionDoesNotExistError("connection was closed in the middle of operation")
    failure = escaped_failure(error)
    assert failure is not None and failure.kind == "server_gone"
    assert "closed the connection" in failure.message and failure.exit_code == 1
    wrapped = RuntimeError("while releasing")
    wrapped.__cause__ = error
    found = escaped_failure(wrapped)
    assert found is not None and found.kind == "server_gone"


def test_anything_else_stays_an_unexpected_error() -> None:
    assert escaped_failure(ValueError("a bug")) is None
    assert escaped_failure(KeyError("x")) is None
