"""`field__any=[...]`: a list lookup whose statement does not depend on the list's length.

On PostgreSQL it is `field = ANY(%s)` with the list as one array parameter: one statement text for every length,
so a compiled read (core.compiled) is compiled once, and psycopg keeps the statement's parsed form (it re-parses
any statement of more than 50 parameters on every execute: dispatch's candidate read, with its 50 drivers, was
one). Elsewhere (SQLite) it is `IN`, exactly. An empty list matches nothing, as with `IN`."""

from django.db.models import Field
from django.db.models.lookups import In


@Field.register_lookup
class Any(In):
    lookup_name = "any"

    def as_postgresql(self, compiler, connection):
        if not self.rhs_is_direct_value():
            return super().as_sql(compiler, connection)
        lhs, lhs_params = self.process_lhs(compiler, connection)
        _, values = self.process_rhs(compiler, connection)  # prepared as IN prepares them; empty: EmptyResultSet
        return f"{lhs} = ANY(%s)", (*lhs_params, list(values))
