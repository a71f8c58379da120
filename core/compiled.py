"""Hot reads compiled by the ORM once per shape, then run with new values (issue 12).

Compiling a queryset to SQL can cost more CPU than PostgreSQL spends running it: dispatch's candidate query, with
its correlated subqueries, spent 2.25 of its 3.8 ms of CPU compiling. A `CompiledRead` keeps the ORM as the one
definition of the query (so every database backend gets its own SQL, SQLite included): it builds the queryset with
placeholder values, compiles it once per shape (database, and elsewhere than on PostgreSQL the length of each list
argument, rounded up to a power of two), remembers where the placeholders landed among the parameters, and from then
on only swaps in the call's values (prepared by the argument's field, as the ORM prepares them) and executes. Rows
come back through the converters the ORM applies (SQLite's UUIDs, datetimes and booleans): as tuples (`read(...)`,
for a `values_list` queryset) or as model instances (`read.instances(...)`, for a model queryset, select_related
included), built by the ORM's own code for a row. Only the declared arguments vary: every other value in the query
is part of its shape and must not change. An argument may appear more than once (the parts of a UNION filtering on
the same values), and be left out where an empty list argument makes the ORM drop the part of the query that used
it.
"""

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.core.exceptions import EmptyResultSet
from django.db import connections, models, router
from django.db.models import QuerySet
from django.db.models.query import get_related_populators
from django.db.transaction import TransactionManagementError

from core.postgresql import arrays

# The kinds of argument, by the field that prepares their values for the database.
UUID = models.UUIDField()
TEXT = models.CharField()
INTEGER = models.BigIntegerField()
DATETIME = models.DateTimeField()

# Placeholders are values no constant of these queries uses (one that did would fail the compilation, never
# silently). Integers stay inside a small integer's range: out of a field's range the ORM drops the condition.
_PLACEHOLDER_UUID = 0x5E1A7_0000_0000_0000_0000_0000_0000
_PLACEHOLDER_INTEGER = 32_000
_PLACEHOLDER_DATETIME = datetime(1901, 2, 3, 4, 5, 6, tzinfo=UTC)


@dataclass(frozen=True)
class _Compiled:
    sql: str
    params: tuple
    slots: tuple[tuple[int, int], ...]  # (position among the parameters, position among the call's values)
    converters: tuple[tuple[int, tuple, object], ...]  # (column, converter functions, expression)
    klass_info: dict | None = None  # a model query's: what ModelIterable builds instances from
    select: tuple = ()
    attnames: tuple | None = None  # a model query's: the columns of its model, as `from_db` takes them
    populators: tuple | None = None  # a model query's: the ORM's builders of its select_related instances
    locks: bool = False  # SELECT ... FOR UPDATE: only inside a transaction, as the ORM checks at each compile
    db: str = ""  # the alias of the database it was compiled for (the one the router picks for reading)


_NO_ROWS = _Compiled("", (), (), ())  # the shape matches nothing (an empty list): no query at all
ARRAY = "array"  # the size, in a shape, of a non-empty list passed as one array parameter (on PostgreSQL)


