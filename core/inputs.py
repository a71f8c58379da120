"""Reading a request body: every endpoint does it the same way."""

from rest_framework import serializers


def read_input(serializer_class: type[serializers.Serializer], request) -> dict:
    """The body as `serializer_class` validates it; invalid, a 400 in API.md's error shape (`core.errors`)."""
    data = serializer_class(data=request.data)
    data.is_valid(raise_exception=True)
    return data.validated_data
