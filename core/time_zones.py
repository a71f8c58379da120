"""The console in its viewer's own time zone: ops read and type times as the clock on their wall shows them. The
browser names its zone in a cookie (static/relay/time_zone.js, on every console page, the login page included);
the middleware activates that zone for the console's requests, so Django shows every time in it and reads every
typed time in it. Only the console's: DRF writes a DateTimeField in the *current* zone, so activating one under
/api/ would turn API.md's UTC times into the viewer's; the websockets never pass through here, and the tracking
page shows its delivery's zone."""

import zoneinfo
from datetime import UTC, datetime
from functools import cache

from django.utils import timezone

COOKIE = "relay_tz"
# The console's pages: the admin (its login page included) and the staff pages beside it (the live board).
CONSOLE_PATHS = ("/admin/", "/ops/")


@cache
def _known_zones() -> frozenset[str]:
    """The IANA names this machine knows. A cookie is checked against them rather than handed to ZoneInfo, which
    also opens any file under the zone directories ("localtime", "posixrules")."""
    return frozenset(zoneinfo.available_timezones())


def viewer_time_zone(request) -> zoneinfo.ZoneInfo | None:
    """The zone the browser named, or None (no cookie, or a name this machine does not know: settings.TIME_ZONE)."""
    name = request.COOKIES.get(COOKIE, "")
    return zoneinfo.ZoneInfo(name) if name in _known_zones() else None


class ConsoleTimeZoneMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        zone = viewer_time_zone(request) if request.path_info.startswith(CONSOLE_PATHS) else None
        if zone is None:
            return self.get_response(request)
        timezone.activate(zone)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()  # a request thread serves the next request too (core/asgi_http.py)


def clock(moment: datetime, time_format: str = "%H:%M") -> str:
    """A time of day as the console writes it in a sentence, in the active zone and naming it, so it is never read
    in another one: "06:07 America/Los_Angeles" (outside the console: "14:07 UTC")."""
    return f"{timezone.localtime(moment):{time_format}} {timezone.get_current_timezone_name()}"


def utc_clock(moment: datetime) -> str:
    """A time of day as stored text writes it (an escalation's detail: the API, webhooks and the audit trail keep
    UTC): "14:07 UTC"."""
    return f"{moment.astimezone(UTC):%H:%M} UTC"


def in_viewer_zone(text: str, moment: datetime) -> str:
    """Stored text that names `moment` as `utc_clock` wrote it, with that time as the console writes it."""
    return text.replace(utc_clock(moment), clock(moment))