class CompiledRead:
    """`read = CompiledRead(Model, build, (UUID, [TEXT]))`: `build(*args)` returns a `values_list` queryset of
    `Model`; each argument is one value or (in brackets) a list of values of that kind, which `build` filters with
    the `any` lookup (core/lookups.py): on PostgreSQL the list is one array parameter, and a non-empty list of any
    length has one shape. `read(*args)` returns the rows as tuples, from the database the router picks for
    reading `Model`."""

    def __init__(self, model: type[models.Model], build: Callable[..., QuerySet], kinds: Sequence) -> None:
        self._model, self._build = model, build
        self._kinds = [(kind[0], True) if isinstance(kind, list) else (kind, False) for kind in kinds]
        self._compiled: dict[tuple, _Compiled] = {}

    def __call__(self, *args) -> list[tuple]:
        return self._run(args)[1]

    def instances(self, *args) -> list[models.Model]:
        """The rows as model instances, as iterating the queryset would give them (its select_related too)."""
        compiled, rows = self._run(args)
        if not rows:
            return []
        klass_info, select = compiled.klass_info, compiled.select
        if klass_info is None or compiled.attnames is None or len(select) != len(rows[0]):
            raise TypeError("instances() needs a model queryset without annotations")
        start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
        model, db, names, populators = klass_info["model"], compiled.db, compiled.attnames, compiled.populators
        built = []
        for row in rows:
            instance = model.from_db(db, names, row[start:end])
            for populator in populators:
                populator.populate(row, instance)
            built.append(instance)
        return built

    def _run(self, args) -> tuple[_Compiled, list[tuple]]:
        connection = connections[router.db_for_read(self._model)]
        arrays = connection.vendor == "postgresql"
        # A list's length: part of the shape, except for a non-empty list passed as an array (ARRAY below).
        sizes = tuple(
            (ARRAY if arrays and arg else _rounded(len(arg))) if is_list else None
            for arg, (_, is_list) in zip(args, self._kinds, strict=True)
        )
        key = (connection.alias, connection.vendor, sizes)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self._compile(connection, sizes)
        if compiled is _NO_ROWS:
            return compiled, []
        if compiled.locks and connection.get_autocommit():
            # Outside a transaction the row lock would end with the statement: the ORM refuses it, so do we.
            raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
        values = []  # (kind, value, whether the value is a list passed as one array)
        for arg, (kind, is_list), size in zip(args, self._kinds, sizes, strict=True):
            if size is ARRAY:
                values.append((kind, arg, True))
            elif is_list:  # padded to its shape with its last value, which changes nothing for `any`
                values.extend((kind, value, False) for value in [*arg, *arg[-1:] * (size - len(arg))])
            else:
                values.append((kind, arg, False))
        params = list(compiled.params)
        for slot, index in compiled.slots:
            kind, value, array = values[index]
            if array:
                params[slot] = _array(kind, value, connection)
            else:
                params[slot] = kind.get_db_prep_value(value, connection)
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, params)
            rows = cursor.fetchall()
        if compiled.converters:
            rows = [_convert(row, compiled.converters, connection) for row in rows]
        return compiled, rows

    def _compile(self, connection, sizes: tuple) -> _Compiled:
        args, prepared, arrays = [], {}, set()
        for (kind, is_list), size in zip(self._kinds, sizes, strict=True):
            if size is ARRAY:
                arrays.add(len(prepared))
            chosen = [_placeholder(kind, len(prepared) + i) for i in range(1 if size in (None, ARRAY) else size)]
            for value in chosen:
                prepared[kind.get_db_prep_value(value, connection)] = len(prepared)
            args.append(chosen if is_list else chosen[0])
        compiler = self._build(*args).query.get_compiler(connection=connection)
        try:
            sql, params = compiler.as_sql()
        except EmptyResultSet:
            return _NO_ROWS
        slots = []
        for slot, param in enumerate(params):
            array = isinstance(param, list) and len(param) == 1
            index = prepared.get(_key(param[0] if array else param))
            if index is not None:
                if array != (index in arrays):
                    raise ValueError("filter a list argument with the `any` lookup (core/lookups.py)")
                slots.append((slot, index))
        missing = set(range(len(prepared))) - {index for _, index in slots}
        if missing and 0 not in sizes:  # an empty list may drop a part of the query, and the values it used
            raise ValueError("every argument value must appear among the compiled query's parameters")
        columns = [column for column, _, _ in compiler.select[: compiler.col_count]]
        converters = compiler.get_converters(columns)
        klass_info, select = compiler.klass_info, tuple(compiler.select)
        attnames = populators = None
        if klass_info is not None:  # a model query: its instances' builders, made once as the ORM makes them per query
            fields = [
                column for column, _, _ in select[klass_info["select_fields"][0] : klass_info["select_fields"][-1] + 1]
            ]
            if all(hasattr(column, "target") for column in fields):  # else values, not the model's columns
                attnames = tuple(column.target.attname for column in fields)
                populators = tuple(get_related_populators(klass_info, list(select), connection.alias))
        return _Compiled(
            sql,
            tuple(params),
            tuple(slots),
            tuple((column, tuple(functions), expression) for column, (functions, expression) in converters.items()),
            klass_info,
            select,
            attnames,
            populators,
            compiler.query.select_for_update and connection.features.has_select_for_update,
            connection.alias,
        )


def _array(kind: models.Field, values, connection):
    """A list argument as one array parameter (PostgreSQL): UUIDs and strings written in one call
    (core/postgresql/arrays.py), other kinds prepared value by value, as the ORM prepares them."""
    if kind is UUID:
        return arrays.UUIDList(values)
    if kind is TEXT and all(isinstance(value, str) for value in values):
        return arrays.TextList(values)
    return [kind.get_db_prep_value(value, connection) for value in values]


def _rounded(length: int) -> int:
    """A list's length in a shape where each value is a parameter of its own: the next power of two, so that lists
    of up to N values make log2(N) shapes, not N."""
    return 1 << (length - 1).bit_length() if length else 0


def _placeholder(kind: models.Field, index: int):
    if isinstance(kind, models.UUIDField):
        return uuid.UUID(int=_PLACEHOLDER_UUID + index)
    if isinstance(kind, models.IntegerField):
        return _PLACEHOLDER_INTEGER + index
    if isinstance(kind, models.DateTimeField):
        return _PLACEHOLDER_DATETIME + timedelta(seconds=index)
    return f"relay-placeholder-{index}"


def _key(param):
    try:
        hash(param)
    except TypeError:
        return None
    return param


def _convert(row: tuple, converters, connection) -> tuple:
    row = list(row)
    for column, functions, expression in converters:
        value = row[column]
        for function in functions:
            value = function(value, expression, connection)
        row[column] = value
    return tuple(row)
