"""Retention of the tables that grow every minute or with every order: each is purged daily by a beat job, in short
batches, of rows past their retention (a setting), and keeps what is still in use or still shown."""

import io
import re
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from analytics.rollup import roll_up_day
from config.celery import app
from core import purge
from deliveries.models import WebhookDelivery
from tests import factories
from zones.models import ZoneHint, ZoneSnapshot

pytestmark = pytest.mark.django_db

DAY = 24 * 3600


def _webhook(delivery, status: str, **fields) -> WebhookDelivery:
    """A webhook created now, in `status`, as the sender leaves it."""
    finished = {"next_attempt_at": None, "attempts": 1, "sent_at": timezone.now()} if status == "sent" else {}
    finished |= {"next_attempt_at": None, "attempts": 7, "last_error": "HTTP 500"} if status == "failed" else {}
    pending = {"next_attempt_at": timezone.now()} if status == "pending" else {}
    return WebhookDelivery.objects.create(
        merchant=delivery.merchant, delivery=delivery, type="delivery.status", body="{}", status=status,
        **finished | pending | fields,
    )  # fmt: skip


class FailingDelete:
    """A database that fails the `nth` DELETE statement (a lost connection, a statement timeout)."""

    def __init__(self, nth: int):
        self.nth, self.deletes = nth, 0

    def __call__(self, execute, sql, params, many, context):
        if sql.startswith("DELETE"):
            self.deletes += 1
            if self.deletes == self.nth:
                raise DatabaseError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)


@pytest.mark.parametrize(
    "task",
    [
        "deliveries.tasks.purge_old_webhooks",
        "deliveries.tasks.purge_old_zone_hints",
        "analytics.tasks.purge_old_zone_snapshots",
    ],
)
def test_each_retention_is_a_daily_beat_schedule(task):
    schedule = PeriodicTask.objects.get(task=task)
    assert schedule.enabled
    assert (schedule.interval.every, schedule.interval.period) == (DAY, "seconds")
    app.loader.import_default_modules()  # as a worker starts: every app's tasks module (autodiscovery)
    assert task in app.tasks


def test_finished_webhooks_are_kept_90_days_then_purged(merchant, clock):
    from deliveries.tasks import purge_old_webhooks

    delivery = factories.new_delivery(merchant)
    sent, failed = _webhook(delivery, "sent"), _webhook(delivery, "failed")
    clock.shift(DAY)
    newer = _webhook(delivery, "sent")
    clock.shift(89 * DAY)
    assert purge_old_webhooks() == 0  # exactly 90 days old: still kept
    clock.shift(1)
    assert purge_old_webhooks() == 2
    assert list(WebhookDelivery.objects.values_list("pk", flat=True)) == [newer.pk]
    assert not WebhookDelivery.objects.filter(pk__in=[sent.pk, failed.pk]).exists()


def test_a_pending_webhook_is_never_purged_however_old(merchant, clock):
    """Not yet tried, or retrying after failed attempts (a failed one ops sent again is pending too): deleting it
    would lose the event unsent."""
    from deliveries.tasks import purge_old_webhooks

    delivery = factories.new_delivery(merchant)
    waiting = _webhook(delivery, "pending")
    retrying = _webhook(delivery, "pending", attempts=3, last_error="HTTP 503")
    clock.shift(365 * DAY)
    assert purge_old_webhooks() == 0
    assert set(WebhookDelivery.objects.values_list("pk", flat=True)) == {waiting.pk, retrying.pk}


def test_a_failed_webhook_sent_again_while_the_purge_runs_is_kept(merchant, clock):
    """Ops press "Send failed webhooks again" (in another process) between the purge reading a batch and deleting
    it: the webhook is pending again, and stays."""
    from deliveries.tasks import purge_old_webhooks

    failed = _webhook(factories.new_delivery(merchant), "failed")
    clock.shift(91 * DAY)

    def sent_again_first(execute, sql, params, many, context):
        if sql.startswith("DELETE"):  # what resend_failed_webhook writes
            WebhookDelivery.objects.filter(pk=failed.pk).update(status="pending", next_attempt_at=timezone.now())
        return execute(sql, params, many, context)

    with connection.execute_wrapper(sent_again_first):
        assert purge_old_webhooks() == 0
    failed.refresh_from_db()
    assert failed.status == "pending"


