"""Export the audit trail of a time window, for auditors and offline analysis (SPEC 3.2)."""

from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError

from core.export import FORMATS, write_events
from core.models import AuditEvent


def _instant(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"not an ISO 8601 time: {value!r}") from exc
    # A time without offset is read as UTC, the time zone the API speaks (API.md).
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = "Write audit events with since <= occurred_at < until as CSV or JSON lines."

    def add_arguments(self, parser):
        parser.add_argument("--since", required=True, type=_instant, help="ISO 8601, inclusive (UTC if no offset)")
        parser.add_argument("--until", required=True, type=_instant, help="ISO 8601, exclusive (UTC if no offset)")
        parser.add_argument("--format", choices=FORMATS, default="jsonl")
        parser.add_argument("--output", help="file to write (default: standard output)")

    def handle(self, *args, since, until, format, output, **options):
        if until <= since:
            raise CommandError("--until must be after --since")
        window = AuditEvent.objects.filter(occurred_at__gte=since, occurred_at__lt=until).order_by("id")
        events = window.iterator(chunk_size=2000)
        if output:
            with open(output, "w", encoding="utf-8", newline="") as out:
                count = write_events(events, out, format)
        else:
            self.stdout.ending = ""  # rows carry their own line endings
            count = write_events(events, self.stdout, format)
        # The count goes to stderr so that stdout stays a clean export when piped.
        self.stderr.write(f"exported {count} events")
