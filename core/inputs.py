"""Reading a request's input (its body, its query flags): every endpoint does it the same way."""

from rest_framework import serializers


def read_input(serializer_class: type[serializers.Serializer], request) -> dict:
    """The body as `serializer_class` validates it; invalid, a 400 in API.md's error shape (`core.errors`)."""
    data = serializer_class(data=request.data)
    data.is_valid(raise_exception=True)
    return data.validated_data


def query_flag(request, name: str) -> bool:
    """A yes/no filter in the query string (`?active=true`, `?open=1`): on for 1, true or yes in any case, off for
    anything else or when absent."""
    return request.query_params.get(name, "").lower() in ("1", "true", "yes")
