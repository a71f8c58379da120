from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import generics, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core.audit import Actor
from core.inputs import query_flag, read_input
from core.permissions import IsOps
from deliveries import messages
from deliveries.models import Escalation, EscalationStatus
from deliveries.selectors import measure_zones
from deliveries.serializers import EscalationSerializer, MerchantDeliveryDetailSerializer
from deliveries.services import escalations, reassignment


class ReassignInput(serializers.Serializer):
    driver_id = serializers.UUIDField(required=False, allow_null=True)
    force = serializers.BooleanField(default=False)


class NoteInput(serializers.Serializer):
    note = serializers.CharField(max_length=2000)


class ReassignView(APIView):
    permission_classes = [IsOps]
    ops_permission = "deliveries.change_delivery"  # as the console's "Reassign"

    @extend_schema(request=ReassignInput, responses={200: MerchantDeliveryDetailSerializer})
    def post(self, request, pk):
        data = read_input(ReassignInput, request)
        delivery = reassignment.reassign_as_ops_ask(
            pk,
            driver_id=data.get("driver_id"),
            force=data["force"],
            actor=Actor.ops(request.user),
        )
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
        if query_flag(self.request, "open"):
            rows = rows.exclude(status=EscalationStatus.RESOLVED)
        return rows


class EscalationAcknowledgeView(APIView):
    permission_classes = [IsOps]
    ops_permission = "deliveries.change_escalation"  # as the console's "Acknowledge"

    @extend_schema(request=None, responses={200: EscalationSerializer})
    def post(self, request, pk):
        return Response(
            EscalationSerializer(escalations.acknowledge_escalation(pk, actor=Actor.ops(request.user))).data
        )


class EscalationResolveView(APIView):
    permission_classes = [IsOps]
    ops_permission = "deliveries.change_escalation"  # as the console's "Resolve…"

    @extend_schema(request=NoteInput, responses={200: EscalationSerializer})
    def post(self, request, pk):
        data = read_input(NoteInput, request)
        escalation = escalations.resolve_escalation(pk, actor=Actor.ops(request.user), note=data["note"])
        return Response(EscalationSerializer(escalation).data)


class ZoneListView(APIView):
    permission_classes = [IsOps]
    ops_permission = "zones.view_zone"

    @extend_schema(
        responses={
            200: inline_serializer(
                "ZonePressure",
                {
                    **{name: serializers.CharField() for name in ["code", "name", "band", "taken_at", "local_time"]},
                    **{
                        name: serializers.IntegerField()
                        for name in [
                            "open_deliveries",
                            "created_last_15_min",
                            "available_drivers",
                            "busy_drivers",
                            "on_break_drivers",
                            "open_escalations",
                            "hints_sent_last_hour",
                            "hints_entered_last_hour",
                        ]
                    },
                    "pressure": serializers.FloatField(),
                    "surge_multiplier": serializers.DecimalField(max_digits=4, decimal_places=2),
                },
                many=True,
            )
        }
    )
    def get(self, request):
        return Response([messages.zone_reading(reading) for reading in measure_zones(now=timezone.now())])
