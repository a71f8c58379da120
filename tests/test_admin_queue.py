"""The escalation queue and the driver page of the ops console: what ops see first, and the actions that
acknowledge, resolve, or take a driver offline, each recorded as done by ops."""

import re

import pytest
from django.contrib.messages import get_messages
from django.db import transaction
from django.db.models import F
from django.urls import reverse

from core.audit import Actor
from core.models import AuditEvent
from deliveries.admin.driver import DriverAdmin
from deliveries.models import DeliveryStatus, Escalation, EscalationLevel, EscalationStatus, Offer, OfferStatus
from deliveries.services.escalations import acknowledge_escalation, raise_escalation_locked, resolve_escalation
from deliveries.services.offers import decline_offer
from deliveries.services.progress import deliver_delivery, pick_up_delivery
from deliveries.services.reassignment import force_assign
from drivers.models import Driver, DriverMessage, DriverState
from tests import factories

pytestmark = pytest.mark.django_db

QUEUE = "admin:deliveries_escalation_changelist"


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def escalated(merchant, external_id: str, *, level: EscalationLevel, reason=Escalation.Reason.UNASSIGNED) -> Escalation:
    # A driver in reach declines it first: nothing escalates it by itself ("no candidate at all" would).
    factories.online_driver(*factories.CENTRO)
    delivery = factories.new_delivery(merchant, external_id)
    offer = Offer.objects.get(delivery=delivery, status=OfferStatus.PENDING)
    decline_offer(offer.pk, actor=Actor.driver(offer.driver), reason="busy")
    with transaction.atomic():
        return raise_escalation_locked(delivery, level=level, reason=reason, detail="test")


def test_the_queue_shows_the_most_severe_then_the_oldest_first(admin_client, merchant, clock):
    old_alert = escalated(merchant, "old-alert", level=EscalationLevel.ALERT)
    clock.shift(60)
    critical = escalated(merchant, "critical", level=EscalationLevel.CRITICAL)
    clock.shift(60)
    new_alert = escalated(merchant, "new-alert", level=EscalationLevel.ALERT)
    clock.shift(240)
    page = admin_client.get(reverse(QUEUE))
    assert [e.pk for e in page.context["cl"].result_list] == [critical.pk, old_alert.pk, new_alert.pk]
    assert "6 min" in page.content.decode()  # how long the oldest has been open

    resolve_escalation(critical.pk, actor=Actor.ops(factories.UserFactory()), note="called the shop")
    open_only = admin_client.get(reverse(QUEUE), {"status__exact": "open"})
    assert [e.pk for e in open_only.context["cl"].result_list] == [old_alert.pk, new_alert.pk]
    resolved = admin_client.get(reverse(QUEUE), {"status__exact": "resolved"})
    assert [e.pk for e in resolved.context["cl"].result_list] == [critical.pk]


def test_the_queue_lists_what_is_still_unresolved_before_what_is_resolved(admin_client, merchant, clock):
    # Yesterday's critical one, long resolved, and today's alert nobody has looked at yet: the alert is what ops
    # must see first, not on the last page behind every resolved escalation of the past weeks.
    handled = escalated(merchant, "handled", level=EscalationLevel.CRITICAL)
    resolve_escalation(handled.pk, actor=Actor.ops(factories.UserFactory()), note="called the shop")
    clock.shift(86_400)
    waiting = escalated(merchant, "waiting", level=EscalationLevel.ALERT)
    clock.shift(60)
    seen = escalated(merchant, "seen", level=EscalationLevel.ALERT)
    acknowledge_escalation(seen.pk, actor=Actor.ops(factories.UserFactory()))
    page = admin_client.get(reverse(QUEUE))
    assert [e.pk for e in page.context["cl"].result_list] == [waiting.pk, seen.pk, handled.pk]


def test_acknowledge_records_who_and_reports_resolved_ones(admin_client, admin_user, merchant, clock):
    waiting = escalated(merchant, "waiting", level=EscalationLevel.ALERT)
    done = escalated(merchant, "done", level=EscalationLevel.ALERT)
    resolve_escalation(done.pk, actor=Actor.ops(admin_user), note="sorted")
    response = admin_client.post(
        reverse(QUEUE), {"action": "acknowledge", "_selected_action": [waiting.pk, done.pk]}, follow=True
    )
    assert messages_of(response) == [
        "done (Unassigned too long): This escalation is already resolved.",
        "Acknowledged: 1 of 2.",
    ]
    waiting.refresh_from_db()
    assert (waiting.status, waiting.acknowledged_by) == (EscalationStatus.ACKNOWLEDGED, admin_user)
    event = AuditEvent.objects.get(subject_id=waiting.pk, type="escalation.acknowledged")
    assert (event.actor_kind, event.actor_id) == ("ops", str(admin_user.pk))


