"""The audit trail is append-only everywhere (ORM, admin, raw SQL on PostgreSQL) and exports as CSV/JSON lines."""

import csv
import functools
import io
import json

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from core.audit import Actor, atomic_action, record_event
from core.models import AppendOnlyError, AuditEvent
from deliveries.services.availability import go_online
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def events(zones, clock):
    """Events of two drivers going online, one minute apart: state change + shift start each."""
    first = factories.DriverFactory(name="Ana Silva")
    go_online(first.pk, actor=Actor.driver(first))
    clock.shift(60)
    second = factories.DriverFactory(name="Ben Costa")
    go_online(second.pk, actor=Actor.driver(second))
    return list(AuditEvent.objects.order_by("id"))


def test_the_orm_refuses_to_change_or_delete_an_event(events):
    event = events[0]
    event.type = "forged"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(type="forged")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).delete()
    # The manager Django itself uses (related lookups, refresh_from_db) is the guarded one too: on SQLite, the
    # embedded default, there is no trigger behind it.
    with pytest.raises(AppendOnlyError):
        AuditEvent._base_manager.filter(pk=event.pk).update(type="forged")
    with pytest.raises(AppendOnlyError):
        AuditEvent._base_manager.filter(pk=event.pk).delete()
    assert AuditEvent.objects.get(pk=event.pk).type == "driver.state_changed"
    assert AuditEvent.objects.count() == len(events)


@pytest.mark.postgres
def test_postgres_refuses_update_and_delete_even_in_raw_sql(events):
    event = events[0]
    with connection.cursor() as cursor:
        for sql in (
            "UPDATE core_auditevent SET type = 'forged' WHERE id = %s",
            "DELETE FROM core_auditevent WHERE id = %s",
        ):
            with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
                cursor.execute(sql, [event.pk])
        cursor.execute("SELECT type FROM core_auditevent WHERE id = %s", [event.pk])
        assert cursor.fetchone() == ("driver.state_changed",)
    assert AuditEvent.objects.count() == len(events)


