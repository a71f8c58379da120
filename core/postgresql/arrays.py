"""A compiled read's list arguments (core.compiled) as one array parameter, written by one Python call (issue 12).

psycopg writes a Python list element by element, calling the element type's dumper in Python for each, and Django
first prepares each value (a UUID string parsed into a `uuid.UUID`): ~100 µs for the 50 drivers of a dispatch's
candidate read, which passes them twice. Wrapped in `UUIDList` or `TextList`, the list is written as PostgreSQL's
array literal in one join (~1 µs) and sent typed `uuid[]` or `text[]`, as psycopg types a list of those; the
database parses it, and refuses a malformed UUID as it refuses one in any parameter.

An element is quoted, or (a UUID) checked to be hex digits and hyphens, so no value can add or split elements."""

import re
import uuid

from psycopg import adapt, postgres

_UUID_TEXT = re.compile(r"[0-9a-fA-F-]{32,36}\Z")


class UUIDList(list):
    """UUIDs, as `uuid.UUID` objects or their text (with or without hyphens)."""


class TextList(list):
    """Strings."""


class _UUIDListDumper(adapt.Dumper):
    oid = postgres.types["uuid"].array_oid

    def dump(self, obj: UUIDList) -> bytes:
        items = []
        for item in obj:
            if not isinstance(item, uuid.UUID) and not (isinstance(item, str) and _UUID_TEXT.match(item)):
                raise ValueError(f"not a UUID: {item!r}")
            items.append(str(item))
        return f"{{{','.join(items)}}}".encode()


class _TextListDumper(adapt.Dumper):
    oid = postgres.types["text"].array_oid

    def dump(self, obj: TextList) -> bytes:
        quoted = ['"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"' for item in obj]
        return f"{{{','.join(quoted)}}}".encode()


def register(context: adapt.AdaptersMap) -> None:
    context.register_dumper(UUIDList, _UUIDListDumper)
    context.register_dumper(TextList, _TextListDumper)
