"""Retention: old rows deleted in short batches, each its own statement and transaction (autocommit), so a purge
never holds one long transaction's row locks and WAL, and one that fails part-way keeps what it deleted and leaves
the rest to its next run."""

from django.db.models import QuerySet

PURGE_BATCH = 5000


def delete_in_batches(rows: QuerySet) -> int:
    """Delete `rows` PURGE_BATCH at a time; returns how many were deleted. Each DELETE asks `rows`' condition
    again: a row changed since its batch was read (a failed webhook sent again) is no longer one to delete."""
    deleted = 0
    while batch := list(rows.order_by().values_list("pk", flat=True)[:PURGE_BATCH]):
        deleted += rows.filter(pk__in=batch).delete()[0]
    return deleted