def test_ops_sending_again_a_webhook_the_purge_just_took_are_told_so(merchant, clock, client, ops_user):
    """Ops select a failed webhook past its retention and press "Send failed webhooks again" just as the daily purge
    (another process) deletes it: they are told what became of it, and the other selected webhook goes."""
    purged, kept = (_webhook(factories.new_delivery(merchant), "failed") for _ in range(2))
    clock.shift(91 * DAY)
    kept.created_at = timezone.now()
    kept.save(update_fields=["created_at"])

    def purged_first(execute, sql, params, many, context):
        # The action's read of that one webhook, to lock it (the page's read of both has two parameters).
        one = len(params or ()) == 1 and str(params[0]).replace("-", "") == purged.pk.hex
        if sql.startswith("SELECT") and "webhookdelivery" in sql and one:
            WebhookDelivery.objects.filter(pk=purged.pk).delete()
        return execute(sql, params, many, context)

    client.force_login(ops_user)
    changelist = "/admin/deliveries/webhookdelivery/"
    with connection.execute_wrapper(purged_first):
        answer = client.post(
            changelist, {"action": "resend_failed", "_selected_action": [purged.pk, kept.pk]}, follow=True
        )
    assert answer.status_code == 200
    page = answer.content.decode()
    assert "Deleted meanwhile: finished webhooks are kept RELAY_WEBHOOK_RETENTION_DAYS" in page
    assert "Queued to be sent again: 1 of 2." in page
    kept.refresh_from_db()
    assert kept.status == "pending"


def test_the_webhook_retention_is_a_setting(merchant, clock, settings):
    from deliveries.tasks import purge_old_webhooks

    settings.RELAY_WEBHOOK_RETENTION = timedelta(days=30)
    _webhook(factories.new_delivery(merchant), "sent")
    clock.shift(30 * DAY + 1)
    assert purge_old_webhooks() == 1


@pytest.mark.django_db(transaction=True)
def test_a_purge_that_fails_part_way_keeps_its_batches_and_the_next_run_finishes(merchant, clock, monkeypatch):
    """Each batch is its own short transaction: a failure loses nothing still kept, and what it had not reached
    is deleted by the next run."""
    from deliveries.tasks import purge_old_webhooks

    monkeypatch.setattr(purge, "PURGE_BATCH", 2)
    delivery = factories.new_delivery(merchant)
    for _ in range(5):
        _webhook(delivery, "sent")
    kept = _webhook(delivery, "pending")
    clock.shift(91 * DAY)
    with connection.execute_wrapper(FailingDelete(2)), pytest.raises(DatabaseError):
        purge_old_webhooks()
    assert WebhookDelivery.objects.filter(status="sent").count() == 3  # the first batch's deletion stands
    assert purge_old_webhooks() == 3
    assert list(WebhookDelivery.objects.values_list("pk", flat=True)) == [kept.pk]


def _hint(zones, driver) -> ZoneHint:
    """A hint sent now to `driver` in Norte toward a critical Centro."""
    return ZoneHint.objects.create(
        driver=driver, zone=zones["centro"], from_zone=zones["norte"], sent_at=timezone.now(),
        surge_multiplier="1.50", message="High demand in Centro, +50%",
    )  # fmt: skip


def test_zone_hints_are_kept_90_days_then_purged(zones, clock):
    from deliveries.tasks import purge_old_zone_hints

    driver = factories.DriverFactory()
    _hint(zones, driver)
    clock.shift(DAY)
    newer = _hint(zones, driver)
    clock.shift(89 * DAY)
    assert purge_old_zone_hints() == 0  # exactly 90 days old: still kept
    clock.shift(1)
    assert purge_old_zone_hints() == 1
    assert list(ZoneHint.objects.values_list("pk", flat=True)) == [newer.pk]


