"""`GET /api/v1/track/<token>` and `/t/<token>`: the public tracking link shows an allow-list of fields, the
location only between pickup and delivery, and answers 410 a day after the delivery finished."""

import json
import re
import secrets
from datetime import timedelta

import pytest
from rest_framework.test import APIClient

from core.audit import Actor
from core.throttling import TrackAddressThrottle
from deliveries.services.progress import deliver_delivery, pick_up_delivery
from tests import factories

pytestmark = pytest.mark.django_db
BASE = {"status", "merchant", "timeline", "eta"}
ETA_KEYS = {"pickup", "dropoff", "window_start", "window_end"}


def _customer() -> APIClient:
    """A client address of this test alone: throttle counts outlive a test in Redis."""
    return APIClient(REMOTE_ADDR=f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}")


def _track(delivery, client=None):
    return (client or _customer()).get(f"/api/v1/track/{delivery.tracking_token}")


def _private_values(delivery) -> list[str]:
    return [
        delivery.pickup_phone,
        delivery.dropoff_phone,
        delivery.dropoff_address,
        delivery.pickup_address,
        delivery.driver.name if delivery.driver else "Surname",
        str(delivery.pk),
        delivery.external_id,
    ]


@pytest.fixture
def rider(zones):
    return factories.online_driver(*factories.east(0.5), name="Rita Rodrigues")


def test_before_pickup_the_link_shows_status_eta_window_and_driver_first_name_only(merchant, rider):
    delivery = factories.assigned_delivery(merchant, rider)
    answer = _track(delivery)
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == BASE | {"driver"}
    assert body["status"] == "assigned"
    assert body["merchant"] == merchant.name
    assert body["driver"] == {"first_name": "Rita", "vehicle": "bicycle"}
    assert set(body["eta"]) == ETA_KEYS
    assert body["eta"]["window_start"] < body["eta"]["window_end"]
    assert [step["status"] for step in body["timeline"]] == ["pending", "assigned"]
    assert set(body["timeline"][0]) == {"status", "at"}
    for private in _private_values(delivery):
        assert private not in answer.content.decode()


def test_while_waiting_for_a_driver_there_is_no_driver_and_no_eta(merchant, zones):
    delivery = factories.new_delivery(merchant)  # nobody online: it waits
    body = _track(delivery).json()
    assert set(body) == BASE
    assert (body["status"], body["eta"]) == ("pending", None)


def test_between_pickup_and_delivery_the_link_shows_the_drivers_last_position(merchant, rider):
    delivery = factories.assigned_delivery(merchant, rider)
    pick_up_delivery(delivery.pk, actor=Actor.driver(rider))
    factories.ping(rider, 38.717, -9.135)
    answer = _track(delivery)
    body = answer.json()
    assert set(body) == BASE | {"driver", "location"}
    assert body["status"] == "picked_up"
    assert (body["location"]["lat"], body["location"]["lng"]) == (38.717, -9.135)
    assert set(body["location"]) == {"lat", "lng", "recorded_at"}
    assert body["location"]["recorded_at"].endswith("Z")  # UTC, written as every other time of the API
    assert [step["status"] for step in body["timeline"]] == ["pending", "assigned", "picked_up"]
    for private in _private_values(delivery):
        assert private not in answer.content.decode()


def test_after_delivery_the_outcome_shows_and_the_location_does_not(merchant, rider):
    delivery = factories.assigned_delivery(merchant, rider)
    pick_up_delivery(delivery.pk, actor=Actor.driver(rider))
    factories.ping(rider, 38.72, -9.13)
    deliver_delivery(delivery.pk, actor=Actor.driver(rider))
    body = _track(delivery).json()
    assert set(body) == BASE | {"driver"}
    assert (body["status"], body["eta"]) == ("delivered", None)
    assert [step["status"] for step in body["timeline"]] == ["pending", "assigned", "picked_up", "delivered"]


def test_a_day_after_the_delivery_the_link_is_gone(merchant, rider, clock):
    delivery = factories.assigned_delivery(merchant, rider)
    pick_up_delivery(delivery.pk, actor=Actor.driver(rider))
    deliver_delivery(delivery.pk, actor=Actor.driver(rider))
    clock.shift(timedelta(hours=23, minutes=59).total_seconds())
    assert _track(delivery).status_code == 200
    clock.shift(120)
    answer = _track(delivery)
    assert answer.status_code == 410
    assert answer.json() == {"code": "link_expired", "detail": "This tracking link has expired."}
    page = _customer().get(f"/t/{delivery.tracking_token}")
    assert page.status_code == 410
    assert "Link expired" in page.content.decode()


def test_an_unknown_token_is_not_found(zones):
    answer = _customer().get("/api/v1/track/not-a-real-token")
    assert answer.status_code == 404
    assert answer.json()["code"] == "not_found"
    assert _customer().get("/t/not-a-real-token").status_code == 404


def test_the_json_is_throttled_per_address(merchant, monkeypatch, zones):
    monkeypatch.setattr(TrackAddressThrottle, "THROTTLE_RATES", {"track": "3/min"})
    delivery = factories.new_delivery(merchant)
    customer, other = _customer(), _customer()
    assert [_track(delivery, customer).status_code for _ in range(4)] == [200, 200, 200, 429]
    assert _track(delivery, customer).json()["code"] == "throttled"
    assert _track(delivery, other).status_code == 200