def test_the_admin_shows_events_read_only(admin_client, events):
    event = events[0]
    change_url = reverse("admin:core_auditevent_change", args=[event.pk])
    page = admin_client.get(change_url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "driver.state_changed" in html
    assert reverse("admin:core_auditevent_delete", args=[event.pk]) not in html
    assert 'name="_save"' not in html
    assert admin_client.get(reverse("admin:core_auditevent_add")).status_code == 403
    assert admin_client.post(change_url, {"type": "forged"}).status_code == 403
    delete = admin_client.post(reverse("admin:core_auditevent_delete", args=[event.pk]), {"post": "yes"})
    assert delete.status_code == 403
    listing = admin_client.post(
        reverse("admin:core_auditevent_changelist"),
        {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"},
    )
    assert AuditEvent.objects.filter(pk=event.pk).exists()
    assert listing.status_code in (200, 302)
    assert AuditEvent.objects.count() == len(events)


def test_the_event_list_does_not_grow_queries_with_rows(admin_client, events, django_assert_max_num_queries):
    with django_assert_max_num_queries(8):
        response = admin_client.get(reverse("admin:core_auditevent_changelist"), {"family": "driver"})
    assert response.status_code == 200
    assert response.content.decode().count("driver.state_changed") >= 2


def test_the_event_list_opens_on_the_latest_events(admin_client, events):
    listed = admin_client.get(reverse("admin:core_auditevent_changelist")).context["cl"].result_list
    assert [event.pk for event in listed] == [event.pk for event in reversed(events)]


def test_export_command_writes_the_window_as_jsonl(events):
    out, err = io.StringIO(), io.StringIO()
    # The second driver's events happened at 12:01: outside [12:00, 12:01).
    call_command(
        "export_events",
        "--since=2026-11-25T12:00:00+00:00",
        "--until=2026-11-25T12:01:00",
        "--format=jsonl",
        stdout=out,
        stderr=err,
    )
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    first_two = events[:2]
    assert [row["id"] for row in rows] == [e.pk for e in first_two]
    assert rows[0]["type"] == "driver.state_changed"
    assert rows[0]["to_state"] == "available"
    assert rows[0]["payload"]["reason"] == "shift started"
    assert rows[0]["occurred_at"] == "2026-11-25T12:00:00+00:00"
    assert "exported 2 events" in err.getvalue()


def test_export_command_writes_csv_to_a_file(events, tmp_path):
    target = tmp_path / "events.csv"
    call_command(
        "export_events",
        "--since=2026-11-25T00:00:00Z",
        "--until=2026-11-26T00:00:00Z",
        "--format=csv",
        f"--output={target}",
        stderr=io.StringIO(),
    )
    with target.open(encoding="utf-8", newline="") as exported:
        rows = list(csv.DictReader(exported))
    assert [int(row["id"]) for row in rows] == [e.pk for e in events]
    assert json.loads(rows[0]["payload"])["reason"] == "shift started"
    assert rows[0]["delivery_id"] == ""


def test_export_command_refuses_a_bad_window(db):
    with pytest.raises(Exception, match="not an ISO 8601 time"):
        call_command("export_events", "--since=yesterday", "--until=2026-11-26")
    with pytest.raises(Exception, match="--until must be after --since"):
        call_command("export_events", "--since=2026-11-26", "--until=2026-11-25")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_admin_downloads_the_selected_events(admin_client, events, fmt):
    chosen = [events[0].pk, events[-1].pk]
    response = admin_client.post(
        reverse("admin:core_auditevent_changelist"), {"action": f"download_{fmt}", "_selected_action": chosen}
    )
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="audit-events.{fmt}"'
    text = response.content.decode()
    rows = list(csv.DictReader(io.StringIO(text))) if fmt == "csv" else list(map(json.loads, text.splitlines()))
    assert [int(row["id"]) for row in rows] == chosen
    assert rows[1]["type"] == events[-1].type


def test_event_search_by_type_or_driver(admin_client, events):
    url = reverse("admin:core_auditevent_changelist")
    by_type = admin_client.get(url, {"q": "shift.started"})
    assert [e.type for e in by_type.context["cl"].result_list] == ["shift.started", "shift.started"]
    by_driver = admin_client.get(url, {"q": str(events[0].driver_id)})
    assert by_driver.status_code == 200
    assert by_driver.context["cl"].result_count == 2


def _inserts_into_events(queries) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if q["sql"].startswith('INSERT INTO "core_auditevent"')]


def test_an_actions_events_are_written_in_one_insert_in_the_order_recorded(zones):
    driver = factories.DriverFactory()
    with CaptureQueriesContext(connection) as queries:
        go_online(driver.pk, actor=Actor.driver(driver))
    assert len(_inserts_into_events(queries)) == 1
    assert [e.type for e in AuditEvent.objects.filter(driver_id=driver.pk)] == ["driver.state_changed", "shift.started"]


def test_an_actions_payloads_are_read_back_exactly(zones):
    driver = factories.DriverFactory()
    payloads = [
        {"note": 'quotes " and \\ backslashes', "names": ["Zoë", "O'Brien"], "n": 1.5, "none": None},
        {"nested": {"list": [{"a": '{"not": "json"}'}], "empty": {}}},
    ]
    with CaptureQueriesContext(connection) as queries, atomic_action():
        for payload in payloads:
            record_event(
                "driver.note", actor=Actor.system("test"), subject=driver, driver_id=driver.pk, payload=payload
            )
    assert len(_inserts_into_events(queries)) == 1
    assert [e.payload for e in AuditEvent.objects.filter(driver_id=driver.pk).order_by("id")] == payloads


def test_an_action_that_fails_leaves_no_events(zones):
    driver = factories.DriverFactory()
    with pytest.raises(ValueError), atomic_action():
        record_event("driver.note", actor=Actor.system("test"), subject=driver, driver_id=driver.pk)
        raise ValueError("the change fails after its event was recorded")
    assert not AuditEvent.objects.filter(driver_id=driver.pk).exists()


def test_an_event_in_a_savepoint_goes_where_its_savepoint_goes(zones):
    """An event recorded in a savepoint inside an action is written at once: a rollback of that savepoint alone
    takes it away, and the action's own events stay."""
    driver = factories.DriverFactory()
    note = functools.partial(record_event, actor=Actor.system("test"), subject=driver, driver_id=driver.pk)
    with atomic_action():
        note("kept.before")
        with pytest.raises(ValueError), transaction.atomic():
            note("rolled.back")
            raise ValueError("the savepoint rolls back")
        with transaction.atomic():
            note("kept.in.savepoint")
        note("kept.after")
    kept = sorted(AuditEvent.objects.filter(driver_id=driver.pk).values_list("type", flat=True))
    assert kept == ["kept.after", "kept.before", "kept.in.savepoint"]
