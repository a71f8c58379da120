from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import generics, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core.permissions import IsOps
from deliveries.models import Escalation, EscalationStatus
from deliveries.selectors import zone_pressure
from deliveries.serializers import MerchantDeliveryDetailSerializer
from deliveries.services import escalations
from deliveries.services.reassignment import reassign_by_ops


class ReassignInput(serializers.Serializer):
    driver_id = serializers.UUIDField(required=False, allow_null=True)
    force = serializers.BooleanField(default=False)

    def validate(self, attrs):
        if attrs["force"] and not attrs.get("driver_id"):
            raise serializers.ValidationError({"driver_id": ["A forced assignment needs a driver."]})
        return attrs


class NoteInput(serializers.Serializer):
    note = serializers.CharField(max_length=2000)


class EscalationSerializer(serializers.ModelSerializer):
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


class ReassignView(APIView):
    permission_classes = [IsOps]
    ops_permission = "deliveries.change_delivery"  # as the console's "Reassign"

    @extend_schema(request=ReassignInput, responses={200: MerchantDeliveryDetailSerializer})
    def post(self, request, pk):
        data = ReassignInput(data=request.data)
        data.is_valid(raise_exception=True)
        delivery = reassign_by_ops(pk, user=request.user, **data.validated_data)
        delivery.refresh_from_db()
        return Response(MerchantDeliveryDetailSerializer(delivery).data)


class EscalationListView(generics.ListAPIView):
    permission_classes = [IsOps]
    ops_permission = "deliveries.view_escalation"
    serializer_class = EscalationSerializer

    @extend_schema(parameters=[OpenApiParameter("open", bool, description="Only unresolved escalations")])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        rows = Escalation.objects.select_related("delivery__zone").order_by("-level", "opened_at")
        if self.request.query_params.get("open", "").lower() in ("1", "true", "yes"):
            rows = rows.exclude(status=EscalationStatus.RESOLVED)
        return rows


class EscalationAcknowledgeView(APIView):
    permission_classes = [IsOps]
    ops_permission = "deliveries.change_escalation"  # as the console's "Acknowledge"

    @extend_schema(request=None, responses={200: EscalationSerializer})
    def post(self, request, pk):
        return Response(EscalationSerializer(escalations.acknowledge_escalation(pk, user=request.user)).data)


class EscalationResolveView(APIView):
    permission_classes = [IsOps]
    ops_permission = "deliveries.change_escalation"  # as the console's "Resolve…"

    @extend_schema(request=NoteInput, responses={200: EscalationSerializer})
    def post(self, request, pk):
        data = NoteInput(data=request.data)
        data.is_valid(raise_exception=True)
        escalation = escalations.resolve_escalation(pk, user=request.user, note=data.validated_data["note"])
        return Response(EscalationSerializer(escalation).data)


class ZoneListView(APIView):
    permission_classes = [IsOps]
    ops_permission = "zones.view_zone"

    @extend_schema(responses={200: inline_serializer("ZonePressure", {"code": serializers.CharField()}, many=True)})
    def get(self, request):
        return Response(zone_pressure())
