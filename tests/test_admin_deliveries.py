"""The delivery console: a list that stays cheap with thousands of rows, filters ops rely on, the timeline
with readable dispatch reasoning, and bulk actions that go through the domain actions one delivery at a time."""

import re
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from core.audit import Actor
from core.models import AuditEvent
from deliveries.models import Delivery, DeliveryStatus, EscalationLevel, Offer
from deliveries.services.availability import mark_stale_drivers, start_break
from deliveries.services.progress import pick_up_delivery
from deliveries.services.reassignment import force_assign
from drivers.models import DriverMessage
from tests import factories
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:deliveries_delivery_changelist"


def forced(delivery, driver, user) -> Delivery:
    force_assign(delivery.pk, driver_id=driver.pk, actor=Actor.ops(user))
    delivery.refresh_from_db()
    return delivery


def force_in_console(admin_client, delivery, driver):
    """Ops fill in the console's reassign form: this driver, forced."""
    url = reverse("admin:deliveries_delivery_reassign", args=[delivery.pk])
    return admin_client.post(url, {"driver": driver.pk, "force": "on"})


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def bulk_deliveries(merchant, zone, drivers, count: int, *, start: int = 0, age=timedelta(0)) -> None:
    """Rows straight into the table: what matters here is how many there are, not how they got there."""
    now = timezone.now()
    Delivery.objects.bulk_create(
        Delivery(
            merchant=merchant,
            zone=zone,
            driver=drivers[n % len(drivers)] if n % 2 else None,
            external_id=f"bulk-{n}",
            request_fingerprint=f"{n:064}",
            pickup_name="P",
            pickup_address="A",
            pickup_lat=38.715,
            pickup_lng=-9.14,
            dropoff_name="D",
            dropoff_address="B",
            dropoff_lat=38.72,
            dropoff_lng=-9.13,
            fee="4.00",
            distance_km=1.0,
            escalation_level=list(EscalationLevel)[n % len(EscalationLevel)],
            created_at=now - age - timedelta(seconds=n),
        )
        for n in range(start, start + count)
    )


def test_the_list_costs_the_same_queries_for_20_and_2000_deliveries(admin_client, merchant, zones):
    drivers = [factories.DriverFactory() for _ in range(3)]
    url = reverse(CHANGELIST)

    def render():
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(url)
        assert response.status_code == 200
        return response, len(queries)

    bulk_deliveries(merchant, zones["centro"], drivers, 20)
    small, small_queries = render()
    bulk_deliveries(merchant, zones["centro"], drivers, 1980, start=20)
    big, big_queries = render()
    assert big_queries == small_queries <= 15
    assert len(small.context["cl"].result_list) == 20
    assert len(big.context["cl"].result_list) == 100  # one page
    assert big.context["cl"].result_count == 2000
    html = big.content.decode()
    assert "bulk-0" in html and drivers[1].name in html


def test_the_list_filters_by_status_zone_level_and_age_and_searches_external_id(admin_client, merchant, zones, clock):
    bulk_deliveries(merchant, zones["centro"], [factories.DriverFactory()], 4, age=timedelta(minutes=2))
    bulk_deliveries(merchant, zones["norte"], [factories.DriverFactory()], 4, start=10, age=timedelta(minutes=10))
    bulk_deliveries(merchant, zones["centro"], [factories.DriverFactory()], 2, start=20, age=timedelta(minutes=30))
    url = reverse(CHANGELIST)

    def listed(**params) -> set[str]:
        return {d.external_id for d in admin_client.get(url, params).context["cl"].result_list}

    assert listed(age="lt5") == {"bulk-0", "bulk-1", "bulk-2", "bulk-3"}
    assert listed(age="5-15") == {"bulk-10", "bulk-11", "bulk-12", "bulk-13"}
    assert listed(age="gt15") == {"bulk-20", "bulk-21"}
    assert listed(zone__id__exact=zones["norte"].pk) == {"bulk-10", "bulk-11", "bulk-12", "bulk-13"}
    assert listed(level=EscalationLevel.CRITICAL) == {"bulk-3", "bulk-11"}
    assert listed(level=EscalationLevel.ALERT, age="gt15") == set()
    assert listed(status__exact="pending") == listed()
    assert listed(status__exact="delivered") == set()
    assert listed(q="bulk-12") == {"bulk-12"}


