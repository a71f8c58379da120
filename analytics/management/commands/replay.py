import json
import os
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.core.management.base import BaseCommand, CommandError

from analytics.kpis import merge, stored_or_live_zone_facts, summarise_deliveries
from analytics.replay.recording import NothingRecorded, record_day
from zones.models import Zone

# Zone fields a replay may change: the policy numbers the console edits, not the zone's identity or shape.
NOT_POLICY = {"id", "code", "name", "polygon", "neighbours", "time_zone", "active"}
# Environment a replay's scratch run keeps: nothing that points at the real database, Redis, broker or metrics.
MAX_SEEDS = 10
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
        parser.add_argument(
            "--seeds",
            type=int,
            default=1,
            choices=range(1, MAX_SEEDS + 1),
            metavar=f"1..{MAX_SEEDS}",
            help="play each run with this many seeds (--seed, --seed+1, ...) and show their mean and range",
        )
        parser.add_argument("--json", dest="as_json", action="store_true", help="print every KPI of each run as JSON")

    def handle(self, *args, day, zone, set, seed, seeds, as_json, **options):
        changes = parse_changes(set)
        try:
            recording = record_day(day, zone)
        except NothingRecorded as exc:
            raise CommandError(str(exc)) from exc
        runs = {"recorded": recorded(list(Zone.objects.filter(code__in=recording["zones"])), day)}
        variants = {"replayed": {}} | ({"changed": changes} if changes else {})
        # Each variant with the same seeds, so the two differ by the policy alone, not by the draws.
        jobs = [(name, s) for name in variants for s in range(seed, seed + seeds)]
        with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:  # each run is a process of its own
            played = list(pool.map(lambda job: run_in_scratch(recording, variants[job[0]], job[1]), jobs))
        by_seed = {
            name: {s: figures for (n, s), figures in zip(jobs, played, strict=True) if n == name} for name in variants
        }
        runs |= {name: mean_of(list(figures.values())) for name, figures in by_seed.items()}
        if as_json:
            self.stdout.write(json.dumps(runs | ({"by_seed": by_seed} if seeds > 1 else {}), indent=2))
            return
        self.stdout.write(table(recording, changes, runs, by_seed if seeds > 1 else {}))


def recorded(zones: list[Zone], day: date) -> dict:
    """The day's KPIs as the dashboard shows them: from its rollup where it has one (a day past the snapshots'
    retention keeps their figures only there), else from the raw data."""
    return summarise_deliveries(merge(stored_or_live_zone_facts(zones, [day]).values()))


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


def mean_of(runs: list[dict]) -> dict:
    """Several seeds' figures as one run's: each number their mean (money to the cent); a count missing from one
    run's breakdown (decline reasons, escalation levels) is that run's 0; a figure no run has stays None."""
    if len(runs) == 1:
        return runs[0]
    combined = {}
    for key in dict.fromkeys(k for figures in runs for k in figures):
        values = [figures.get(key, 0) for figures in runs]
        if any(isinstance(value, dict) for value in values):
            combined[key] = mean_of([value if isinstance(value, dict) else {} for value in values])
            continue
        known = [value for value in values if value is not None]
        if not known:
            combined[key] = None
        elif isinstance(known[0], str):  # money, a decimal string with 2 places (API.md)
            combined[key] = str((sum(map(Decimal, known)) / len(known)).quantize(Decimal("0.01")))
        else:  # to the places of its figures (a count's mean to one)
            mean = statistics.fmean(known)
            whole = mean.is_integer() and all(isinstance(value, int) for value in known)
            combined[key] = int(mean) if whole else round(mean, max(map(_places, known)) or 1)
    return combined


def _places(number: int | float) -> int:
    return 0 if isinstance(number, int) else len(repr(number).partition(".")[2])


def table(recording: dict, changes: dict, runs: dict, by_seed: dict | None = None) -> str:
    said = ", ".join(
        f"{name}={value}" + ("" if code == "*" else f" ({code})")
        for code, fields in changes.items()
        for name, value in fields.items()
    )
    sizes = f"{_count(recording['deliveries'], 'delivery', 'deliveries')}, {_count(recording['drivers'], 'driver')}"
    what = f"Replay of {recording['day']} ({', '.join(recording['zones'])}): {sizes}"
    seeds = len(next(iter(by_seed.values()))) if by_seed else 1
    if seeds > 1:
        what += f"; {seeds} seeds each"
    rows = [
        [label] + [_cell(figures, key, (by_seed or {}).get(name)) for name, figures in runs.items()]
        for label, key in ROWS
    ]
    width = max(12, *(len(cell) + 2 for row in rows for cell in row[1:]))
    lines = [
        what + (f"; changed: {said}" if said else ""),
        "",
        f"{'':<26}" + "".join(f"{name:>{width}}" for name in runs),
    ]
    lines += [f"{label:<26}" + "".join(f"{cell:>{width}}" for cell in cells) for label, *cells in rows]
    lines += [
        "",
        "recorded: the day as it happened. replayed: the same deliveries and drivers under the policy as it is now;",
        "its distance from 'recorded' is the replay's own error. changed: as replayed, with the changes above.",
    ]
    if seeds > 1:
        lines.append(
            "A replay's figure is the mean of its seeds, their lowest and highest in brackets where they differ."
        )
    return "\n".join(lines) + "\n"


def _cell(figures: dict, key: str | tuple[str, str], by_seed: dict | None) -> str:
    def value_in(one: dict):
        return one.get(key[0], {}).get(key[1], 0) if isinstance(key, tuple) else one.get(key)

    shown = "-" if value_in(figures) is None else str(value_in(figures))
    seen = [value_in(one) for one in (by_seed or {}).values()]
    seen = sorted((v for v in seen if v is not None), key=float)
    if seen and seen[0] != seen[-1]:
        shown += f" ({seen[0]}–{seen[-1]})"
    return shown


def _count(items: list, one: str, many: str = "") -> str:
    return f"{len(items)} {one if len(items) == 1 else many or one + 's'}"
