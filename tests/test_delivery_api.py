"""Merchant and driver REST round trip, and API.md's error codes."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from core.models import AuditEvent
from deliveries.models import Delivery
from drivers.models import DriverMessage
from tests import factories
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


def create(api, **kwargs):
    return api.post("/api/v1/deliveries", factories.delivery_payload(**kwargs), format="json")


def force_onto(ops_api, delivery_id, driver) -> None:
    ops_api.post(
        f"/api/v1/ops/deliveries/{delivery_id}/reassign", {"driver_id": str(driver.pk), "force": True}, format="json"
    )


def test_token_endpoint_returns_token_and_role(merchant, ops_user):
    client = APIClient()
    response = client.post(
        "/api/v1/auth/token",
        {"username": merchant.user.username, "password": "secret-pass-123"},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["role"] == "merchant"
    assert len(response.json()["token"]) >= 20
    ops = client.post(
        "/api/v1/auth/token", {"username": ops_user.username, "password": "secret-pass-123"}, format="json"
    )
    assert ops.json()["role"] == "ops"


def test_token_endpoint_refuses_wrong_password(merchant):
    response = APIClient().post(
        "/api/v1/auth/token", {"username": merchant.user.username, "password": "nope"}, format="json"
    )
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_credentials"


@pytest.mark.parametrize(
    ("situation", "types"),
    [
        ("a driver in reach", ["delivery.created", "delivery.offered"]),
        ("nobody in reach", ["delivery.created"]),
        ("ready in an hour", ["delivery.created"]),
    ],
)
def test_the_create_answer_shows_the_timeline_that_reading_it_back_shows(merchant_api, zones, situation, types):
    """The create's answer shows the events its own action recorded (not read back): the same as a GET's."""
    extra = {}
    if situation != "nobody in reach":
        factories.online_driver(*factories.east(0.5))
    if situation == "ready in an hour":
        extra["ready_at"] = (timezone.now() + timedelta(hours=1)).isoformat()
    created = create(merchant_api, **extra)
    assert created.status_code == 201, created.content
    read = merchant_api.get(f"/api/v1/deliveries/{created.json()['id']}")
    assert [e["type"] for e in created.json()["events"]] == types
    assert created.json()["events"] == read.json()["events"]
    assert created.json()["status"] == read.json()["status"]


def test_round_trip_create_assign_pickup_deliver(merchant_api, ops_api, zones):
    created = create(merchant_api)
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["status"] == "pending"  # nobody online yet
    assert body["zone"] == "centro"
    assert body["tracking_url"].split("/t/")[1]
    # Zone defaults: 3.50 base + 0.80 per km over the straight-line ~1.03 km.
    assert body["fee"] == "4.32"
    delivery_id = body["id"]

    driver = factories.online_driver(*factories.CENTRO)
    forced = ops_api.post(
        f"/api/v1/ops/deliveries/{delivery_id}/reassign",
        {"driver_id": str(driver.pk), "force": True},
        format="json",
    )
    assert forced.status_code == 200, forced.content
    assert forced.json()["status"] == "assigned"

    driver_api = api_client_for(driver.user)
    mine = driver_api.get("/api/v1/driver/deliveries?active=true").json()["results"]
    assert [d["id"] for d in mine] == [delivery_id]
    assert driver_api.get("/api/v1/driver/me").json()["state"] == "busy"

    assert driver_api.post(f"/api/v1/deliveries/{delivery_id}/pickup").json()["status"] == "picked_up"
    delivered = driver_api.post(f"/api/v1/deliveries/{delivery_id}/deliver", {"proof": {"photo": "x"}}, format="json")
    assert delivered.json()["status"] == "delivered"
    assert driver_api.get("/api/v1/driver/me").json()["state"] == "available"

    detail = merchant_api.get(f"/api/v1/deliveries/{delivery_id}").json()
    assert detail["status"] == "delivered"
    assert detail["driver"] == {"first_name": driver.first_name, "vehicle": "bicycle"}
    assert [e["to_state"] for e in detail["events"]] == ["pending", "assigned", "picked_up", "delivered"]
    stream = DriverMessage.objects.filter(driver=driver, type__startswith="delivery.").values_list(
        "type", "data__status"
    )
    assert list(stream) == [
        ("delivery.assigned", "assigned"),
        ("delivery.updated", "picked_up"),
        ("delivery.updated", "delivered"),
    ]
    assigned = AuditEvent.objects.get(delivery_id=delivery_id, type="delivery.assigned")
    assert assigned.actor_kind == "ops" and assigned.payload["how"] == "forced"


def test_a_driver_has_the_phone_numbers_while_carrying_the_delivery_and_not_after(merchant_api, ops_api):
    driver = factories.online_driver(*factories.CENTRO, capacity=2)
    delivered_id, cancelled_id = (create(merchant_api, external_id=ref).json()["id"] for ref in ("kept", "called-off"))
    for delivery_id in (delivered_id, cancelled_id):
        force_onto(ops_api, delivery_id, driver)
    driver_api = api_client_for(driver.user)

    def places() -> dict:
        listed = driver_api.get("/api/v1/driver/deliveries").json()["results"]
        return {d["id"]: (d["pickup"], d["dropoff"]) for d in listed}

    carried = places()
    assert {carried[delivered_id][1]["phone"], carried[cancelled_id][1]["phone"]} == {"+351 2"}
    assert driver_api.post(f"/api/v1/deliveries/{delivered_id}/pickup").status_code == 200
    assert places()[delivered_id][0]["phone"]  # picked up: the customer may still need a call
    assert driver_api.post(f"/api/v1/deliveries/{delivered_id}/deliver", {}, format="json").status_code == 200
    cancelled = merchant_api.post(f"/api/v1/deliveries/{cancelled_id}/cancel", {"reason": "x"}, format="json")
    assert cancelled.status_code == 200, cancelled.content

    ended = places()
    for delivery_id in (delivered_id, cancelled_id):
        pickup, dropoff = ended[delivery_id]
        assert "phone" not in pickup and "phone" not in dropoff
        assert dropoff["address"]  # where it went stays in the driver's history
    pushed = DriverMessage.objects.filter(driver=driver, type="delivery.updated", data__status="delivered").get()
    assert "phone" not in pushed.data["dropoff"]


def test_pickup_outside_every_zone_is_refused(merchant_api):
    response = create(merchant_api, pickup=factories.OUTSIDE)
    assert response.status_code == 400
    assert response.json()["code"] == "outside_service_area"
    assert "pickup" in response.json()["fields"]


def test_a_pickup_in_a_zone_taken_out_of_service_is_refused(merchant_api, zones):
    """SPEC 1: a pickup outside every *active* zone is refused."""
    zones["centro"].active = False
    zones["centro"].save()
    response = create(merchant_api, pickup=factories.CENTRO)
    assert (response.status_code, response.json()["code"]) == (400, "outside_service_area")
    assert not Delivery.objects.exists()


@pytest.mark.parametrize("path", ["/api/v1/deliveries/", "/api/v1/deliveries/order-1"])
def test_a_path_off_the_contract_says_what_paths_look_like(merchant_api, path):
    create(merchant_api)  # order-1 exists: its external_id is not its id
    response = merchant_api.get(path)
    assert (response.status_code, response.json()["code"]) == (404, "not_found")
    assert "end without a slash" in response.json()["detail"] and "UUIDs" in response.json()["detail"]


def test_an_id_in_upper_case_names_the_same_object(merchant_api):
    """A UUID is read whatever the case of its letters (RFC 9562), as bodies already read `driver_id`: in a path
    one in upper case (Swift's `uuidString` writes them so) answered 404 "There is no API endpoint at this path"."""
    driver = factories.online_driver(*factories.CENTRO)
    delivery_id = create(merchant_api).json()["id"]
    offer_id = str(factories.pending_offer(Delivery.objects.get(pk=delivery_id)).pk)
    driver_api = api_client_for(driver.user)

    assert merchant_api.get(f"/api/v1/deliveries/{delivery_id.upper()}").json()["id"] == delivery_id
    assert driver_api.post(f"/api/v1/offers/{offer_id.upper()}/accept").json()["status"] == "assigned"
    assert driver_api.post(f"/api/v1/deliveries/{delivery_id.upper()}/pickup").json()["status"] == "picked_up"


def test_a_dropoff_beyond_reach_of_the_pickup_is_refused_and_nothing_is_created(merchant_api, settings):
    """A dropoff in another country (or with lat and lng swapped) was priced at thousands and offered to a bicycle."""
    settings.RELAY_MAX_DELIVERY_KM = 30
    swapped = create(merchant_api, external_id="swapped", dropoff=(-9.13, 38.72))
    assert swapped.status_code == 400
    body = swapped.json()
    assert body["code"] == "outside_service_area"
    assert "at most 30 km" in body["fields"]["dropoff"][0]
    assert "km from the pickup" in body["detail"]
    # 25 km away is a long trip, not a typo; 35 km is past this deployment's reach.
    assert create(merchant_api, external_id="far", dropoff=factories.east(35)).status_code == 400
    assert create(merchant_api, external_id="long", dropoff=factories.east(25)).status_code == 201
    assert [d["external_id"] for d in merchant_api.get("/api/v1/deliveries").json()["results"]] == ["long"]


@pytest.mark.parametrize(
    ("point", "expected"),
    [
        ((38.73, -9.12), {"centro", "norte", "este"}),  # the corner the three share: one of them
        ((38.76, -9.14), {"norte"}),  # on the service area's northern edge
        ((38.715, -9.08), {"este"}),  # on its eastern edge
        ((38.73, -9.14), {"centro", "norte"}),  # a border two zones share: one of them, as before
    ],
)
def test_a_point_on_a_zones_edge_is_in_the_service_area(merchant_api, point, expected):
    """Zones' insides are half-open (a shared border goes to one zone): the service area's northern and eastern
    edges, and the corner three zones share, belonged to none, and a pickup there was "outside the service area"."""
    response = create(merchant_api, pickup=point, dropoff=(38.72, -9.13))
    assert response.status_code == 201, response.json()
    assert response.json()["zone"] in expected


def test_bad_input_lists_the_fields(merchant_api):
    response = merchant_api.post("/api/v1/deliveries", {"external_id": "", "pickup": {"lat": 100}}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert {"external_id", "pickup", "dropoff"} <= set(body["fields"])


@pytest.mark.parametrize("field", ["ready_at", "promised_by"])
@pytest.mark.parametrize("when", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "2026-12-03T12:00:01Z"])
def test_times_beyond_a_week_either_way_are_refused(merchant_api, clock, field, when):
    response = create(merchant_api, **{field: when})  # the clock stands at 2026-11-25 12:00 UTC
    assert response.status_code == 400, response.content
    assert (response.json()["code"], list(response.json()["fields"])) == ("invalid", [field])
    assert not Delivery.objects.exists()


@pytest.mark.parametrize("field", ["ready_at", "promised_by"])
def test_a_time_without_its_offset_is_refused_naming_the_field(merchant_api, clock, field):
    """API.md's times carry their offset. One without was read as UTC: a Tokyo merchant's local 21:20 `ready_at`
    held the delivery until 21:20 UTC, nine hours on, with no escalation (a held delivery is not waiting)."""
    response = create(merchant_api, **{field: "2026-11-25T21:20:00"})
    assert response.status_code == 400, response.content
    assert response.json()["fields"] == {
        field: ["Give the time with its offset from UTC, e.g. 2026-11-25T12:00:00Z or +09:00."]
    }
    assert not Delivery.objects.exists()
    assert create(merchant_api, **{field: "2026-11-25T21:20:00+09:00"}).status_code == 201


def test_times_within_a_week_are_taken(merchant_api, clock):
    response = create(merchant_api, ready_at="2026-12-02T11:00:00Z", promised_by="2026-12-02T11:59:59Z")
    assert response.status_code == 201, response.content


def test_unauthenticated_and_wrong_role(merchant_api, zones):
    assert APIClient().get("/api/v1/deliveries").status_code == 401
    assert APIClient().get("/api/v1/deliveries").json()["code"] == "not_authenticated"
    driver_api = api_client_for(factories.DriverFactory().user)
    response = driver_api.post("/api/v1/deliveries", factories.delivery_payload(), format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


def test_another_merchants_delivery_is_not_found(merchant_api, zones):
    delivery_id = create(merchant_api).json()["id"]
    other = api_client_for(factories.MerchantFactory().user)
    assert other.get(f"/api/v1/deliveries/{delivery_id}").status_code == 404
    response = other.post(f"/api/v1/deliveries/{delivery_id}/cancel", {"reason": "x"}, format="json")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_a_driver_cannot_touch_another_drivers_delivery(merchant_api, ops_api):
    delivery_id = create(merchant_api).json()["id"]
    force_onto(ops_api, delivery_id, factories.online_driver(*factories.CENTRO))
    intruder = api_client_for(factories.online_driver(*factories.CENTRO).user)
    for action in ("pickup", "deliver", "fail", "release"):
        response = intruder.post(f"/api/v1/deliveries/{delivery_id}/{action}", {"reason": "x"}, format="json")
        assert response.status_code == 404, action
    assert intruder.get("/api/v1/driver/deliveries").json()["results"] == []


def test_cancel_after_pickup_is_a_conflict(merchant_api, ops_api):
    delivery_id = create(merchant_api).json()["id"]
    driver = factories.online_driver(*factories.CENTRO)
    force_onto(ops_api, delivery_id, driver)
    api_client_for(driver.user).post(f"/api/v1/deliveries/{delivery_id}/pickup")
    response = merchant_api.post(f"/api/v1/deliveries/{delivery_id}/cancel", {"reason": "changed mind"}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "already_picked_up"
    assert merchant_api.get(f"/api/v1/deliveries/{delivery_id}").json()["status"] == "picked_up"


def test_a_step_out_of_order_is_refused_in_plain_words(merchant_api, ops_api):
    delivery_id = create(merchant_api).json()["id"]
    driver = factories.online_driver(*factories.CENTRO)
    force_onto(ops_api, delivery_id, driver)
    response = api_client_for(driver.user).post(f"/api/v1/deliveries/{delivery_id}/deliver", {}, format="json")
    assert (response.status_code, response.json()["code"]) == (409, "invalid_transition")
    assert response.json()["detail"] == "You cannot deliver a delivery that is assigned."


def test_cancel_before_pickup_frees_the_driver(merchant_api, ops_api):
    delivery_id = create(merchant_api).json()["id"]
    driver = factories.online_driver(*factories.CENTRO)
    force_onto(ops_api, delivery_id, driver)
    response = merchant_api.post(f"/api/v1/deliveries/{delivery_id}/cancel", {"reason": "out of stock"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    driver.refresh_from_db()
    assert driver.state == "available"


def test_an_impossible_transition_is_a_conflict_and_changes_nothing(merchant_api, ops_api):
    delivery_id = create(merchant_api).json()["id"]
    driver = factories.online_driver(*factories.CENTRO)
    force_onto(ops_api, delivery_id, driver)
    driver_api = api_client_for(driver.user)
    response = driver_api.post(f"/api/v1/deliveries/{delivery_id}/deliver", {}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "invalid_transition"
    assert merchant_api.get(f"/api/v1/deliveries/{delivery_id}").json()["status"] == "assigned"


def test_same_external_id_returns_the_existing_delivery(merchant_api):
    first = create(merchant_api)
    again = create(merchant_api)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    different = create(merchant_api, dropoff=(38.725, -9.135))
    assert different.status_code == 409
    assert different.json()["code"] == "duplicate_external_id"
    assert len(merchant_api.get("/api/v1/deliveries").json()["results"]) == 1


def test_an_external_id_is_unique_per_merchant_not_across_merchants(merchant_api):
    """SPEC 1: `external_id` is unique per merchant: another merchant's order of the same number is its own."""
    other = api_client_for(factories.MerchantFactory().user)
    first, second = create(merchant_api), create(other)
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]
    assert [d["id"] for d in other.get("/api/v1/deliveries").json()["results"]] == [second.json()["id"]]


def test_list_filters_by_status_and_external_id(merchant_api):
    create(merchant_api, external_id="a")
    create(merchant_api, external_id="b")
    listed = merchant_api.get("/api/v1/deliveries?external_id=b").json()
    assert [d["external_id"] for d in listed["results"]] == ["b"]
    assert merchant_api.get("/api/v1/deliveries?status=delivered").json()["count"] == 0
    assert merchant_api.get("/api/v1/deliveries?status=pending").json()["count"] == 2


@pytest.mark.parametrize(
    ("role", "path", "name"),
    [
        ("merchant", "/api/v1/deliveries?status=deliverd", "status"),
        ("driver", "/api/v1/driver/offers?status=pendng", "status"),
        ("driver", "/api/v1/driver/deliveries?active=banana", "active"),
        ("ops", "/api/v1/ops/escalations?open=maybe", "open"),
    ],
)
def test_a_filter_value_that_means_nothing_is_a_400_naming_it(zones, role, path, name):
    """A typo in a filter answered an empty list, or the unfiltered one, as if it had been the filtered list."""
    users = {"merchant": factories.MerchantFactory, "driver": factories.DriverFactory}
    api = api_client_for(users[role]().user if role in users else factories.OpsUserFactory())
    response = api.get(path)
    assert (response.status_code, response.json()["code"]) == (400, "invalid")
    assert list(response.json()["fields"]) == [name]


@pytest.mark.parametrize(
    ("role", "path", "name"),
    [
        ("merchant", "/api/v1/deliveries?status=pending&status=cancelled", "status"),
        ("merchant", "/api/v1/deliveries?external_id=a&external_id=b", "external_id"),
        ("driver", "/api/v1/driver/deliveries?active=true&active=false", "active"),
        ("ops", "/api/v1/ops/escalations?open=1&open=0", "open"),
    ],
)
def test_a_filter_given_twice_is_a_400_naming_it(zones, role, path, name):
    """The last value alone answered: a merchant asking for pending and cancelled deliveries got the cancelled ones
    only, a list that looked like the answer to both."""
    users = {"merchant": factories.MerchantFactory, "driver": factories.DriverFactory}
    api = api_client_for(users[role]().user if role in users else factories.OpsUserFactory())
    response = api.get(path)
    assert (response.status_code, response.json()["code"]) == (400, "invalid")
    assert response.json()["fields"] == {name: ["Give one value, not several."]}


@pytest.mark.parametrize("page", ["abc", "0", "-1", "1.5", "²"])
def test_a_page_that_is_no_page_number_is_a_400_naming_it(merchant_api, page):
    """It answered 404 "Invalid page.", as for a page past the end: a client could not tell a bug from the end."""
    create(merchant_api)
    response = merchant_api.get(f"/api/v1/deliveries?page={page}")
    assert (response.status_code, response.json()["code"]) == (400, "invalid")
    assert list(response.json()["fields"]) == ["page"]


def test_a_page_past_the_end_is_missing_and_says_so(merchant_api):
    create(merchant_api)
    assert merchant_api.get("/api/v1/deliveries?page=1").json()["count"] == 1
    assert merchant_api.get("/api/v1/deliveries?page=last").json()["count"] == 1
    response = merchant_api.get("/api/v1/deliveries?page=2")
    assert (response.status_code, response.json()["code"]) == (404, "not_found")
    assert response.json()["detail"].startswith("There is no page 2:")


def test_flags_take_false_as_well_as_true(merchant_api, ops_api):
    create(merchant_api, external_id="a")
    assert ops_api.get("/api/v1/ops/escalations?open=false").status_code == 200
    assert ops_api.get("/api/v1/ops/escalations?open=0").json() == ops_api.get("/api/v1/ops/escalations").json()


def test_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    text = schema.content.decode()
    for path in (
        "/api/v1/deliveries",
        "/api/v1/offers/{id}/accept",
        "/api/v1/driver/locations",
        "/api/v1/auth/token",
    ):
        assert path in text
    assert client.get("/api/docs/").status_code == 200


def test_the_schema_documents_the_200_of_a_delivery_sent_again(client):
    operation = client.get("/api/schema/", {"format": "json"}).json()["paths"]["/api/v1/deliveries"]["post"]
    created, again = operation["responses"]["201"], operation["responses"]["200"]
    assert again["content"]["application/json"]["schema"] == created["content"]["application/json"]["schema"]
    assert "sent again" in again["description"]