def test_the_zone_hint_retention_is_a_setting(zones, clock, settings):
    from deliveries.tasks import purge_old_zone_hints

    settings.RELAY_ZONE_HINT_RETENTION = timedelta(days=7)
    _hint(zones, factories.DriverFactory())
    clock.shift(7 * DAY + 1)
    assert purge_old_zone_hints() == 1


LISBON = ZoneInfo("Europe/Lisbon")  # UTC+1 in August


def _snapshot(zone, taken_at: datetime, band: str = "critical") -> ZoneSnapshot:
    pressure, surge = {"normal": (0.5, "1.00"), "busy": (1.5, "1.20"), "critical": (3.0, "1.50")}[band]
    return ZoneSnapshot.objects.create(
        zone=zone, taken_at=taken_at, demand_open=3, demand_recent=3, supply_available=1, supply_busy=0,
        supply_on_break=0, pressure=pressure, band=band, surge_multiplier=Decimal(surge),
    )  # fmt: skip


def _kept() -> set:
    return set(ZoneSnapshot.objects.values_list("pk", flat=True))


def test_snapshots_go_by_whole_local_days_past_the_retention_and_only_once_rolled_up(zones, clock):
    """Now is 2026-11-25 12:00 UTC: the 90 days began on 2026-08-27 at 12:00 UTC, 13:00 in Lisbon."""
    from analytics.tasks import purge_old_zone_snapshots

    centro = zones["centro"]
    centro.time_zone = "Europe/Lisbon"
    centro.save()

    def at(day: int, hour: int, minute: int) -> datetime:
        return datetime(2026, 8, day, hour, minute, tzinfo=LISBON)

    not_rolled_up = _snapshot(centro, at(24, 12, 0))
    _snapshot(centro, at(25, 0, 0))
    _snapshot(centro, at(26, 23, 59))
    # Past the 90 days in UTC (26 August, 23:00) but its Lisbon day, 27 August, is not wholly past them.
    day_not_over = _snapshot(centro, at(27, 0, 0))
    just_inside = _snapshot(centro, at(27, 13, 1))
    for day in (25, 26, 27):
        roll_up_day(centro, date(2026, 8, day))
    assert purge_old_zone_snapshots() == 2
    assert _kept() == {not_rolled_up.pk, day_not_over.pk, just_inside.pk}

    clock.shift(DAY)  # 27 August is now wholly past the retention
    assert purge_old_zone_snapshots() == 2
    assert _kept() == {not_rolled_up.pk}
    roll_up_day(centro, date(2026, 8, 24))  # the day the rollup missed, rolled up by hand
    assert purge_old_zone_snapshots() == 1
    assert not ZoneSnapshot.objects.exists()


def test_a_day_the_rollup_missed_does_not_make_each_run_ask_again_for_the_days_purged_since(zones, clock):
    """The day stays (with its snapshots) until someone rolls it up; meanwhile each daily run asks each zone once,
    not once more for every day purged since."""
    from analytics.tasks import purge_old_zone_snapshots

    centro = zones["centro"]
    missed = _snapshot(centro, datetime(2026, 8, 1, 12, 0, tzinfo=ZoneInfo("UTC")))
    for day in range(2, 12):
        _snapshot(centro, datetime(2026, 8, day, 12, 0, tzinfo=ZoneInfo("UTC")))
        roll_up_day(centro, date(2026, 8, day))
    assert purge_old_zone_snapshots() == 10

    with CaptureQueriesContext(connection) as ran:
        assert purge_old_zone_snapshots() == 0
    assert len(ran) == 1 + len(zones)  # the zones, then one question each
    assert _kept() == {missed.pk}


