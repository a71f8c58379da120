"""Reading a request's input (its body, its query flags, its URL): every endpoint does it the same way."""

from django.core.exceptions import BadRequest
from django.http import Http404
from django.urls.converters import UUIDConverter
from django.utils import timezone
from rest_framework import serializers

from core.errors import SEE_FIELDS, json_error

# PostgreSQL cannot store or compare text holding a NUL (0x00): a query given one fails (DataError), which was a
# 500. Bodies are refused by DRF's fields, in these words; the URL by `NullCharacterMiddleware`, sockets where they
# read a token.
NUL = "\x00"
NUL_REFUSED = "Null characters are not allowed."


class Number(serializers.FloatField):
    """A JSON number (API.md: coordinates are numbers). DRF's FloatField reads true and false as 1.0 and 0.0."""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class TimeWithOffset(serializers.DateTimeField):
    """A time as API.md gives it: ISO 8601 with its offset. DRF read one without an offset as UTC, so a merchant in
    Tokyo sending its local `ready_at` had the delivery held nine hours, and a phone sending local time had its
    summer pings dropped as an hour ahead: refused instead, naming the field."""

    default_error_messages = {"offset": "Give the time with its offset from UTC, e.g. 2026-11-25T12:00:00Z or +09:00."}

    def enforce_timezone(self, value):
        if timezone.is_naive(value):
            self.fail("offset")
        return super().enforce_timezone(value)


def read_input(serializer_class: type[serializers.Serializer], request) -> dict:
    """The body as `serializer_class` validates it; invalid, a 400 in API.md's error shape (`core.errors`)."""
    data = serializer_class(data=request.data)
    data.is_valid(raise_exception=True)
    return data.validated_data


FLAGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def query_value(request, name: str) -> str:
    """A filter's one value in the query string ("" when absent). Given twice (`?status=pending&status=offered`)
    it is bad input (400 naming it): the last one alone answered, and a list filtered by one of the values looked
    like the answer to both."""
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise serializers.ValidationError({name: ["Give one value, not several."]})
    return values[0] if values else ""


def query_flag(request, name: str) -> bool:
    """A yes/no filter in the query string (`?active=true`, `?open=1`): on for 1, true or yes, off for 0, false or
    no (in any case) or when absent. Anything else is bad input (400 naming it): a typo silently ignored would
    answer the unfiltered list as if it were the filtered one."""
    value = query_value(request, name)
    if not value:
        return False
    if (flag := FLAGS.get(value.lower())) is None:
        raise serializers.ValidationError({name: ["Must be true or false (or 1 / 0, yes / no)."]})
    return flag


def query_choice(request, name: str, choices: list[str]) -> str | None:
    """A filter taking one of `choices` (`?status=pending`): None when absent; anything else is bad input (400
    naming it), not an empty list that looks like "none of those"."""
    value = query_value(request, name)
    if not value:
        return None
    if value not in choices:
        raise serializers.ValidationError({name: [f"Must be one of: {', '.join(choices)}."]})
    return value


class AnyCaseUUIDConverter(UUIDConverter):
    """An id in a path (`/api/v1/deliveries/<id>`), in either case: a UUID's letters are read whatever their case
    (RFC 9562), as bodies read them (`driver_id`). Django's own converter takes lower case only, and an app that
    wrote ids in upper case (Swift's `uuidString` does) was told there is no endpoint at the path."""

    regex = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


class NullCharacterMiddleware:
    """A NUL in the URL is refused before any view runs, whatever the view does with it and whatever the database:
    no path holds one (404: the site's page, or the API's JSON), and a query parameter holding one is bad input (400;
    under /api/ in API.md's error shape, `fields` naming the parameter)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if NUL in request.path:
            raise Http404("No path holds a NUL character.")
        query = request.META.get("QUERY_STRING", "")
        if "%00" not in query and NUL not in query:
            return self.get_response(request)  # the common case, without parsing the query string here
        named = [name for name, values in request.GET.lists() if NUL in name or any(NUL in value for value in values)]
        if not named:
            return self.get_response(request)
        if not request.path.startswith("/api/"):
            raise BadRequest(f"Query parameter {named[0]!r}: {NUL_REFUSED}")
        fields = {name: [NUL_REFUSED] for name in named}
        return json_error(400, "invalid", SEE_FIELDS, fields)
