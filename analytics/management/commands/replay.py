import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.core.management.base import BaseCommand, CommandError

from analytics.facts import zone_day_facts
from analytics.kpis import merge, summarise_deliveries
from analytics.replay.recording import NothingRecorded, record_day
from zones.models import Zone

# Zone fields a replay may change: the policy numbers the console edits, not the zone's identity or shape.
NOT_POLICY = {"id", "code", "name", "polygon", "neighbours", "time_zone", "active"}
# Environment a replay's scratch run keeps: nothing that points at the real database, Redis, broker or metrics.
KEPT_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "VIRTUAL_ENV", "PYTHONPATH")
ROWS = [
    ("deliveries", "deliveries"),
    ("delivered", "delivered"),
    ("cancelled", "cancelled"),
    ("refused when sent again", "refused"),
    ("still open at the end", "still_open"),
    ("offers per delivery", "offers_per_delivery"),
    ("acceptance rate", "acceptance_rate"),
    ("first offer accepted", "first_offer_success_rate"),
    ("time to assign p50 (s)", "time_to_assign_p50_s"),
    ("time to assign p90 (s)", "time_to_assign_p90_s"),
    ("escalations level 2", ("escalations_by_level", "2")),
    ("escalations level 3", ("escalations_by_level", "3")),
    ("delivery time p50 (s)", "delivery_time_p50_s"),
    ("delivery time p90 (s)", "delivery_time_p90_s"),
    ("driver pay", "driver_pay"),
    ("cost per delivery", "cost_per_delivery"),
    ("margin per delivery", "margin_per_delivery"),
    ("mean surge multiplier", "mean_surge_multiplier"),
]


class Command(BaseCommand):
    help = (
        "Replay a recorded day (SPEC 6): its deliveries and driver fleet played again against the real dispatch "
        "code on a moved clock, in a scratch database (nothing here is touched), under the zones' policy as it is "
        "and, with --set, as changed; prints the day's KPIs as recorded and as replayed, side by side."
    )

    def add_arguments(self, parser):
        parser.add_argument("--day", type=date.fromisoformat, required=True, help="the local day, YYYY-MM-DD")
        parser.add_argument("--zone", action="append", default=[], help="a zone code (default: every active zone)")
        parser.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="[ZONE.]FIELD=VALUE",
            help="a policy change for the replay: offer_timeout_s=20, centro.search_radius_km=3, ...",
        )
        parser.add_argument("--seed", type=int, default=1, help="drivers' answers are drawn from this seed")
        parser.add_argument("--json", dest="as_json", action="store_true", help="print every KPI of each run as JSON")

    def handle(self, *args, day, zone, set, seed, as_json, **options):
        changes = parse_changes(set)
        try:
            recording = record_day(day, zone)
        except NothingRecorded as exc:
            raise CommandError(str(exc)) from exc
        zones = list(Zone.objects.filter(code__in=recording["zones"]))
        runs = {"recorded": summarise_deliveries(merge(zone_day_facts(z, day) for z in zones))}
        variants = {"replayed": {}} | ({"changed": changes} if changes else {})
        with ThreadPoolExecutor() as pool:  # each run is a process of its own: both cores at once
            played = pool.map(lambda policy: run_in_scratch(recording, policy, seed), variants.values())
            runs |= dict(zip(variants, played, strict=True))
        if as_json:
            self.stdout.write(json.dumps(runs, indent=2))
            return
        self.stdout.write(table(recording, changes, runs))


def parse_changes(items: list[str]) -> dict[str, dict]:
    """`[ZONE.]FIELD=VALUE` items as {zone code or "*": {field: value}}, each checked as the console would."""
    changes: dict[str, dict] = {}
    for item in items:
        target, sep, value = item.partition("=")
        code, _, name = target.rpartition(".")
        if not sep or not name:
            raise CommandError(f"--set {item!r}: expected [ZONE.]FIELD=VALUE, e.g. offer_timeout_s=20")
        try:
            field = Zone._meta.get_field(name)
        except FieldDoesNotExist:
            field = None
        if field is None or name in NOT_POLICY or not field.editable:
            editable = sorted(f.name for f in Zone._meta.concrete_fields if f.editable and f.name not in NOT_POLICY)
            raise CommandError(f"--set {item!r}: {name!r} is not a zone policy field; one of: {', '.join(editable)}")
        changes.setdefault(code or "*", {})[name] = value
    for code, fields in changes.items():
        zones = Zone.objects.all() if code == "*" else Zone.objects.filter(code=code)
        if code != "*" and not zones:
            raise CommandError(f"--set: no zone {code!r}")
        for one in zones:
            for name, value in fields.items():
                setattr(one, name, value)
            try:
                one.full_clean()
            except ValidationError as exc:
                said = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
                raise CommandError(f"--set for zone {one.code}: {said}") from exc
    return changes


def run_in_scratch(recording: dict, changes: dict, seed: int) -> dict:
    """Play the recording in a database of its own (SQLite, in a temporary folder), in the embedded mode: no
    Redis, no broker, nothing pushed to anyone."""
    with tempfile.TemporaryDirectory(prefix="relay-replay-") as folder:
        where = Path(folder)
        (where / "recording.json").write_text(json.dumps(recording))
        env = {key: os.environ[key] for key in KEPT_ENV if key in os.environ}
        env |= {"DATABASE_URL": f"sqlite:///{where / 'replay.sqlite3'}", "REDIS_URL": "", "DEBUG": "0"}
        # Its own metrics folder: by default the deployment's, whose /metrics would count the replay's offers.
        env["PROMETHEUS_MULTIPROC_DIR"] = str(where / "metrics")
        env["SECRET_KEY"] = settings.SECRET_KEY
        command = [sys.executable, str(settings.BASE_DIR / "manage.py"), "replay_run"]
        command += [str(where / "recording.json"), str(where / "result.json")]
        command += ["--changes", json.dumps(changes), "--seed", str(seed)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode:
            raise CommandError(f"the replay failed:\n{done.stderr.strip()[-2000:]}")
        return json.loads((where / "result.json").read_text())


def table(recording: dict, changes: dict, runs: dict) -> str:
    said = ", ".join(
        f"{name}={value}" + ("" if code == "*" else f" ({code})")
        for code, fields in changes.items()
        for name, value in fields.items()
    )
    sizes = f"{_count(recording['deliveries'], 'delivery', 'deliveries')}, {_count(recording['drivers'], 'driver')}"
    what = f"Replay of {recording['day']} ({', '.join(recording['zones'])}): {sizes}"
    lines = [
        what + (f"; changed: {said}" if said else ""),
        "",
        f"{'':<26}" + "".join(f"{name:>12}" for name in runs),
    ]
    for label, key in ROWS:
        cells = []
        for figures in runs.values():
            value = figures.get(key[0], {}).get(key[1]) if isinstance(key, tuple) else figures.get(key)
            cells.append(f"{'-' if value is None else value:>12}")
        lines.append(f"{label:<26}" + "".join(cells))
    lines += [
        "",
        "recorded: the day as it happened. replayed: the same deliveries and drivers under the policy as it is now;",
        "its distance from 'recorded' is the replay's own error. changed: as replayed, with the changes above.",
    ]
    return "\n".join(lines) + "\n"


def _count(items: list, one: str, many: str = "") -> str:
    return f"{len(items)} {one if len(items) == 1 else many or one + 's'}"
