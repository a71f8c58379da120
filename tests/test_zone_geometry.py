"""Zones as geometry (SPEC 4.2, issue 10): polygons checked by shapely on load and in the admin, time zones
checked, and the zone page's map."""

import io
import json
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.forms.models import model_to_dict
from django.urls import reverse

from tests.conftest import DEMO_ZONES
from zones.models import Zone

pytestmark = pytest.mark.django_db

BOWTIE = [[[-9.20, 38.70], [-9.17, 38.73], [-9.17, 38.70], [-9.20, 38.73], [-9.20, 38.70]]]
OVER_CENTRO = [[[-9.15, 38.71], [-9.11, 38.71], [-9.11, 38.72], [-9.15, 38.72], [-9.15, 38.71]]]
WEST_OF_CENTRO = [[[-9.20, 38.70], [-9.16, 38.70], [-9.16, 38.73], [-9.20, 38.73], [-9.20, 38.70]]]


def _load_with(tmp_path, code: str, coordinates, **properties):
    collection = json.loads(DEMO_ZONES.read_text())
    collection["features"].append(
        {
            "type": "Feature",
            "properties": {"code": code, "name": code.title()} | properties,
            "geometry": {"type": "Polygon", "coordinates": coordinates},
        }
    )
    path = tmp_path / "zones.geojson"
    path.write_text(json.dumps(collection))
    call_command("load_zones", str(path), stdout=io.StringIO())


def test_a_self_intersecting_polygon_is_refused_on_load_with_where(tmp_path):
    with pytest.raises(CommandError, match=r"zone oeste: .*not valid: Self-intersection\[-9\.185 38\.715\]"):
        _load_with(tmp_path, "oeste", BOWTIE)
    assert not Zone.objects.exists()  # nothing of the file is loaded


def test_a_polygon_overlapping_an_active_zone_is_refused_on_load(tmp_path):
    with pytest.raises(CommandError, match=r"zone baixa: .*overlaps the active zone Centro \(centro\) over 75%"):
        _load_with(tmp_path, "baixa", OVER_CENTRO)


def test_zones_that_only_share_a_border_load(tmp_path):
    _load_with(tmp_path, "oeste", WEST_OF_CENTRO, neighbours=["centro"], time_zone="Europe/Lisbon")
    assert Zone.objects.get(code="oeste").contains(38.71, -9.18)


def test_an_inactive_zone_may_overlap(tmp_path):
    _load_with(tmp_path, "baixa", OVER_CENTRO, active=False)
    assert not Zone.objects.get(code="baixa").active


def test_an_unknown_time_zone_is_refused(tmp_path):
    with pytest.raises(CommandError, match="'Europe/Lisboa' is not an IANA time zone"):
        _load_with(tmp_path, "oeste", WEST_OF_CENTRO, time_zone="Europe/Lisboa")


def test_local_times_follow_the_zone(zones):
    from datetime import UTC, datetime

    zone = zones["centro"]
    zone.time_zone = "America/New_York"
    assert zone.local_time(datetime(2026, 11, 25, 12, 0, tzinfo=UTC)).strftime("%H:%M") == "07:00"


def _admin_form(zone: Zone, **changes) -> dict:
    data = model_to_dict(zone) | changes
    data["polygon"] = json.dumps(data["polygon"])
    data["neighbours"] = [n.pk for n in data["neighbours"]]
    return {name: value for name, value in data.items() if name != "id"}


def test_the_admin_refuses_an_overlapping_polygon_with_a_clear_message(admin_client, zones):
    norte = zones["norte"]
    url = reverse("admin:zones_zone_change", args=[norte.pk])
    moved = {"type": "Polygon", "coordinates": OVER_CENTRO}
    response = admin_client.post(url, _admin_form(norte, polygon=moved))
    assert response.status_code == 200  # the form again, with the error
    errors = response.context["adminform"].form.errors
    assert "overlaps the active zone Centro (centro) over 75%" in errors["polygon"][0]
    norte.refresh_from_db()
    assert norte.polygon["coordinates"] != OVER_CENTRO


def test_the_admin_refuses_a_self_intersecting_polygon_and_a_bad_time_zone(admin_client, zones):
    norte = zones["norte"]
    url = reverse("admin:zones_zone_change", args=[norte.pk])
    response = admin_client.post(
        url, _admin_form(norte, polygon={"type": "Polygon", "coordinates": BOWTIE}, time_zone="Mars/Olympus")
    )
    errors = response.context["adminform"].form.errors
    assert "Self-intersection" in errors["polygon"][0]
    assert "'Mars/Olympus' is not an IANA time zone" in errors["time_zone"][0]


def test_a_zone_cannot_be_its_own_neighbour_in_the_admin_or_on_load(admin_client, zones, tmp_path):
    """Its searches would read its drivers twice, each of them a candidate twice."""
    norte = zones["norte"]
    url = reverse("admin:zones_zone_change", args=[norte.pk])
    form = _admin_form(norte)
    response = admin_client.post(url, form | {"neighbours": [*form["neighbours"], norte.pk]})
    assert "neighbours" in response.context["adminform"].form.errors
    assert norte.pk not in set(norte.neighbours.values_list("pk", flat=True))
    with pytest.raises(CommandError, match="zone loop: a zone cannot be its own neighbour"):
        _load_with(tmp_path, "loop", WEST_OF_CENTRO, neighbours=["loop"])