def test_the_page_speaks_portuguese_when_the_browser_asks(merchant, rider):
    delivery = factories.assigned_delivery(merchant, rider)
    page = _customer().get(f"/t/{delivery.tracking_token}", HTTP_ACCEPT_LANGUAGE="pt-PT,pt;q=0.9,en;q=0.5")
    text = page.content.decode()
    assert page.status_code == 200
    assert page.headers["Content-Language"] == "pt"
    assert "<h2>Progresso</h2>" in text
    labels = _data(text, "labels")
    assert (labels["arrives"], labels["step"]["assigned"]) == ("Chega entre {start} e {end}", "Estafeta atribuído")
    english = _customer().get(f"/t/{delivery.tracking_token}", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert _data(english, "labels")["arrives"] == "Arrives {start}–{end}"
    assert delivery.dropoff_phone not in text and "+351" not in text


def _data(page: str, name: str) -> dict:
    """What the page carries for its script (`tracking-labels`, `tracking-config`, ...)."""
    return json.loads(re.search(rf'<script id="tracking-{name}" type="application/json">(.*?)</script>', page)[1])


def test_the_page_shows_the_dropoff_no_closer_than_its_neighbourhood(merchant, rider):
    """SPEC 4.1: nothing beyond the dropoff's street line. The map's pin is the door to within ~110 m, so a
    forwarded link does not give the customer's exact location; the merchant's pickup is shown as it is."""
    door = (38.723456, -9.134567)
    delivery = factories.assigned_delivery(merchant, rider, dropoff=door)
    page = _customer().get(f"/t/{delivery.tracking_token}").content.decode()
    assert _data(page, "config")["dropoff"] == [38.723, -9.135]
    assert "38.723456" not in page and "9.134567" not in page


def test_the_map_uses_tiles_only_when_a_tile_server_is_configured(merchant, rider, settings):
    delivery = factories.assigned_delivery(merchant, rider)
    plain = _data(_customer().get(f"/t/{delivery.tracking_token}").content.decode(), "config")
    assert plain["tiles"] == ""  # a plain background: the page asks nothing of anyone else
    assert (plain["pickup"], plain["dropoff"]) == ([delivery.pickup_lat, delivery.pickup_lng], [38.72, -9.13])
    settings.RELAY_MAP_TILES_URL = "https://tiles.example.com/{z}/{x}/{y}.png"
    tiled = _data(_customer().get(f"/t/{delivery.tracking_token}").content.decode(), "config")
    assert tiled["tiles"] == "https://tiles.example.com/{z}/{x}/{y}.png"


def test_the_page_states_the_status_in_words_before_its_script_runs(merchant, rider):
    """What a customer without JavaScript (or before the script has run) reads: the heading in words, in their
    language, not the code `picked_up`, since the page's own hint tells them to reload for the latest status."""
    delivery = factories.assigned_delivery(merchant, rider)
    pick_up_delivery(delivery.pk, actor=Actor.driver(rider))
    heading = re.compile(r'<h1 id="status">(.*?)</h1>')
    page = _customer().get(f"/t/{delivery.tracking_token}", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert heading.search(page)[1] == "On the way to you"
    page = _customer().get(f"/t/{delivery.tracking_token}", HTTP_ACCEPT_LANGUAGE="pt").content.decode()
    assert heading.search(page)[1] == _data(page, "labels")["status"]["picked_up"] != "On the way to you"


def test_the_page_shares_the_jsons_budget_per_address_and_says_when_to_come_back(merchant, monkeypatch, zones):
    monkeypatch.setattr(TrackAddressThrottle, "THROTTLE_RATES", {"track": "3/min"})
    delivery = factories.new_delivery(merchant)
    customer, other = _customer(), _customer()
    page = f"/t/{delivery.tracking_token}"
    assert [customer.get(page).status_code, _track(delivery, customer).status_code] == [200, 200]
    assert customer.get(page).status_code == 200

    refused = customer.get(page, HTTP_ACCEPT_LANGUAGE="pt-PT")
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert "Aguarde um momento" in refused.content.decode()
    assert _track(delivery, customer).status_code == 429
    assert other.get(page).status_code == 200


def test_the_wait_notice_speaks_of_the_network_not_of_orders_or_addresses(merchant, monkeypatch, zones):
    """The notice said "Demasiados pedidos" and "Este endereço fez pedidos…": to a customer waiting for a delivery,
    "too many orders" and "this (street) address placed orders too often"."""
    monkeypatch.setattr(TrackAddressThrottle, "THROTTLE_RATES", {"track": "1/min"})
    page = f"/t/{factories.new_delivery(merchant).tracking_token}"
    customer = _customer()
    assert customer.get(page).status_code == 200
    said = {}
    for language in ("en", "pt-PT"):
        refused = customer.get(page, HTTP_ACCEPT_LANGUAGE=language)
        assert refused.status_code == 429
        notice = re.search(r"<main.*?</main>", refused.content.decode(), re.S).group()
        said[language] = (re.sub(r"\s+", " ", notice), refused["Retry-After"])
    (english, seconds), (portuguese, segundos) = said["en"], said["pt-PT"]
    assert "<h1>Please wait a moment</h1>" in english
    assert f"opened too many times from your network. Reload this page in {seconds} seconds." in english
    assert "<h1>Aguarde um momento</h1>" in portuguese
    assert f"a partir da sua rede. Recarregue esta página dentro de {segundos} segundos." in portuguese
    assert "pedido" not in portuguese and "endereço" not in portuguese
