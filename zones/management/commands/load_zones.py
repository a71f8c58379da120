import json
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from zones.models import Zone

# Properties that are not policy fields of the model.
_IDENTITY = {"code", "name", "neighbours", "time_zone", "active"}


def _policy_fields() -> set[str]:
    return {
        field.name
        for field in Zone._meta.concrete_fields
        if field.editable and field.name not in _IDENTITY | {"id", "polygon"}
    }


class Command(BaseCommand):
    help = "Create or update zones from a GeoJSON FeatureCollection (properties: code, name, policy fields)."

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path)

    def handle(self, *args, path: Path, **options):
        try:
            collection = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
        if collection.get("type") != "FeatureCollection":
            raise CommandError("expected a GeoJSON FeatureCollection")
        policy = _policy_fields()
        neighbours: dict[str, list[str]] = {}
        with transaction.atomic():
            for index, feature in enumerate(collection.get("features", [])):
                props = dict(feature.get("properties") or {})
                code = props.get("code")
                if not code or not props.get("name"):
                    raise CommandError(f"feature {index} needs 'code' and 'name' properties")
                unknown = set(props) - policy - _IDENTITY
                if unknown:
                    raise CommandError(f"zone {code}: unknown properties {sorted(unknown)}")
                zone = Zone.objects.filter(code=code).first() or Zone(code=code)
                zone.name = props["name"]
                zone.polygon = feature.get("geometry")
                zone.time_zone = props.get("time_zone", zone.time_zone)
                zone.active = props.get("active", True)
                for name in policy & set(props):
                    setattr(zone, name, props[name])
                try:
                    zone.full_clean(exclude=["neighbours"])
                except ValidationError as exc:
                    raise CommandError(f"zone {code}: {exc.message_dict}") from exc
                created = zone.pk is None
                zone.save()
                neighbours[code] = props.get("neighbours", [])
                self.stdout.write(f"{'created' if created else 'updated'} zone {code}")
            for code, names in neighbours.items():
                found = list(Zone.objects.filter(code__in=names))
                missing = set(names) - {zone.code for zone in found}
                if missing:
                    raise CommandError(f"zone {code}: unknown neighbours {sorted(missing)}")
                if code in names:
                    raise CommandError(f"zone {code}: a zone cannot be its own neighbour")
                Zone.objects.get(code=code).neighbours.set(found)