def test_ops_find_a_delivery_by_the_id_or_tracking_link_they_are_given(admin_client, merchant):
    """A merchant quotes the delivery's id (its API answers and webhooks carry it), a customer reads out their
    tracking link: either finds the delivery in the console, and a search that is neither finds nothing."""
    wanted = factories.new_delivery(merchant, "order-41")
    factories.new_delivery(merchant, "order-42")

    def found(q: str) -> list[str]:
        page = admin_client.get(reverse(CHANGELIST), {"q": q})
        assert page.status_code == 200
        return [d.external_id for d in page.context["cl"].result_list]

    assert found(str(wanted.pk)) == ["order-41"]
    assert found(f" {wanted.tracking_token} ") == ["order-41"]
    assert found("order-41") == ["order-41"]
    assert found("no-such-thing") == []


def test_the_change_page_shows_the_timeline_with_readable_dispatch_reasoning(admin_client, merchant, clock):
    factories.online_driver(*factories.CENTRO, name="Ana Silva")
    delivery = factories.new_delivery(merchant, "order-7")
    page = admin_client.get(reverse("admin:deliveries_delivery_change", args=[delivery.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "offered to Ana Silva, 0.0 km, 0 s" in html
    assert "pending → offered" in html
    assert reverse("admin:deliveries_delivery_reassign", args=[delivery.pk]) in html
    assert 'name="_save"' not in html  # a delivery changes through actions, not by saving the form
    timeline = page.context["timeline"]
    assert [event.type for event, _, _ in timeline][:2] == ["delivery.created", "dispatch.decided"]


def test_the_timeline_names_who_acted(admin_client, admin_user, merchant, clock):
    """Ops read "driver Ana Silva", not "driver 588eac5b-…", in the timeline's By column."""
    delivery = factories.new_delivery(merchant, "order-8")
    ana = factories.online_driver(*factories.CENTRO, name="Ana Silva")
    url = reverse("admin:deliveries_delivery_reassign", args=[delivery.pk])
    admin_client.post(url, {"driver": ana.pk, "force": "on"})
    assert api_client_for(ana.user).post(f"/api/v1/deliveries/{delivery.pk}/pickup").status_code == 200

    page = admin_client.get(reverse("admin:deliveries_delivery_change", args=[delivery.pk]))
    by = {(event.type, event.actor_kind): name for event, name, _ in page.context["timeline"]}
    assert by[("delivery.created", "merchant")] == merchant.name
    assert by[("delivery.assigned", "ops")] == admin_user.username
    assert by[("delivery.picked_up", "driver")] == "Ana Silva"
    assert by[("dispatch.no_candidate", "system")] == "dispatcher"  # a system actor keeps its word
    assert "driver <small>Ana Silva</small>" in page.content.decode()


def test_reassign_action_sends_back_what_it_can_and_reports_the_rest(admin_client, admin_user, merchant, clock):
    ana = factories.online_driver(*factories.CENTRO, name="Ana Silva")
    held = forced(factories.new_delivery(merchant, "held"), ana, admin_user)
    ben = factories.online_driver(*factories.CENTRO, name="Ben Costa")
    carried = forced(factories.new_delivery(merchant, "carried"), ben, admin_user)
    pick_up_delivery(carried.pk, actor=Actor.driver(ben))
    cara = factories.online_driver(*factories.CENTRO, name="Cara Dias")

    response = admin_client.post(
        reverse(CHANGELIST), {"action": "send_back_to_dispatch", "_selected_action": [held.pk, carried.pk]}, follow=True
    )
    assert response.status_code == 200
    assert messages_of(response) == [
        "carried: The delivery has been picked up; it can no longer be cancelled or handed back.",
        "Sent back to dispatch and offered to a driver: 1 of 2.",
    ]
    held.refresh_from_db()
    carried.refresh_from_db()
    assert held.driver_id is None and held.reassignment_count == 1
    assert factories.pending_offer(held).driver == cara
    assert (carried.status, carried.driver_id) == (DeliveryStatus.PICKED_UP, ben.pk)
    handed_back = AuditEvent.objects.get(delivery_id=held.pk, type="delivery.pending", from_state="assigned")
    assert handed_back.actor_kind == "ops" and handed_back.payload["reason"] == "reassigned by ops"


def test_reassign_action_past_the_limit_offers_it_or_says_nobody_can_take_it(admin_client, admin_user, merchant, clock):
    ana = factories.online_driver(*factories.CENTRO, name="Ana Silva")
    ben = factories.online_driver(*factories.CENTRO, name="Ben Costa")
    first = forced(factories.new_delivery(merchant, "first"), ana, admin_user)
    second = forced(factories.new_delivery(merchant, "second"), ben, admin_user)
    limit = first.zone.max_reassignments
    Delivery.objects.filter(pk__in=[first.pk, second.pk]).update(reassignment_count=limit)  # at the limit
    cara = factories.online_driver(*factories.CENTRO, name="Cara Dias")
    url = reverse(CHANGELIST)

    offered = admin_client.post(url, {"action": "send_back_to_dispatch", "_selected_action": [first.pk]}, follow=True)
    assert messages_of(offered) == ["Sent back to dispatch and offered to a driver: 1 of 1."]
    first.refresh_from_db()
    assert (first.status, first.reassignment_count) == (DeliveryStatus.OFFERED, limit + 1)
    assert factories.pending_offer(first).driver == cara

    # Nobody for `second`: Ben had it, Cara is answering an offer, and Ana (freed by `first`) is on a break.
    start_break(ana.pk, actor=Actor.driver(ana))
    nobody = admin_client.post(url, {"action": "send_back_to_dispatch", "_selected_action": [second.pk]}, follow=True)
    assert messages_of(nobody) == ["second: sent back to dispatch, not offered: nobody to offer it to now."]
    second.refresh_from_db()
    assert (second.status, second.driver_id) == (DeliveryStatus.PENDING, None)


def test_rerun_dispatch_offers_once_a_driver_is_there(admin_client, merchant, clock):
    delivery = factories.new_delivery(merchant, "lonely")
    url = reverse(CHANGELIST)
    first = admin_client.post(url, {"action": "dispatch_again", "_selected_action": [delivery.pk]}, follow=True)
    assert messages_of(first) == ["lonely: not offered: nobody to offer it to now."]  # as "Reassign" says it
    factories.online_driver(*factories.CENTRO, name="Ana Silva")
    second = admin_client.post(url, {"action": "dispatch_again", "_selected_action": [delivery.pk]}, follow=True)
    assert messages_of(second) == ["Offered to a driver: 1 of 1."]
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.OFFERED
    decided = AuditEvent.objects.get(delivery_id=delivery.pk, type="dispatch.decided")
    assert decided.actor_kind == "ops" and decided.payload["chosen"]["name"] == "Ana Silva"


def test_rows_refused_for_one_reason_share_one_message(admin_client, merchant, clock):
    """Re-running dispatch on 13 deliveries nobody can take said it 13 times, one warning each."""
    lonely = [factories.new_delivery(merchant, f"lonely-{n:02d}") for n in range(12)]
    picked_up = factories.assigned_delivery(merchant, factories.online_driver(*factories.CENTRO), "on-its-way")
    pick_up_delivery(picked_up.pk, actor=Actor.driver(picked_up.driver))
    selected = [d.pk for d in lonely] + [picked_up.pk]
    url = reverse(CHANGELIST)
    response = admin_client.post(url, {"action": "dispatch_again", "_selected_action": selected}, follow=True)
    first_ten = ", ".join(f"lonely-{n:02d}" for n in range(10))
    assert sorted(messages_of(response)) == [
        f"{first_ten} and 2 more: not offered: nobody to offer it to now.",
        "on-its-way: not offered: it is picked_up (only a pending delivery is dispatched).",
    ]


def test_ten_rows_refused_for_one_reason_are_all_named_with_no_more_to_count(admin_client, merchant, clock):
    lonely = [factories.new_delivery(merchant, f"lonely-{n}") for n in range(10)]
    url = reverse(CHANGELIST)
    response = admin_client.post(
        url, {"action": "dispatch_again", "_selected_action": [d.pk for d in lonely]}, follow=True
    )
    named = ", ".join(f"lonely-{n}" for n in range(10))
    assert messages_of(response) == [f"{named}: not offered: nobody to offer it to now."]


def test_rerun_dispatch_on_a_delivery_held_for_the_food_says_until_when(admin_client, merchant, clock):
    """It said "not offered: held.", leaving ops to guess whether and when it would be."""
    factories.online_driver(*factories.CENTRO, name="Ana Silva")
    soup = factories.new_delivery(merchant, "soup", ready_at="2026-11-25T13:00:00+00:00")
    soup.refresh_from_db()
    url = reverse(CHANGELIST)
    response = admin_client.post(url, {"action": "dispatch_again", "_selected_action": [soup.pk]}, follow=True)
    until = f"{soup.dispatch_not_before:%H:%M:%S}"
    said = f"soup: not offered: held until {until} UTC so the driver does not wait for the food."
    assert messages_of(response) == [said]


def test_cancel_asks_for_a_reason_then_cancels_each_delivery(admin_client, admin_user, merchant, clock):
    waiting = factories.new_delivery(merchant, "waiting")
    ben = factories.online_driver(*factories.CENTRO, name="Ben Costa")
    carried = forced(factories.new_delivery(merchant, "carried"), ben, admin_user)
    pick_up_delivery(carried.pk, actor=Actor.driver(ben))
    url = reverse(CHANGELIST)
    selection = {"action": "cancel_deliveries", "_selected_action": [waiting.pk, carried.pk]}

    page = admin_client.post(url, selection)
    assert page.status_code == 200
    assert "Cancel these deliveries" in page.content.decode()
    assert Delivery.objects.filter(status=DeliveryStatus.CANCELLED).count() == 0
    empty = admin_client.post(url, selection | {"apply": "1", "note": ""})
    assert empty.status_code == 200 and "This field is required" in empty.content.decode()

    done = admin_client.post(url, selection | {"apply": "1", "note": "shop closed early"}, follow=True)
    assert messages_of(done) == [
        "carried: The delivery has been picked up; it can no longer be cancelled or handed back.",
        "Cancelled: 1 of 2.",
    ]
    waiting.refresh_from_db()
    assert (waiting.status, waiting.outcome_reason) == (DeliveryStatus.CANCELLED, "shop closed early")
    assert Delivery.objects.get(pk=carried.pk).status == DeliveryStatus.PICKED_UP


def test_reassign_form_forces_an_assignment_to_a_named_driver(admin_client, merchant, clock):
    delivery = factories.new_delivery(merchant, "order-9")
    ana = factories.online_driver(*factories.CENTRO, name="Ana Silva")
    resting = factories.online_driver(*factories.CENTRO, name="Rui Rest")
    api_client_for(resting.user).post("/api/v1/driver/availability", {"state": "on_break"}, format="json")
    url = reverse("admin:deliveries_delivery_reassign", args=[delivery.pk])
    form = admin_client.get(url)
    assert form.status_code == 200
    assert ">Ana Silva (available)<" in form.content.decode()  # whom the delivery can go to, before choosing
    assert ">Rui Rest (on break)<" in form.content.decode()

    refused = admin_client.post(url, {"force": "on"})
    assert "A forced assignment needs a driver." in refused.content.decode()
    response = admin_client.post(url, {"driver": ana.pk, "force": "on"}, follow=True)
    assert response.redirect_chain == [(reverse("admin:deliveries_delivery_change", args=[delivery.pk]), 302)]
    assert messages_of(response) == ["order-9 is now assigned."]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.driver_id) == (DeliveryStatus.ASSIGNED, ana.pk)
    assigned = AuditEvent.objects.get(delivery_id=delivery.pk, type="delivery.assigned")
    assert assigned.actor_kind == "ops" and assigned.payload["how"] == "forced"


def test_messages_show_the_order_number_as_the_merchant_wrote_it(admin_client, merchant, clock):
    delivery = factories.new_delivery(merchant, "order-9")
    ana = factories.online_driver(*factories.CENTRO, name="Ana Silva")
    url = reverse("admin:deliveries_delivery_reassign", args=[delivery.pk])
    page = admin_client.post(url, {"driver": ana.pk, "force": "on"}, follow=True).content.decode()
    assert '<li class="success">order-9 is now assigned.</li>' in page  # not "Order-9", which is no order of theirs


def test_a_refused_reassignment_changes_nothing(admin_client, admin_user, merchant, clock):
    ana = factories.online_driver(*factories.CENTRO, name="Ana Silva")
    ben = factories.online_driver(*factories.CENTRO, name="Ben Costa")
    delivery = forced(factories.new_delivery(merchant, "order-1"), ana, admin_user)
    forced(factories.new_delivery(merchant, "order-2"), ben, admin_user)  # Ben is now at capacity
    events_before = AuditEvent.objects.count()

    response = force_in_console(admin_client, delivery, ben)
    assert response.status_code == 200
    assert "Ben Costa is busy." in response.content.decode()
    delivery.refresh_from_db()
    ana.refresh_from_db()
    # Handing it back from Ana happened before Ben was found busy: all of it was rolled back.
    assert (delivery.status, delivery.driver_id, delivery.reassignment_count) == ("assigned", ana.pk, 0)
    assert ana.state == "busy"
    assert AuditEvent.objects.count() == events_before


def test_forcing_onto_a_driver_answering_another_offer_is_refused(admin_client, merchant, clock):
    ana = factories.online_driver(*factories.CENTRO, name="Ana Silva")
    factories.new_delivery(merchant, "offered-to-ana")
    waiting = factories.new_delivery(merchant, "waiting")
    assert waiting.status == DeliveryStatus.PENDING  # Ana is busy answering the first offer
    events_before = AuditEvent.objects.count()

    response = force_in_console(admin_client, waiting, ana)
    assert response.status_code == 200
    assert "Ana Silva is answering another offer." in response.content.decode()
    waiting.refresh_from_db()
    assert (waiting.status, waiting.driver_id) == (DeliveryStatus.PENDING, None)
    assert AuditEvent.objects.count() == events_before


def test_a_picked_up_delivery_is_not_offered_for_reassignment_and_says_why(admin_client, merchant):
    """The console offered "Reassign…" for a delivery in the driver's bag, named its status by its code ("is
    picked_up") and let ops fill in a form that could only be refused."""
    rider = factories.online_driver(*factories.CENTRO, name="Ana Silva")
    delivery = factories.assigned_delivery(merchant, rider, "order-9")
    pick_up_delivery(delivery.pk, actor=Actor.driver(rider))
    url = reverse("admin:deliveries_delivery_reassign", args=[delivery.pk])
    assert url not in admin_client.get(reverse("admin:deliveries_delivery_change", args=[delivery.pk])).content.decode()
    page = admin_client.get(url).content.decode()
    assert "order-9 is picked up, with Ana Silva." in page
    assert "Only a delivery not yet picked up can be reassigned." in page and 'value="Reassign"' not in page
    admin_client.post(url, {"force": "on", "driver": rider.pk})
    delivery.refresh_from_db()
    assert (delivery.status, delivery.driver_id) == ("picked_up", rider.pk)


def test_ops_find_a_deliverys_webhooks_and_offers_by_its_order_number(admin_client, zones):
    """A merchant asks about the webhooks of their order 41, a driver about an offer of it: the webhook and offer
    lists had no search box, so ops paged through every merchant's rows for them."""
    merchant = factories.MerchantFactory(webhook_url="https://shop.example/hook")
    ana = factories.online_driver(*factories.CENTRO, name="Ana Silva")
    wanted = factories.new_delivery(merchant, "order-41")  # offered to Ana
    factories.new_delivery(merchant, "order-42")

    def found(changelist: str, q: str) -> set[str]:
        page = admin_client.get(reverse(changelist), {"q": q})
        return {row.delivery.external_id for row in page.context["cl"].result_list}

    assert found("admin:deliveries_webhookdelivery_changelist", "order-41") == {"order-41"}
    assert found("admin:deliveries_offer_changelist", "order-41") == {"order-41"}
    assert found("admin:deliveries_offer_changelist", "Ana") == {"order-41"}
    assert wanted.offers.get().driver == ana


def _reassign_form(admin_client, delivery) -> tuple[str, dict]:
    """The console's reassign page as ops open it: its URL and the hidden fields it was shown with."""
    url = reverse("admin:deliveries_delivery_reassign", args=[delivery.pk])
    return url, {field.name: field.value() for field in admin_client.get(url).context["form"].hidden_fields()}


def test_a_direct_offer_submitted_twice_is_made_once_and_the_second_says_nothing_was_done(
    admin_client, merchant, clock
):
    """A double click on "Reassign" to a named driver once withdrew the offer the first click made and made it
    again: the driver's app saw the offer, its withdrawal and a second offer with a new deadline."""
    delivery = factories.new_delivery(merchant, "order-1")  # nobody online: it waits, pending
    ana = factories.online_driver(*factories.CENTRO, name="Ana Silva")
    url, shown = _reassign_form(admin_client, delivery)

    first = admin_client.post(url, shown | {"driver": ana.pk}, follow=True)
    second = admin_client.post(url, shown | {"driver": ana.pk}, follow=True)

    assert messages_of(first) == ["order-1 is now offered."]
    assert second.redirect_chain == [(reverse("admin:deliveries_delivery_change", args=[delivery.pk]), 302)]
    assert messages_of(second) == [
        "order-1 changed since this form was shown: it is now offered to Ana Silva. Nothing was done."
    ]
    told = DriverMessage.objects.filter(driver=ana).values_list("type", flat=True)
    assert [t for t in told if t.startswith("offer.")] == ["offer.created"]
    assert not AuditEvent.objects.filter(delivery_id=delivery.pk, type="offer.withdrawn").exists()
    assert Offer.objects.filter(delivery=delivery).count() == 1


def test_back_to_dispatch_submitted_twice_leaves_the_offer_dispatch_made(admin_client, admin_user, merchant, clock):
    """The second "Reassign" with no driver named once withdrew the offer the first made to Ben, and Ben, as one
    ops took the delivery away from, was never offered it again."""
    ana = factories.online_driver(*factories.CENTRO, name="Ana Silva")
    delivery = forced(factories.new_delivery(merchant, "order-1"), ana, admin_user)
    ben = factories.online_driver(*factories.CENTRO, name="Ben Costa")
    url, shown = _reassign_form(admin_client, delivery)

    first = admin_client.post(url, shown | {"driver": ""}, follow=True)
    second = admin_client.post(url, shown | {"driver": ""}, follow=True)

    assert messages_of(first) == ["order-1 is now offered."]
    assert messages_of(second) == [
        "order-1 changed since this form was shown: it is now offered to Ben Costa. Nothing was done."
    ]
    assert factories.pending_offer(delivery).driver == ben
    assert not DriverMessage.objects.filter(driver=ben, type="offer.withdrawn").exists()


def test_the_bulk_reassign_submitted_twice_leaves_the_offers_the_first_made(admin_client, admin_user, merchant, clock):
    """The changelist's "Reassign (back to dispatch)" sent twice (a double click on Go) withdrew the offers the first
    had made, and their drivers were left out of those deliveries for good."""
    ana = factories.online_driver(*factories.CENTRO, name="Ana Silva")
    delivery = forced(factories.new_delivery(merchant, "order-1"), ana, admin_user)
    ben = factories.online_driver(*factories.CENTRO, name="Ben Costa")
    listed = admin_client.get(reverse(CHANGELIST)).content.decode()
    listed_at = re.search(r'name="listed_at" value="([^"]+)"', listed).group(1)
    clock.shift(5)
    go = {"action": "send_back_to_dispatch", "_selected_action": [delivery.pk], "listed_at": listed_at}

    first = admin_client.post(reverse(CHANGELIST), go, follow=True)
    clock.shift(1)
    second = admin_client.post(reverse(CHANGELIST), go, follow=True)

    assert messages_of(first) == ["Sent back to dispatch and offered to a driver: 1 of 1."]
    assert messages_of(second) == ["order-1: changed since the list was shown: nothing was done."]
    assert factories.pending_offer(delivery).driver == ben
    assert not DriverMessage.objects.filter(driver=ben, type="offer.withdrawn").exists()
    again = admin_client.post(reverse(CHANGELIST), go | {"listed_at": timezone.now().isoformat()}, follow=True)
    # A list shown after the change acts on it: Ben's offer withdrawn, and nobody left (Ana and Ben had it).
    assert messages_of(again) == ["order-1: sent back to dispatch, not offered: nobody to offer it to now."]


def test_ops_record_what_became_of_a_picked_up_delivery_whose_driver_vanished(
    admin_client, admin_user, merchant, clock, settings
):
    """Never reassigned after pickup, such a delivery stayed picked up for good once its escalation was resolved:
    ops now record its outcome (failed, or delivered once confirmed), on the driver's behalf."""
    settings.RELAY_LOCATION_REDIS_URL = ""
    ana = factories.online_driver(*factories.CENTRO, name="Ana Silva")
    lost = forced(factories.new_delivery(merchant, "lost"), ana, admin_user)
    pick_up_delivery(lost.pk, actor=Actor.driver(ana))
    waiting = factories.new_delivery(merchant, "waiting")
    clock.shift(120)
    mark_stale_drivers()  # Ana's phone went silent with the order in her bag
    assert lost.escalations.get().reason == "driver_stale"
    url = reverse(CHANGELIST)
    selection = {"action": "mark_failed", "_selected_action": [lost.pk, waiting.pk]}

    done = admin_client.post(url, selection | {"apply": "1", "note": "driver unreachable, order lost"}, follow=True)

    assert messages_of(done) == [
        "waiting: You cannot fail a delivery that is pending.",
        "Marked failed: 1 of 2.",
    ]
    lost.refresh_from_db()
    assert (lost.status, lost.outcome_reason) == (DeliveryStatus.FAILED, "driver unreachable, order lost")
    assert lost.escalations.get().status == "resolved"
    failed = AuditEvent.objects.get(delivery_id=lost.pk, type="delivery.failed")
    assert (failed.actor_kind, failed.actor_id) == ("ops", str(admin_user.pk))
    assert Delivery.objects.get(pk=waiting.pk).status == DeliveryStatus.PENDING
    assert api_client_for(ana.user).get("/api/v1/driver/me").json()["active_deliveries"] == []

    found = forced(factories.new_delivery(merchant, "found"), factories.online_driver(*factories.CENTRO), admin_user)
    pick_up_delivery(found.pk, actor=Actor.driver(found.driver))
    confirmed = {"action": "mark_delivered", "_selected_action": [found.pk], "apply": "1", "note": "customer called"}
    assert messages_of(admin_client.post(url, confirmed, follow=True)) == ["Marked delivered: 1 of 1."]
    found.refresh_from_db()
    assert (found.status, found.proof) == (DeliveryStatus.DELIVERED, {"confirmed_by_ops": "customer called"})
