import json
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from analytics.replay.world import ReplayDay


class Command(BaseCommand):
    help = (
        "Play a recorded day in this (empty, scratch) database and write its KPIs as JSON. "
        "Run by `manage.py replay`, in a database of its own; refuses a database that holds any table."
    )

    def add_arguments(self, parser):
        parser.add_argument("recording", type=Path)
        parser.add_argument("result", type=Path)
        parser.add_argument("--changes", default="{}", help='policy per zone code ("*" for all), as JSON')
        parser.add_argument("--seed", type=int, default=1)

    def handle(self, *args, recording, result, changes, seed, **options):
        # Before migrating: a database with anything in it is someone's, whose schema a migration would change.
        if connection.introspection.table_names():
            raise CommandError("the replay runs only in an empty database (`manage.py replay` makes one)")
        call_command("migrate", verbosity=0, interactive=False)
        try:
            day = ReplayDay(json.loads(recording.read_text()), changes=json.loads(changes), seed=seed)
            figures = day.run()
        except ValidationError as exc:
            raise CommandError(str(exc)) from exc
        result.write_text(json.dumps(figures))
