"""`GET /api/v1/track/<token>`: the public tracking JSON. The token is the only credential: no session, no CSRF,
no authentication at all; a per-address throttle keeps guessing and hammering in check."""

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from core.throttling import TrackAddressThrottle
from deliveries import messages
from deliveries.serializers import TrackingSerializer
from deliveries.services.tracking import delivery_for_link


class TrackingView(APIView):
    authentication_classes = []
    permission_classes = []
    throttle_classes = [TrackAddressThrottle]

    @extend_schema(responses={200: TrackingSerializer})
    def get(self, request, token: str):
        return Response(messages.tracking(delivery_for_link(token)))
