"""Output serializers build their fields once per class (deliveries.serializers.FieldsBuiltOnce, issue 12): the
JSON they give must be exactly what DRF's per-instance fields give (API.md's shapes), key order included, for
each kind of object they show."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework import serializers

from core.audit import Actor
from deliveries import serializers as shapes
from deliveries.models import Delivery, Escalation, Offer
from deliveries.selectors import status_changes
from deliveries.services import progress
from drivers import locations
from tests import factories

pytestmark = pytest.mark.django_db


def _same_json(serializer_class, instance) -> None:
    once = json.dumps(serializer_class(instance).data)
    per_instance = json.dumps(serializers.Serializer.to_representation(serializer_class(), instance))
    assert once == per_instance


@pytest.fixture
def objects(merchant, clock):
    """A delivery of each stage a serializer shows: offered, assigned, one scheduled with values, one escalated."""
    first = factories.online_driver(*factories.east(0.5))
    assigned = factories.assigned_delivery(merchant, first, "assigned", value="12.50", notes="ring twice")
    factories.online_driver(*factories.east(0.8))
    offered = factories.new_delivery(merchant, "offered")
    offer = factories.pending_offer(offered)
    escalated = factories.new_delivery(merchant, "escalated", pickup=factories.ESTE)  # nobody free in reach
    later = (timezone.now() + timedelta(hours=1)).isoformat()
    scheduled = factories.new_delivery(merchant, "scheduled", ready_at=later, promised_by=later, pickup=factories.ESTE)
    return {
        "offer": offer,
        "deliveries": [offered, assigned, escalated, scheduled],
        "escalation": Escalation.objects.first(),
    }


def test_deliveries_as_merchants_and_drivers_see_them(objects):
    for delivery in objects["deliveries"]:
        delivery = Delivery.objects.select_related("zone", "driver", "merchant").get(pk=delivery.pk)
        for serializer_class in (
            shapes.MerchantDeliverySerializer,
            shapes.MerchantDeliveryDetailSerializer,
            shapes.DriverDeliverySerializer,
            shapes.OfferDeliverySerializer,
        ):
            _same_json(serializer_class, delivery)
        for event in status_changes(delivery):
            _same_json(shapes.TimelineEventSerializer, event)


def test_offers_and_escalations(objects):
    _same_json(shapes.OfferSerializer, Offer.objects.select_related("delivery").get(pk=objects["offer"].pk))
    assert objects["escalation"] is not None
    _same_json(shapes.EscalationSerializer, objects["escalation"])


def test_many_objects_at_once(objects):
    rows = Delivery.objects.select_related("merchant").order_by("created_at")
    listed = shapes.DriverDeliverySerializer(rows, many=True).data
    assert json.dumps(listed) == json.dumps(
        [serializers.Serializer.to_representation(shapes.DriverDeliverySerializer(), row) for row in rows]
    )


def test_the_tracking_state_with_this_call_s_location(objects):
    """The tracking state's `location` comes from the call's context, which the fields built once do not have."""
    offered, assigned = objects["deliveries"][:2]
    progress.pick_up_delivery(assigned.pk, actor=Actor.driver(assigned.driver))
    picked_up = Delivery.objects.get(pk=assigned.pk)
    position = locations.last_position(picked_up.driver)
    for delivery, context in ((offered, {}), (picked_up, {"location": None}), (picked_up, {"location": position})):
        expected = serializers.Serializer.to_representation(shapes.TrackingSerializer(context=context), delivery)
        for optional in ("driver", "location"):
            if expected[optional] is None:
                del expected[optional]
        assert json.dumps(shapes.TrackingSerializer(delivery, context=context).data) == json.dumps(expected)
    assert "location" in shapes.TrackingSerializer(picked_up, context={"location": position}).data
    _same_json(shapes.TrackingStepSerializer, {"status": "picked_up", "at": picked_up.picked_up_at})
