"""One shape for exported audit events, shared by the `export_events` command and the admin's download
action, so a CSV from the console and one from a cron job can be read by the same tooling (an event's cells are
ids, names of types and states, and its payload as JSON); and how a CSV holds text that people typed (the KPI
exports' names)."""

import csv
import json
import re
from collections.abc import Iterable
from typing import IO

from core.models import AuditEvent

FORMATS = ("csv", "jsonl")
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP's "CSV injection"): text that people
# type (a zone's or a driver's name) is written with an apostrophe before it, which shows it as typed.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")  # money and figures serialized as text ("-4.13"): a spreadsheet's numbers


def csv_cell(value):
    """A value as a CSV for spreadsheets holds it: text that would start a formula gets the apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not NUMBER.fullmatch(value):
        return "'" + value
    return value


COLUMNS = [
    "id",
    "uuid",
    "occurred_at",
    "type",
    "actor_kind",
    "actor_id",
    "subject_kind",
    "subject_id",
    "delivery_id",
    "driver_id",
    "from_state",
    "to_state",
    "payload",
]
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}


def event_row(event: AuditEvent) -> dict:
    """An event as plain JSON types, in COLUMNS order: ids and times as strings, absent ids as ""."""
    return {
        "id": event.id,
        "uuid": str(event.uuid),
        "occurred_at": event.occurred_at.isoformat(),
        "type": event.type,
        "actor_kind": event.actor_kind,
        "actor_id": event.actor_id,
        "subject_kind": event.subject_kind,
        "subject_id": str(event.subject_id),
        "delivery_id": str(event.delivery_id) if event.delivery_id else "",
        "driver_id": str(event.driver_id) if event.driver_id else "",
        "from_state": event.from_state,
        "to_state": event.to_state,
        "payload": event.payload,
    }


def write_events(events: Iterable[AuditEvent], out: IO[str], fmt: str) -> int:
    """Write events to a text stream as CSV (payload as a JSON string) or JSON lines. Returns how many."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    writer = None
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=COLUMNS)
        writer.writeheader()
    count = 0
    for event in events:
        row = event_row(event)
        if writer is not None:
            writer.writerow(row | {"payload": json.dumps(row["payload"], sort_keys=True)})
        else:
            out.write(json.dumps(row, sort_keys=False) + "\n")
        count += 1
    return count
