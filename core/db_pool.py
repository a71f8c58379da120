"""How the PostgreSQL pool checks a connection before handing it out (psycopg_pool's `check`), without a round trip
when one could tell no more (issue 12).

Django's check (CONN_HEALTH_CHECKS with a pool) sends an empty query on every checkout: a round trip to
PostgreSQL per request, ~1 ms of a dispatch's time under load. A connection the server ended (pg_terminate_backend,
a restart, an idle timeout on the way) does not go quiet: PostgreSQL writes a FATAL message and closes it, a proxy
closes the socket, and either way the socket has something to read. So a connection returned to the pool a moment
ago with nothing to read since is handed out as it is; one with something to read, or idle longer than
QUIET_TRUSTED_S, gets the empty query, and the pool replaces it if that fails. What no check at checkout catches
either way, a connection that dies while a request uses it, answers 503 (core/errors.py).
"""

import select
import time

from psycopg_pool import ConnectionPool

QUIET_TRUSTED_S = 10.0


def returned(conn) -> None:
    """Note when the connection came back to the pool (the backend, core/postgresql, calls it as it returns one)."""
    conn.relay_returned_at = time.monotonic()


def check(conn) -> None:
    """The pool's `check` callback: raises if the connection is not usable (the pool then replaces it)."""
    returned_at = getattr(conn, "relay_returned_at", None)
    if returned_at is None or time.monotonic() - returned_at > QUIET_TRUSTED_S or _has_input(conn):
        ConnectionPool.check_connection(conn)


def _has_input(conn) -> bool:
    """Whether the server sent anything (an idle connection is sent nothing unless it is being closed), or the
    socket is in error. poll, not select: a server process with thousands of sockets has descriptors past
    select's limit of 1,024."""
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    return bool(poller.poll(0))
