"""The PostgreSQL backend (core/postgresql): timestamps are read by psycopg's compiled parser, and they come back
as Django's own loader gives them: aware, in Django's time zone object, the same instant."""

from datetime import UTC, datetime

import psycopg
import pytest
from django.db import connection
from psycopg.types.datetime import TimestamptzLoader as PurePythonLoader

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def _read(sql: str):
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("2026-11-25 12:00:00+00", datetime(2026, 11, 25, 12, tzinfo=UTC)),
        ("2026-11-25 12:00:00.123456+03", datetime(2026, 11, 25, 9, 0, 0, 123456, tzinfo=UTC)),
        ("1999-12-31 23:59:59.5-08:30", datetime(2000, 1, 1, 8, 29, 59, 500000, tzinfo=UTC)),
    ],
)
def test_a_timestamp_reads_as_the_same_instant_in_djangos_time_zone(literal, expected):
    value = _read(f"SELECT '{literal}'::timestamptz")
    assert value == expected
    assert value.tzinfo is connection.timezone  # Django's object, as its own loader sets it


def test_the_parser_is_psycopgs_compiled_one_not_the_pure_python_loader():
    with connection.cursor() as cursor:
        loader = cursor.connection.adapters.get_loader(1184, 0)  # timestamptz, text
    assert loader.timezone is connection.timezone  # so Django does not register its own per cursor
    assert not issubclass(loader, PurePythonLoader)
    assert type(loader(1184, cursor.connection)._parse.__self__).__module__.startswith("psycopg_binary")


def test_on_a_connection_in_djangos_time_zone_psycopg_calls_the_compiled_parser_itself():
    """No Python step per timestamp: the loader's `load` is the compiled parser's own."""
    with connection.cursor() as cursor:
        loader = cursor.connection.adapters.get_loader(1184, 0)(1184, cursor.connection)
    assert loader.load == loader._parse


def test_a_connection_in_another_time_zone_still_reads_the_same_instant_in_djangos_zone():
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    with psycopg.connect(**params, options="-c TimeZone=Asia/Tokyo") as tokyo:
        value = tokyo.execute("SELECT '2026-11-25 21:00:00+09'::timestamptz").fetchone()[0]
    assert value == datetime(2026, 11, 25, 12, tzinfo=UTC)
    assert value.tzinfo is connection.timezone
