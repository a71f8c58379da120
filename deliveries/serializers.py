from collections.abc import Callable

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.inputs import Number, TimeWithOffset
from core.models import AuditEvent
from deliveries import eta, selectors
from deliveries.models import ACTIVE_STATUSES, DeclineReason, Delivery, Escalation, Offer
from drivers import trail


class PlaceInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    address = serializers.CharField(max_length=300)
    lat = Number(min_value=-90, max_value=90)
    lng = Number(min_value=-180, max_value=180)
    phone = serializers.CharField(max_length=32, required=False, allow_blank=True)


class DeliveryCreateInput(serializers.Serializer):
    external_id = serializers.CharField(max_length=100)
    pickup = PlaceInput()
    dropoff = PlaceInput()
    ready_at = TimeWithOffset(required=False, allow_null=True)
    promised_by = TimeWithOffset(required=False, allow_null=True)
    value = serializers.DecimalField(max_digits=10, decimal_places=2, min_value=0, required=False, allow_null=True)
    notes = serializers.CharField(max_length=2000, required=False, allow_blank=True)

    def validate(self, attrs):
        ready_at, promised_by = attrs.get("ready_at"), attrs.get("promised_by")
        if ready_at and promised_by and promised_by < ready_at:
            raise serializers.ValidationError({"promised_by": ["Must not be before ready_at."]})
        return attrs


class ReasonInput(serializers.Serializer):
    reason = serializers.CharField(max_length=300)


class DeliverInput(serializers.Serializer):
    proof = serializers.JSONField(required=False, allow_null=True)


class DeclineInput(serializers.Serializer):
    reason = serializers.ChoiceField(choices=DeclineReason.choices)
    note = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")


# For an output serializer whose fields depend on nothing but the object (no context, no arguments): its fields are
# built once per class, not per object. DRF builds a serializer's fields anew for every instance (copies of the
# declared fields, and a ModelSerializer introspects its model each time): ~9 % of the CPU of a dispatch went there
# (issue 12). The representation is the same code on the same fields, so the same JSON;
# tests/test_serializer_fields_once.py holds it to the per-instance fields' output. (A comment, not a docstring:
# drf-spectacular describes each serializer by its docstring, inherited, and integrators read those.)
class FieldsBuiltOnce:
    def to_representation(self, instance):
        cls = type(self)
        template = cls.__dict__.get("_fields_template")
        if template is None:
            template = cls._fields_template = cls()  # built on first use, when the app registry is ready
        return super(FieldsBuiltOnce, template).to_representation(instance)


def place(delivery: Delivery, which: str, *, with_phone: bool) -> dict:
    data = {
        "name": getattr(delivery, f"{which}_name"),
        "address": getattr(delivery, f"{which}_address"),
        "lat": getattr(delivery, f"{which}_lat"),
        "lng": getattr(delivery, f"{which}_lng"),
    }
    if with_phone:
        data["phone"] = getattr(delivery, f"{which}_phone")
    return data


@extend_schema_field(PlaceInput)
class PlaceField(serializers.Field):
    """The pickup or dropoff of a delivery as one object; phone numbers only for those who may call: always, never,
    or while `with_phone(delivery)` says so."""

    def __init__(self, which: str, *, with_phone: bool | Callable[[Delivery], bool], **kwargs):
        self.which, self.with_phone = which, with_phone
        super().__init__(source="*", read_only=True, **kwargs)

    def to_representation(self, delivery) -> dict:
        with_phone = self.with_phone(delivery) if callable(self.with_phone) else self.with_phone
        return place(delivery, self.which, with_phone=with_phone)


def _carried(delivery: Delivery) -> bool:
    return delivery.status in ACTIVE_STATUSES


class EtaSerializer(FieldsBuiltOnce, serializers.Serializer):
    pickup = serializers.DateTimeField()
    dropoff = serializers.DateTimeField()
    window_start = serializers.DateTimeField()
    window_end = serializers.DateTimeField()


class DriverBriefSerializer(serializers.Serializer):
    first_name = serializers.CharField()
    vehicle = serializers.CharField()


def driver_brief(delivery: Delivery) -> dict | None:
    """Who brings it, as merchants and customers see the driver: first name and vehicle, nothing else."""
    if delivery.driver is None:
        return None
    return {"first_name": delivery.driver.first_name, "vehicle": delivery.driver.vehicle}


def shown_eta(delivery: Delivery) -> dict | None:
    shown = eta.shown(delivery)
    return EtaSerializer(shown).data if shown else None


class TimelineEventSerializer(FieldsBuiltOnce, serializers.ModelSerializer):
    at = serializers.DateTimeField(source="occurred_at")
    actor = serializers.CharField(source="actor_kind")
    from_state = serializers.CharField()
    to_state = serializers.CharField()

    class Meta:
        model = AuditEvent
        fields = ["type", "at", "actor", "from_state", "to_state"]


class MerchantDeliverySerializer(FieldsBuiltOnce, serializers.ModelSerializer):
    zone = serializers.SlugRelatedField(slug_field="code", read_only=True)
    tracking_url = serializers.CharField(read_only=True)
    pickup = PlaceField("pickup", with_phone=True)
    dropoff = PlaceField("dropoff", with_phone=True)
    driver = serializers.SerializerMethodField()
    eta = serializers.SerializerMethodField()

    class Meta:
        model = Delivery
        fields = [
            "id",
            "external_id",
            "status",
            "zone",
            "tracking_url",
            "created_at",
            "fee",
            "pickup",
            "dropoff",
            "ready_at",
            "promised_by",
            "value",
            "notes",
            "driver",
            "eta",
            "assigned_at",
            "picked_up_at",
            "finished_at",
            "outcome_reason",
            "reassignment_count",
        ]

    @extend_schema_field(DriverBriefSerializer(allow_null=True))
    def get_driver(self, delivery):
        return driver_brief(delivery)

    @extend_schema_field(EtaSerializer(allow_null=True))
    def get_eta(self, delivery):
        return shown_eta(delivery)


