"""How PostgreSQL would read the tables that grow for good (snapshots, breaks, events...), for tests that hold a
periodic read's cost to what it needs rather than to everything kept since the first day."""

from django.db import connection


def whole_table_reads(run, tables: set[str]) -> list[dict]:
    """Run `run()` and return each plan node of its statements that reads all of one of `tables`: a scan with no
    index condition, over no partial index (one holds only the rows it is for, such as pending offers). Each
    statement is planned with sequential scans off, as for a table too big to scan, so a small test table gets the
    plan that a big one would."""
    nodes = []

    def explain(execute, sql, params, many, context):
        if not many and any(table in sql for table in tables):
            with connection.connection.cursor() as cursor:  # the driver's own: not through this wrapper again
                cursor.execute("SET LOCAL enable_seqscan = off")
                cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
                nodes.extend(_nodes(cursor.fetchone()[0][0]["Plan"]))
                cursor.execute("RESET enable_seqscan")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(explain):
        run()
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexrelid::regclass::text FROM pg_index WHERE indpred IS NOT NULL")
        partial = {name for (name,) in cursor.fetchall()}
    return [
        node
        for node in nodes
        if node.get("Relation Name") in tables
        and node["Node Type"] != "ModifyTable"
        and not {"Index Cond", "Recheck Cond"} & node.keys()
        and node.get("Index Name") not in partial
    ]


def _nodes(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)