def test_the_zone_snapshot_retention_is_a_setting(zones, clock, settings):
    from analytics.tasks import purge_old_zone_snapshots

    settings.RELAY_ZONE_SNAPSHOT_RETENTION = timedelta(days=7)
    _snapshot(zones["centro"], datetime(2026, 11, 17, 12, 0, tzinfo=ZoneInfo("UTC")))
    roll_up_day(zones["centro"], date(2026, 11, 17))
    assert purge_old_zone_snapshots() == 1


def _history(zones) -> None:
    """Snapshots in every band on two days long past and one still inside the retention (the demo zones keep
    UTC), every day rolled up."""
    for day in (date(2026, 8, 1), date(2026, 8, 2), date(2026, 11, 24)):
        midnight = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo("UTC"))
        for minute, band in enumerate(["critical", "busy", "normal", "critical"]):
            _snapshot(zones["centro"], midnight + timedelta(minutes=minute), band)
        _snapshot(zones["norte"], midnight, "busy")
    call_command("roll_up_kpis", "--from", "2026-08-01", "--to", "2026-11-24", stdout=io.StringIO())


def _shown(client, ops_api) -> dict:
    """What ops see for 1 August to today: the KPI API, and the dashboard's page and tables (nonces aside)."""
    dates = {"from": "2026-08-01", "to": "2026-11-25"}
    page = client.get("/admin/analytics/zoneday/dashboard/", dates).content.decode()
    tables = {
        table: b"".join(
            client.get("/admin/analytics/zoneday/dashboard/", dates | {"download": table}).streaming_content
        )
        for table in ("deliveries", "zones", "days")
    }
    return {
        "api": ops_api.get("/api/v1/ops/kpis", dates).json(),
        "page": re.sub(r'(nonce|value)="[^"]*"', "", page),
        "tables": tables,
    }


def test_the_kpis_and_the_dashboard_show_the_same_figures_after_the_purge_and_a_later_rollup(
    zones, clock, client, ops_user, ops_api
):
    from analytics.tasks import purge_old_zone_snapshots

    client.force_login(ops_user)
    _history(zones)
    before = _shown(client, ops_api)
    old_days = [row for row in before["api"]["days"] if row["day"] in ("2026-08-01", "2026-08-02")]
    assert [row["critical_share"] for row in old_days] == [0.4, 0.4]  # centro's 2 of 4 and norte's 0 of 1
    assert [row["mean_surge_multiplier"] for row in old_days] == [1.28, 1.28]

    assert purge_old_zone_snapshots() == 10  # 1 and 2 August; 24 November is kept
    assert _shown(client, ops_api) == before
    # A correction rolls the old days up again: their snapshot figures stay those of the row.
    call_command("roll_up_kpis", "--from", "2026-08-01", "--to", "2026-11-24", stdout=io.StringIO())
    assert _shown(client, ops_api) == before


@pytest.mark.django_db(transaction=True)
def test_a_snapshot_purge_that_fails_part_way_changes_no_figure_and_the_next_run_finishes(
    zones, clock, ops_api, monkeypatch
):
    from analytics.tasks import purge_old_zone_snapshots

    monkeypatch.setattr(purge, "PURGE_BATCH", 2)
    _history(zones)
    dates = {"from": "2026-08-01", "to": "2026-11-25"}
    before = ops_api.get("/api/v1/ops/kpis", dates).json()
    with connection.execute_wrapper(FailingDelete(2)), pytest.raises(DatabaseError):
        purge_old_zone_snapshots()
    assert ZoneSnapshot.objects.count() == 15 - 2  # the first batch's deletion stands, the rest is left
    assert ops_api.get("/api/v1/ops/kpis", dates).json() == before
    # A day rolled up again with part of its snapshots gone keeps its row's figures too.
    call_command("roll_up_kpis", "--from", "2026-08-01", "--to", "2026-08-02", stdout=io.StringIO())
    assert purge_old_zone_snapshots() == 8
    assert ZoneSnapshot.objects.count() == 5  # 24 November's
    assert ops_api.get("/api/v1/ops/kpis", dates).json() == before