def test_resolve_asks_for_a_note_on_an_intermediate_page(admin_client, admin_user, merchant, clock):
    escalation = escalated(merchant, "stuck", level=EscalationLevel.ALERT)
    selection = {"action": "resolve", "_selected_action": [escalation.pk]}
    page = admin_client.post(reverse(QUEUE), selection)
    assert page.status_code == 200
    assert "What was done" in page.content.decode()
    assert "stuck (Unassigned too long)" in page.content.decode()
    assert Escalation.objects.get(pk=escalation.pk).status == EscalationStatus.OPEN

    response = admin_client.post(
        reverse(QUEUE), selection | {"apply": "1", "note": "found a driver by phone"}, follow=True
    )
    assert messages_of(response) == ["Resolved: 1 of 1."]
    escalation.refresh_from_db()
    assert escalation.status == EscalationStatus.RESOLVED
    assert (escalation.resolution_note, escalation.resolved_by) == ("found a driver by phone", admin_user)
    event = AuditEvent.objects.get(subject_id=escalation.pk, type="escalation.resolved")
    assert event.actor_kind == "ops" and event.payload["note"] == "found a driver by phone"


def test_escalations_are_not_edited_or_deleted_in_the_admin(admin_client, merchant, clock):
    escalation = escalated(merchant, "stuck", level=EscalationLevel.ALERT)
    change_url = reverse("admin:deliveries_escalation_change", args=[escalation.pk])
    html = admin_client.get(change_url).content.decode()
    assert 'name="_save"' not in html
    admin_client.post(change_url, {"status": "resolved", "level": EscalationLevel.ALERT, "reason": "unassigned"})
    delete = admin_client.post(reverse("admin:deliveries_escalation_delete", args=[escalation.pk]), {"post": "yes"})
    assert delete.status_code == 403
    assert Escalation.objects.get(pk=escalation.pk).status == EscalationStatus.OPEN


