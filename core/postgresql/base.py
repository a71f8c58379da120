"""Django's PostgreSQL backend, reading timestamps with psycopg's compiled parser, and its pool checking connections
with core/db_pool.py (issue 12).

Django registers its own `timestamptz` loader on every connection: a subclass of psycopg's pure-Python loader that
swaps the result's tzinfo for Django's. It parses every timestamp of every row in Python (~4 % of a create +
dispatch + accept's CPU in a py-spy profile; ~0.2 ms of its ~12.9 ms less, measured, with this backend). This
backend registers a loader marked with Django's time zone as Django's is, so Django's per-cursor check
(`create_cursor`) finds nothing to change, that has psycopg's compiled loader (psycopg[binary]) do the parsing. On a
connection in Django's time zone, as Django sets up every connection, psycopg calls the compiled loader directly;
on any other, the value is moved to Django's zone. The values are the same: aware, in Django's time zone object.
"""

import functools

from django.db.backends.postgresql import base
from psycopg import adapt, adapters
from psycopg.pq import Format

from core import db_pool
from core.postgresql import arrays

# The loader psycopg itself registers for timestamptz: the compiled one when psycopg's C module is installed.
_PARSER = adapters.get_loader(adapters.types["timestamptz"].oid, Format.TEXT)


class _TzLoader(adapt.Loader):
    timezone = None  # set per time zone: Django compares it with its own before every cursor

    def __init__(self, oid, context=None):
        super().__init__(oid, context)
        self._parse = _PARSER(oid, context).load
        # The compiled parser gives the connection's time zone object (psycopg's, cached by name). Where that is
        # Django's own, as Django's set-up of every connection makes it, psycopg calls the parser itself: no Python
        # call and no tzinfo swap per value (1.2 → 0.27 µs a timestamp; ~60 of them per create + dispatch + accept).
        if _connection_zone(context) is self.timezone:
            self.load = self._parse

    def load(self, data):
        return self._parse(data).astimezone(self.timezone)


def _connection_zone(context):
    connection = getattr(context, "connection", None)
    return None if connection is None else connection.info.timezone


@functools.cache
def _adapters(template: adapt.AdaptersMap, timezone) -> adapt.AdaptersMap:
    """Django's adapters, with the compiled reads' list arguments (core/postgresql/arrays.py) and, with a time
    zone, the timestamptz loader above (Django caches its template the same way)."""
    context = adapt.AdaptersMap(template)
    arrays.register(context)
    if timezone is not None:  # USE_TZ: without it, Django's loader drops the time zone, as it must
        context.register_loader("timestamptz", type("TzLoader", (_TzLoader,), {"timezone": timezone}))
    return context


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self):
        params = super().get_connection_params()
        params["context"] = _adapters(params["context"], self.timezone)
        return params

    @property
    def pool(self):
        """Django's pool (OPTIONS["pool"]), checking each connection it hands out with core/db_pool.py. Django
        gives psycopg_pool its own check (an empty query every time) or none and takes no other, so the check is
        set here, on the pool Django made closed, before first use."""
        pool = super().pool
        if pool is not None and pool._check is not db_pool.check:
            pool._check = db_pool.check
        return pool

    def _close(self):
        # The connection goes back to the pool here: noted now, in the request's thread. As the pool's `reset`
        # callback it would make every return a task for a pool worker thread (a thread woken per request).
        if self.connection is not None and self.pool:
            db_pool.returned(self.connection)
        super()._close()