def test_the_admin_saves_thresholds_only_in_order(admin_client, zones):
    norte = zones["norte"]
    url = reverse("admin:zones_zone_change", args=[norte.pk])
    response = admin_client.post(url, _admin_form(norte, busy_pressure=2.0, critical_pressure=1.5))
    assert "above the busy one" in response.context["adminform"].form.errors["critical_pressure"][0]
    saved = admin_client.post(url, _admin_form(norte, busy_pressure=1.5, critical_pressure=3.0, surge_busy="1.30"))
    assert saved.status_code == 302
    norte.refresh_from_db()
    assert (norte.busy_pressure, norte.critical_pressure, str(norte.surge_busy)) == (1.5, 3.0, "1.30")


def test_the_ladders_steps_and_the_surges_are_saved_only_in_order(admin_client, zones, tmp_path):
    """Saved out of order, a warning came after the alert (the delivery already at level 2), and a critical zone
    paid its drivers less than a busy one."""
    norte = zones["norte"]
    url = reverse("admin:zones_zone_change", args=[norte.pk])
    refused = {
        "escalation_warn_s": 600,
        "escalation_alert_s": 300,
        "escalation_critical_s": 300,
        "surge_busy": "1.60",
        "surge_critical": "1.40",
    }
    form = admin_client.post(url, _admin_form(norte, **refused)).context["adminform"].form
    assert {name: errors[0] for name, errors in form.errors.items()} == {
        "escalation_alert_s": "The alert must come after the warning.",
        "escalation_critical_s": "The critical step must come after the alert.",
        "surge_critical": "The critical surge cannot be below the busy one.",
    }
    norte.refresh_from_db()
    assert (norte.escalation_warn_s, norte.surge_critical) == (120, Decimal("1.50"))
    with pytest.raises(CommandError, match=r"surge_busy.*cannot be below the normal one"):
        _load_with(tmp_path, "oeste", WEST_OF_CENTRO, surge_normal="1.30", surge_busy="1.10")

    equal_surges = {"surge_busy": "1.50", "surge_critical": "1.50"}  # a busy zone paid as a critical one: allowed
    assert admin_client.post(url, _admin_form(norte, **equal_surges)).status_code == 302


def test_the_admin_refuses_a_policy_under_which_dispatch_stops(admin_client, zones):
    """Each was saved: a stale limit of 0 set every online driver of the zone offline at each sweep, a radius factor
    under 1 made the ladder's widened search narrower than the zone's own, and 0 missed offers or offer rounds
    acted on the first one."""
    norte = zones["norte"]
    url = reverse("admin:zones_zone_change", args=[norte.pk])
    refused = {
        "stale_after_s": 0,
        "escalation_radius_factor": 0.5,
        "missed_offers_before_offline": 0,
        "escalation_max_offer_rounds": 0,
    }
    response = admin_client.post(url, _admin_form(norte, **refused))
    assert response.status_code == 200  # the form again, with the errors, holding what was typed
    form = response.context["adminform"].form
    assert set(form.errors) == set(refused)
    assert "greater than or equal to 30" in form.errors["stale_after_s"][0]
    assert "greater than or equal to 1.0" in form.errors["escalation_radius_factor"][0]
    assert {name: form.data[name] for name in refused} == {name: str(value) for name, value in refused.items()}
    norte.refresh_from_db()
    assert (norte.stale_after_s, norte.escalation_radius_factor, norte.missed_offers_before_offline) == (90, 1.5, 3)


def test_the_zone_page_draws_the_zone_and_its_neighbours_on_a_map(admin_client, zones):
    page = admin_client.get(reverse("admin:zones_zone_change", args=[zones["centro"].pk]))
    roles = {zone["code"]: zone["role"] for zone in page.context["zone_map"]["zones"]}
    assert roles == {"centro": "self", "norte": "neighbour", "este": "neighbour"}
    html = page.content.decode()
    assert 'id="zone-map"' in html and "vendor/leaflet/leaflet.js" in html
    assert "//unpkg" not in html and "cdn" not in html.lower()  # nothing from outside: it works offline


def test_snapshots_are_listed_in_the_zones_local_time(admin_client, zones):
    from deliveries.services import balancing

    zones["centro"].time_zone = "Asia/Tokyo"
    zones["centro"].save()
    balancing.take_zone_snapshots()
    url = reverse("admin:zones_zonesnapshot_changelist")
    page = admin_client.get(url, {"zone__id__exact": zones["centro"].pk})
    assert " JST" in page.content.decode()


def test_a_zones_history_says_who_changed_its_policy_and_from_what(admin_client, zones):
    norte = zones["norte"]
    url = reverse("admin:zones_zone_change", args=[norte.pk])
    before = ", ".join(sorted(norte.neighbours.values_list("code", flat=True)))
    changes = {"offer_timeout_s": 15, "surge_busy": "1.30", "neighbours": []}
    assert admin_client.post(url, _admin_form(norte, **changes)).status_code == 302

    history = admin_client.get(reverse("admin:zones_zone_history", args=[norte.pk])).content.decode()
    assert "Offer timeout s: 30 → 15" in history
    assert "Surge busy: 1.20 → 1.30" in history
    assert before
    assert f"Neighbours: {before} → none" in history
