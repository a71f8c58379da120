from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import generics, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core.audit import Actor
from core.inputs import query_choice, query_flag, read_input
from core.permissions import IsDriver
from deliveries.models import Delivery, Offer, OfferStatus
from deliveries.serializers import (
    DeclineInput,
    DeliverInput,
    DriverDeliverySerializer,
    OfferSerializer,
    ReasonInput,
)
from deliveries.services import availability, offers, progress, reassignment
from drivers.models import DriverState
from drivers.selectors import current_shift


class AvailabilityInput(serializers.Serializer):
    state = serializers.ChoiceField(choices=[DriverState.AVAILABLE, DriverState.ON_BREAK, DriverState.OFFLINE])


class ShiftSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    planned_start = serializers.DateTimeField(allow_null=True)
    planned_end = serializers.DateTimeField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)


class DriverMeSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    first_name = serializers.CharField()
    phone = serializers.CharField()
    vehicle = serializers.CharField()
    home_zone = serializers.CharField(source="home_zone.code")
    capacity = serializers.IntegerField()
    state = serializers.CharField()
    state_changed_at = serializers.DateTimeField()
    last_seen_at = serializers.DateTimeField(allow_null=True)
    current_shift = serializers.SerializerMethodField()
    active_deliveries = serializers.SerializerMethodField()
    pending_offer = serializers.SerializerMethodField()

    def get_current_shift(self, driver) -> ShiftSerializer(allow_null=True):
        shift = current_shift(driver)
        return ShiftSerializer(shift).data if shift else None

    def get_active_deliveries(self, driver) -> DriverDeliverySerializer(many=True):
        rows = Delivery.objects.carried_by(driver).select_related("merchant")
        return DriverDeliverySerializer(rows, many=True).data

    def get_pending_offer(self, driver) -> OfferSerializer(allow_null=True):
        offer = Offer.objects.pending_for_driver(driver).select_related("delivery").first()
        return OfferSerializer(offer).data if offer else None


def _actor(request) -> Actor:
    return Actor.driver(request.user.driver)


def _me(request):
    driver = request.user.driver
    driver.refresh_from_db()
    return Response(DriverMeSerializer(driver).data)


class MeView(APIView):
    permission_classes = [IsDriver]

    @extend_schema(responses=DriverMeSerializer)
    def get(self, request):
        return _me(request)


class AvailabilityView(APIView):
    permission_classes = [IsDriver]

    @extend_schema(
        request=AvailabilityInput,
        responses={200: inline_serializer("AvailabilityResult", {"state": serializers.CharField()})},
    )
    def post(self, request):
        data = read_input(AvailabilityInput, request)
        driver = availability.set_availability(data["state"], actor=_actor(request))
        return Response({"state": driver.state, "state_changed_at": driver.state_changed_at})


class OfferListView(generics.ListAPIView):
    permission_classes = [IsDriver]
    serializer_class = OfferSerializer

    @extend_schema(parameters=[OpenApiParameter("status", str, enum=list(OfferStatus.values))])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        rows = Offer.objects.filter(driver=self.request.user.driver).select_related("delivery")
        if status := query_choice(self.request, "status", OfferStatus.values):
            rows = rows.filter(status=status)
        return rows


class OfferAcceptView(APIView):
    permission_classes = [IsDriver]

    @extend_schema(request=None, responses={200: DriverDeliverySerializer})
    def post(self, request, pk):
        delivery = offers.accept_offer(pk, actor=_actor(request))
        return Response(DriverDeliverySerializer(delivery).data)


class OfferDeclineView(APIView):
    permission_classes = [IsDriver]

    @extend_schema(request=DeclineInput, responses={200: OfferSerializer})
    def post(self, request, pk):
        data = read_input(DeclineInput, request)
        offer = offers.decline_offer(pk, actor=_actor(request), **data)
        return Response(OfferSerializer(offer).data)


class DriverDeliveryListView(generics.ListAPIView):
    permission_classes = [IsDriver]
    serializer_class = DriverDeliverySerializer

    @extend_schema(parameters=[OpenApiParameter("active", bool, description="Only assigned and picked-up ones")])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        rows = Delivery.objects.filter(driver=self.request.user.driver).select_related("merchant")
        if query_flag(self.request, "active"):
            rows = rows.active()
        return rows


class PickupView(APIView):
    permission_classes = [IsDriver]

    @extend_schema(request=None, responses={200: DriverDeliverySerializer})
    def post(self, request, pk):
        delivery = progress.pick_up_delivery(pk, actor=_actor(request))
        return Response(DriverDeliverySerializer(delivery).data)


class DeliverView(APIView):
    permission_classes = [IsDriver]

    @extend_schema(request=DeliverInput, responses={200: DriverDeliverySerializer})
    def post(self, request, pk):
        data = read_input(DeliverInput, request)
        delivery = progress.deliver_delivery(pk, actor=_actor(request), proof=data.get("proof"))
        return Response(DriverDeliverySerializer(delivery).data)


class FailView(APIView):
    permission_classes = [IsDriver]

    @extend_schema(request=ReasonInput, responses={200: DriverDeliverySerializer})
    def post(self, request, pk):
        data = read_input(ReasonInput, request)
        delivery = progress.fail_delivery(pk, actor=_actor(request), reason=data["reason"])
        return Response(DriverDeliverySerializer(delivery).data)


class ReleaseView(APIView):
    permission_classes = [IsDriver]

    @extend_schema(request=ReasonInput, responses={200: DriverDeliverySerializer})
    def post(self, request, pk):
        data = read_input(ReasonInput, request)
        delivery = reassignment.release_delivery(pk, actor=_actor(request), reason=data["reason"])
        return Response(DriverDeliverySerializer(delivery).data)
