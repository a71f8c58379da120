from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.inputs import Number, TimeWithOffset, read_input
from core.permissions import IsDriver
from drivers import locations
from drivers.models import DriverState


class PointInput(serializers.Serializer):
    lat = Number(min_value=-90, max_value=90)
    lng = Number(min_value=-180, max_value=180)
    recorded_at = TimeWithOffset()
    accuracy = Number(min_value=0, required=False, allow_null=True)
    speed = Number(min_value=0, required=False, allow_null=True)
    heading = Number(min_value=0, max_value=360, required=False, allow_null=True)


class LocationBatchInput(serializers.Serializer):
    points = PointInput(many=True, min_length=1, max_length=100)


def points_from(validated: list[dict]) -> list[locations.Point]:
    return [locations.Point(**point) for point in validated]


class LocationsView(APIView):
    permission_classes = [IsDriver]

    @extend_schema(
        request=LocationBatchInput,
        responses={
            202: inline_serializer(
                "LocationBatchResult",
                {"accepted": serializers.IntegerField(), "dropped": serializers.IntegerField()},
            )
        },
    )
    def post(self, request):
        data = read_input(LocationBatchInput, request)
        points = points_from(data["points"])
        driver = request.user.driver
        accepted = locations.record_positions(driver.pk, points, online=driver.state != DriverState.OFFLINE)
        return Response({"accepted": accepted, "dropped": len(points) - accepted}, status=status.HTTP_202_ACCEPTED)