class MerchantDeliveryDetailSerializer(MerchantDeliverySerializer):
    events = serializers.SerializerMethodField()

    class Meta(MerchantDeliverySerializer.Meta):
        fields = [*MerchantDeliverySerializer.Meta.fields, "events"]

    def get_events(self, delivery) -> TimelineEventSerializer(many=True):
        return TimelineEventSerializer(selectors.status_changes(delivery), many=True).data


class DriverDeliverySerializer(FieldsBuiltOnce, serializers.ModelSerializer):
    merchant = serializers.CharField(source="merchant.name")
    # The driver may call the shop and the customer while carrying the delivery; once it has ended, their
    # deliveries list keeps where it went, not the numbers.
    pickup = PlaceField("pickup", with_phone=_carried)
    dropoff = PlaceField("dropoff", with_phone=_carried)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "external_id",
            "status",
            "merchant",
            "pickup",
            "dropoff",
            "ready_at",
            "promised_by",
            "notes",
            "assigned_at",
            "picked_up_at",
            "finished_at",
        ]


class OfferDeliverySerializer(FieldsBuiltOnce, serializers.ModelSerializer):
    # Before accepting, a driver sees where, not who: phone numbers come with the assignment.
    pickup = PlaceField("pickup", with_phone=False)
    dropoff = PlaceField("dropoff", with_phone=False)

    class Meta:
        model = Delivery
        fields = ["id", "pickup", "dropoff", "ready_at", "distance_km"]


class OfferSerializer(FieldsBuiltOnce, serializers.ModelSerializer):
    delivery = OfferDeliverySerializer()

    class Meta:
        model = Offer
        fields = [
            "id",
            "status",
            "kind",
            "delivery",
            "sent_at",
            "expires_at",
            "responded_at",
            "distance_km",
            "eta_to_pickup_s",
            "estimated_pay",
            "surge_multiplier",
            "decline_reason",
        ]


class EscalationSerializer(FieldsBuiltOnce, serializers.ModelSerializer):
    delivery_id = serializers.UUIDField()
    external_id = serializers.CharField(source="delivery.external_id")
    zone = serializers.CharField(source="delivery.zone.code")
    delivery_status = serializers.CharField(source="delivery.status")

    class Meta:
        model = Escalation
        fields = [
            "id",
            "delivery_id",
            "external_id",
            "zone",
            "delivery_status",
            "reason",
            "level",
            "status",
            "detail",
            "opened_at",
            "acknowledged_at",
            "resolved_at",
            "resolution_note",
        ]


# --- the public tracking link (SPEC 4.1): an allow-list, nothing else leaves -------------------------------


class TrackingStepSerializer(FieldsBuiltOnce, serializers.Serializer):
    status = serializers.CharField()
    at = serializers.DateTimeField()


class TrackingLocationSerializer(serializers.Serializer):
    lat = serializers.FloatField()
    lng = serializers.FloatField()
    recorded_at = serializers.DateTimeField()


class OptionalMethodField(serializers.SerializerMethodField):
    """An output field API.md marks optional (`driver?`, `location?`): absent when None, and documented as not
    required (the schema lists every read-only field as required)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.read_only, self.required = False, False


# Whose driver the customer may see: from assignment on (not a driver who had it and handed it back).
_WITH_DRIVER = {"assigned", "picked_up", "delivered", "failed"}


class TrackingSerializer(FieldsBuiltOnce, serializers.Serializer):
    """`GET /api/v1/track/<token>` and the tracking socket's `status`: status, merchant name, timeline, ETA
    window, driver's first name and vehicle, and the live location only between pickup and delivery. No address,
    no phone number. `location` comes from the caller (the index's last position), not from the delivery."""

    status = serializers.CharField()
    merchant = serializers.CharField(source="merchant.name")
    timeline = serializers.SerializerMethodField()
    eta = serializers.SerializerMethodField()
    driver = OptionalMethodField()
    location = OptionalMethodField()

    @extend_schema_field(TrackingStepSerializer(many=True))
    def get_timeline(self, delivery):
        steps = [("pending", delivery.created_at), ("assigned", delivery.assigned_at)]
        steps += [("picked_up", delivery.picked_up_at)]
        if delivery.status in ("delivered", "failed", "cancelled"):
            steps.append((delivery.status, delivery.finished_at))
        return [TrackingStepSerializer({"status": step, "at": at}).data for step, at in steps if at is not None]

    @extend_schema_field(EtaSerializer(allow_null=True))
    def get_eta(self, delivery):
        return shown_eta(delivery) if delivery.status in ("assigned", "picked_up") else None

    @extend_schema_field(DriverBriefSerializer)
    def get_driver(self, delivery):
        return driver_brief(delivery) if delivery.status in _WITH_DRIVER else None

    @extend_schema_field(TrackingLocationSerializer)
    def get_location(self, delivery):
        point = self.context.get("location")
        return trail.location_data(point) if point and delivery.status == "picked_up" else None

    def to_representation(self, delivery):
        data = super().to_representation(delivery)
        data["location"] = self.get_location(delivery)  # the fields built once have no context: this call's
        for optional in ("driver", "location"):
            if data[optional] is None:
                del data[optional]
        return data
