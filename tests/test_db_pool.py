"""core/db_pool.py: the PostgreSQL pool hands out a connection that came back a moment ago without a round trip, and
still replaces one the server ended or one idle too long to trust without asking."""

import psycopg
import pytest
from django.db import DEFAULT_DB_ALIAS, connection, connections
from psycopg_pool import ConnectionPool

from core import db_pool
from tests.polling import eventually

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@pytest.fixture
def pool():
    params = connection.get_connection_params()
    conninfo = psycopg.conninfo.make_conninfo(
        dbname=params["dbname"], host=params.get("host"), port=params.get("port"), user=params.get("user")
    )
    pool = ConnectionPool(conninfo, min_size=1, max_size=1, open=True, check=db_pool.check, timeout=10)
    pool.wait(timeout=10)
    yield pool
    pool.close()


@pytest.fixture
def round_trips(monkeypatch):
    """The empty queries the check sends (psycopg_pool's own check, which core/db_pool falls back to)."""
    sent = []
    own_check = ConnectionPool.check_connection

    def counted(conn):
        sent.append(conn.info.backend_pid)
        own_check(conn)

    monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(counted))
    return sent


def _backend(pool) -> int:
    with pool.connection() as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        db_pool.returned(conn)  # as the backend notes each connection it hands back
    return pid


def test_a_connection_back_a_moment_ago_is_handed_out_without_a_round_trip(pool, round_trips):
    first = _backend(pool)  # new to the pool: checked with a round trip
    assert _backend(pool) == _backend(pool) == first
    assert round_trips == [first]


def test_a_connection_the_server_ended_is_replaced(pool, round_trips):
    ended = _backend(pool)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [ended])
    gone = eventually(lambda: not _is_running(ended), timeout_s=10, interval_s=0.05)
    assert gone, "the backend did not end"

    replacement = _backend(pool)  # the pool saw the closed socket, asked, and replaced the connection
    assert replacement != ended
    assert ended in round_trips


def test_a_connection_idle_longer_than_trusted_is_asked(pool, round_trips, monkeypatch):
    first = _backend(pool)
    monkeypatch.setattr(db_pool, "QUIET_TRUSTED_S", 0.0)
    assert _backend(pool) == first
    assert round_trips == [first, first]


def _is_running(pid: int) -> bool:
    with connection.cursor() as cursor:
        # The test's transaction would otherwise keep seeing the server's activity as it first read it.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone()[0] == 1


def test_djangos_pool_hands_out_connections_checked_this_way(round_trips):
    """The backend (core/postgresql) gives the pool Django builds from OPTIONS["pool"] this check: three requests'
    worth of use and return, one round trip (the connection's first checkout)."""
    options = {**connection.settings_dict["OPTIONS"], "pool": {"min_size": 1, "max_size": 1}}
    backend = type(connections[DEFAULT_DB_ALIAS])
    pooled = backend({**connection.settings_dict, "CONN_MAX_AGE": 0, "OPTIONS": options}, alias="pooled")
    try:
        backends = []
        for _ in range(3):
            with pooled.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                backends.append(cursor.fetchone()[0])
            pooled.close()  # back to the pool, as at the end of a request
    finally:
        pooled.close_pool()
    assert backends == [backends[0]] * 3
    assert round_trips == [backends[0]]
