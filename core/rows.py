"""The actions' hot writes, without Model.save's machinery (issue 12).

`Model.save(update_fields=[...])` spends ~220 µs of CPU on an UPDATE of two columns (the field lists, the update
query and its compiler, signals), the same statement built here from the model's fields ~80 µs; `bulk_create` of
an action's three audit events ~270 µs. The SQL is the ORM's shape (quoted names, every value prepared by its
field as the ORM prepares it, `pre_save` applied), built once per model and set of columns.

Used where every action writes: a transition's changed fields (`core.fsm.saving_changes`,
`drivers.services.transition_driver`), the audit trail's batch (`core.audit`) and a dispatch's offer, which the
one-pending-offer constraints may refuse (`insert_unless_taken`: no savepoint around it). An INSERT of one row
gains little (~0.05 ms measured for a delivery and an offer), so new rows are otherwise saved by the ORM, as
everything else is, and so is a model anything listens to (pre_save or post_save receivers): no receiver is
ever skipped.
"""

import functools

from django.db import DatabaseError, IntegrityError, connections, models, router, transaction
from django.db.models import signals


def update_fields(instance: models.Model, names: list[str]) -> None:
    """`instance.save(update_fields=names)`: one UPDATE of those columns of its row. Raises DatabaseError, as the
    ORM does, when the row is gone."""
    if not names:
        return
    model = type(instance)
    if _listened(model):
        instance.save(update_fields=names)
        return
    alias = router.db_for_write(model, instance=instance)
    connection = connections[alias]
    sql, fields = _update_sql(model, tuple(names), alias)
    params = [field.get_db_prep_save(field.pre_save(instance, False), connection) for field in fields]
    params.append(model._meta.pk.get_db_prep_value(instance.pk, connection))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if cursor.rowcount == 0:
            raise DatabaseError("Save with update_fields did not affect any rows.")
    instance._state.adding, instance._state.db = False, alias


def insert_numbered(model: type[models.Model], instances: list[models.Model]) -> None:
    """`Model.objects.bulk_create(instances)` for new rows of a model whose primary key the database numbers:
    multi-row INSERTs (as many rows per statement as the database takes), the numbers read back where the
    database can return them (PostgreSQL, SQLite ≥ 3.35)."""
    if not instances:
        return
    if _listened(model):
        model._default_manager.bulk_create(instances)
        return
    alias = router.db_for_write(model)
    connection = connections[alias]
    fields, columns, returning = _insert_sql(model, alias)
    pk = model._meta.pk
    per_statement = max(1, connection.ops.bulk_batch_size(fields, instances))
    for start in range(0, len(instances), per_statement):
        batch = instances[start : start + per_statement]
        values = ", ".join([f"({', '.join(['%s'] * len(fields))})"] * len(batch))
        params = [field.get_db_prep_save(field.pre_save(obj, True), connection) for obj in batch for field in fields]
        with connection.cursor() as cursor:
            cursor.execute(f"{columns} VALUES {values}{returning}", params)
            if returning:
                for obj, (key,) in zip(batch, cursor.fetchall(), strict=True):
                    setattr(obj, pk.attname, key)
        for obj in batch:
            obj._state.adding, obj._state.db = False, alias


def insert_unless_taken(instance: models.Model) -> bool:
    """Insert a new row whose primary key is set already (a UUID), unless a unique constraint refuses it: False
    then, and nothing written. `INSERT … ON CONFLICT DO NOTHING`: inside a transaction the ORM's insert needs a
    savepoint to survive the refusal (two more round trips, every time), this needs none. Any other error is
    raised as the ORM raises it."""
    model = type(instance)
    if _listened(model):
        try:
            with transaction.atomic():
                instance.save(force_insert=True)
        except IntegrityError:
            return False
        return True
    alias = router.db_for_write(model, instance=instance)
    connection = connections[alias]
    sql, fields = _insert_unless_taken_sql(model, alias)
    params = [field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        inserted = cursor.rowcount == 1
    if inserted:
        instance._state.adding, instance._state.db = False, alias
    return inserted


def _listened(model: type[models.Model]) -> bool:
    return signals.pre_save.has_listeners(model) or signals.post_save.has_listeners(model)


@functools.cache
def _update_sql(model: type[models.Model], names: tuple[str, ...], alias: str) -> tuple[str, list]:
    quote = connections[alias].ops.quote_name
    fields = [model._meta.get_field(name) for name in names]  # a field's name or its attname ("driver_id")
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    pk_column = quote(model._meta.pk.column)
    return f"UPDATE {quote(model._meta.db_table)} SET {assignments} WHERE {pk_column} = %s", fields


@functools.cache
def _insert_sql(model: type[models.Model], alias: str) -> tuple[list, str, str]:
    connection = connections[alias]
    quote = connection.ops.quote_name
    pk = model._meta.pk
    if not pk.db_returning:
        raise TypeError(f"{model.__name__}'s primary key is not numbered by the database")
    fields = [field for field in model._meta.concrete_fields if field is not pk]
    columns = f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(field.column) for field in fields)})"
    returning = ""
    if connection.features.can_return_rows_from_bulk_insert:
        returning = f" RETURNING {quote(pk.column)}"
    return fields, columns, returning


@functools.cache
def _insert_unless_taken_sql(model: type[models.Model], alias: str) -> tuple[str, list]:
    quote = connections[alias].ops.quote_name
    fields = list(model._meta.concrete_fields)
    columns = ", ".join(quote(field.column) for field in fields)
    values = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({values}) ON CONFLICT DO NOTHING"
    return sql, fields
