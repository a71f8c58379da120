from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.audit import Actor
from core.inputs import query_choice, query_value, read_input
from core.permissions import IsMerchant
from deliveries.models import Delivery, DeliveryStatus
from deliveries.serializers import (
    DeliveryCreateInput,
    MerchantDeliveryDetailSerializer,
    MerchantDeliverySerializer,
    ReasonInput,
)
from deliveries.services.creation import create_delivery
from deliveries.services.progress import cancel_delivery


def merchant_deliveries(request):
    return Delivery.objects.filter(merchant=request.user.merchant).select_related("zone", "driver", "merchant")


class DeliveryListCreateView(generics.ListAPIView):
    permission_classes = [IsMerchant]
    serializer_class = MerchantDeliverySerializer

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "status", str, enum=list(DeliveryStatus.values), description="Only deliveries in this status"
            ),
            OpenApiParameter("external_id", str, description="Only the delivery with this external_id"),
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        rows = merchant_deliveries(self.request)
        if status := query_choice(self.request, "status", DeliveryStatus.values):
            rows = rows.filter(status=status)
        if external_id := query_value(self.request, "external_id"):
            rows = rows.filter(external_id=external_id)
        return rows

    @extend_schema(
        request=DeliveryCreateInput,
        responses={
            201: MerchantDeliveryDetailSerializer,
            200: OpenApiResponse(
                MerchantDeliveryDetailSerializer,
                description="The same delivery (this merchant's external_id, the same body) sent again: the "
                "existing delivery, as its 201 showed it. Another body under that external_id answers 409.",
            ),
        },
    )
    def post(self, request):
        data = read_input(DeliveryCreateInput, request)
        delivery, created = create_delivery(merchant=request.user.merchant, data=data)
        return Response(
            MerchantDeliveryDetailSerializer(delivery).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class DeliveryDetailView(generics.RetrieveAPIView):
    permission_classes = [IsMerchant]
    serializer_class = MerchantDeliveryDetailSerializer

    def get_queryset(self):
        return merchant_deliveries(self.request)


class DeliveryCancelView(APIView):
    permission_classes = [IsMerchant]

    @extend_schema(request=ReasonInput, responses={200: MerchantDeliveryDetailSerializer})
    def post(self, request, pk):
        data = read_input(ReasonInput, request)
        delivery = cancel_delivery(pk, actor=Actor.merchant(request.user.merchant), reason=data["reason"])
        return Response(MerchantDeliveryDetailSerializer(delivery).data)