def test_the_driver_page_shows_state_and_current_and_recent_deliveries(admin_client, admin_user, merchant, clock):
    ana = factories.online_driver(*factories.CENTRO, name="Ana Silva")
    for external_id in ("earlier", "now"):
        delivery = factories.new_delivery(merchant, external_id)
        force_assign(delivery.pk, driver_id=ana.pk, actor=Actor.ops(admin_user))
        if external_id == "earlier":
            pick_up_delivery(delivery.pk, actor=Actor.driver(ana))
            deliver_delivery(delivery.pk, actor=Actor.driver(ana))
    page = admin_client.get(reverse("admin:drivers_driver_change", args=[ana.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert '<div class="readonly">Busy</div>' in html
    assert html.index(">now</a></td><td>assigned") < html.index(">earlier</a></td><td>delivered")

    # From the page to everything the driver did: their events, and no one else's.
    trail = admin_client.get(_link(html, "Every event of this driver"))
    events = trail.context["cl"].result_list
    assert {event.type for event in events} >= {"driver.state_changed", "delivery.delivered"}
    assert all(ana.pk in (event.driver_id, event.subject_id) for event in events)


def _link(html: str, text: str) -> str:
    return re.search(rf'<a href="([^"]+)">{text}</a>', html).group(1).replace("&amp;", "&")


def test_force_offline_hands_back_what_the_driver_holds_and_says_so(admin_client, admin_user, merchant, clock):
    ana = factories.online_driver(*factories.CENTRO, name="Ana Silva", capacity=2)
    delivery = factories.new_delivery(merchant, "held")
    force_assign(delivery.pk, driver_id=ana.pk, actor=Actor.ops(admin_user))
    on_its_way = factories.new_delivery(merchant, "on-its-way")
    force_assign(on_its_way.pk, driver_id=ana.pk, actor=Actor.ops(admin_user))
    pick_up_delivery(on_its_way.pk, actor=Actor.driver(ana))
    gone = factories.DriverFactory(name="Ben Costa")  # never came online
    idle = factories.online_driver(*factories.NORTE, name="Carla Idle")  # holds nothing: nothing more to say

    response = admin_client.post(
        reverse("admin:drivers_driver_changelist"),
        {"action": "force_offline", "_selected_action": [ana.pk, gone.pk, idle.pk]},
        follow=True,
    )
    assert messages_of(response) == [
        "Ana Silva: held back to dispatch; on-its-way escalated (picked up: never reassigned automatically).",
        "Ben Costa: already offline.",
        "Set offline: 2 of 3.",
    ]
    assert on_its_way.escalations.exists()
    ana.refresh_from_db()
    delivery.refresh_from_db()
    assert ana.state == DriverState.OFFLINE
    assert delivery.status == DeliveryStatus.PENDING and delivery.driver_id is None
    went = AuditEvent.objects.get(driver_id=ana.pk, type="driver.state_changed", to_state="offline")
    assert went.actor_kind == "ops" and went.payload["reason"] == "ops"


def test_raising_a_busy_drivers_capacity_makes_them_available_for_the_next_offer(
    admin_client, admin_user, merchant, clock, django_capture_on_commit_callbacks
):
    rider = factories.online_driver(*factories.CENTRO, name="Rita Rodrigues")
    factories.assigned_delivery(merchant, rider, "first")
    rider.refresh_from_db()
    assert (rider.state, rider.capacity) == (DriverState.BUSY, 1)
    form = {"user": rider.user_id, "name": rider.name, "phone": "", "vehicle": "bicycle"}
    form |= {"home_zone": rider.home_zone_id, "capacity": 2}
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("admin:drivers_driver_change", args=[rider.pk]), form)
    assert response.status_code == 302
    rider.refresh_from_db()
    assert (rider.state, rider.capacity) == (DriverState.AVAILABLE, 2)
    told = DriverMessage.objects.filter(driver=rider, type="driver.state").latest("seq").data
    assert (told["state"], told["reason"]) == ("available", "capacity_changed")  # the app hears it too
    event = AuditEvent.objects.filter(driver_id=rider.pk, type="driver.state_changed").latest("id")
    assert (event.actor_kind, event.from_state, event.to_state) == ("ops", "busy", "available")
    second = factories.new_delivery(merchant, "second")
    assert Offer.objects.get(delivery=second, status=OfferStatus.PENDING).driver == rider

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(reverse("admin:drivers_driver_change", args=[rider.pk]), form | {"capacity": 1})
    rider.refresh_from_db()
    assert (rider.state, rider.capacity) == (DriverState.BUSY, 1)  # what they carry fills it again


def test_a_capacity_of_zero_is_refused_as_create_driver_refuses_it(admin_client, zones):
    """Saved, it left the driver online and "busy" carrying nothing: never offered a job, and no word why."""
    rider = factories.online_driver(*factories.CENTRO, name="Rita Rodrigues")
    form = {"user": rider.user_id, "name": rider.name, "phone": "", "vehicle": "bicycle"}
    form |= {"home_zone": rider.home_zone_id, "capacity": 0}
    response = admin_client.post(reverse("admin:drivers_driver_change", args=[rider.pk]), form)
    assert response.status_code == 200
    assert "Ensure this value is greater than or equal to 1." in response.content.decode()
    rider.refresh_from_db()
    assert (rider.state, rider.capacity) == (DriverState.AVAILABLE, 1)


def test_saving_a_drivers_page_keeps_what_their_actions_changed_meanwhile(zones, admin_client, monkeypatch):
    """The console's form saved the whole row as it had read it: an accept committed between that read and the
    save was undone (the driver available again while carrying, their message numbers set back)."""
    rider = factories.online_driver(*factories.CENTRO, name="Rita Rodrigues")
    read = DriverAdmin.get_object

    def accepted_meanwhile(self, request, object_id, from_field=None):
        driver = read(self, request, object_id, from_field)
        # What an accept committed by another request writes to the driver's row (the form's own transaction is
        # open here, so the accept itself cannot run in it).
        Driver.objects.filter(pk=rider.pk).update(state=DriverState.BUSY, message_seq=F("message_seq") + 1)
        return driver

    monkeypatch.setattr(DriverAdmin, "get_object", accepted_meanwhile)
    form = {"user": rider.user_id, "name": "Rita R.", "phone": "", "vehicle": "bicycle"}
    form |= {"home_zone": rider.home_zone_id, "capacity": 1}
    response = admin_client.post(reverse("admin:drivers_driver_change", args=[rider.pk]), form)
    assert response.status_code == 302
    seq = rider.message_seq
    rider.refresh_from_db()
    assert (rider.name, rider.state, rider.message_seq) == ("Rita R.", DriverState.BUSY, seq + 1)


def test_an_escalations_history_is_its_audit_trail(admin_client, merchant):
    """Its "History" button showed Django's change log, empty: escalations change through actions, which audit."""
    escalation = escalated(merchant, "stuck-3", level=EscalationLevel.ALERT)
    acknowledge_escalation(escalation.pk, actor=Actor.ops(factories.UserFactory()))
    page = admin_client.get(reverse("admin:deliveries_escalation_history", args=[escalation.pk]), follow=True)
    events = page.context["cl"].result_list
    assert {(e.type, e.subject_id) for e in events} == {
        ("escalation.opened", escalation.pk),
        ("escalation.acknowledged", escalation.pk),
    }
