"""Pages beside the API and the admin: the live ops board for staff (SPEC 4.2) and the customer's tracking page
(SPEC 4.1).

`/t/<token>` carries the link's state as it is now; the browser keeps it live over `/ws/track/<token>/` and, when
the socket fails, polls `GET /api/v1/track/<token>` every 10 s. It speaks the customer's language
(Accept-Language: English or Portuguese)."""

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.shortcuts import render
from django.template.response import TemplateResponse
from django.utils import timezone, translation
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _

from core.errors import NotFound
from core.throttling import tracking_visit
from deliveries import messages
from deliveries.consumers import OPS_FEED_PERMISSION
from deliveries.models import Escalation, EscalationStatus
from deliveries.selectors import measure_zones
from deliveries.services.tracking import LinkExpired, delivery_for_link

# The board shows zones and the escalation queue, and listens to /ws/ops/: it asks for what the feed asks for.
BOARD_PERMISSIONS = [OPS_FEED_PERMISSION, "zones.view_zone"]


def ops_board(request):
    """Every active zone on a map, coloured by band, and the open escalations; kept live by `/ws/ops/`
    (`zone.pressure`, `escalation.opened`, `escalation.updated`) on the admin's session. Wrapped in the admin's
    `admin_view` (config/urls.py): anyone not staff is sent to the admin login."""
    if not request.user.has_perms(BOARD_PERMISSIONS):
        raise PermissionDenied
    readings = measure_zones(now=timezone.now())
    escalations = (
        Escalation.objects.exclude(status=EscalationStatus.RESOLVED)
        .select_related("delivery__zone")
        .order_by("-level", "opened_at")
    )
    board = {
        "tiles_url": settings.RELAY_MAP_TILES_URL,
        "zones": [messages.zone_reading(reading) | {"polygon": reading.snapshot.zone.polygon} for reading in readings],
        "escalations": [messages.escalation(escalation) for escalation in escalations],
    }
    context = admin.site.each_context(request) | {"title": "Live ops board", "board": board}
    return TemplateResponse(request, "relay/ops_board.html", context)


POLL_EVERY_S = 10


def _labels() -> dict:
    """Every sentence the page's script writes, in the request's language."""
    return {
        "status": {
            "pending": _("Finding a driver"),
            "offered": _("Finding a driver"),
            "assigned": _("Your driver is on the way to the store"),
            "picked_up": _("On the way to you"),
            "delivered": _("Delivered"),
            "failed": _("Could not be delivered"),
            "cancelled": _("Cancelled"),
        },
        "step": {
            "pending": _("Order received"),
            "assigned": _("Driver assigned"),
            "picked_up": _("Picked up"),
            "delivered": _("Delivered"),
            "failed": _("Not delivered"),
            "cancelled": _("Cancelled"),
        },
        "vehicle": {"bicycle": _("bicycle"), "scooter": _("scooter"), "car": _("car")},
        # {start}, {end}, {time}, {name}, {vehicle} are filled in by the script.
        "arrives": _("Arrives {start}–{end}"),
        "delivered_at": _("Delivered at {time}"),
        "finished_at": _("At {time}"),
        "driver": _("{name} · {vehicle}"),
        "pickup": _("Store"),
        "dropoff": _("You"),
        "you_driver": _("Driver"),
    }


def _street_line(address: str) -> str:
    """The dropoff's street line only: no flat, floor or unit (SPEC 4.1)."""
    return address.splitlines()[0].split(",")[0].strip() if address else ""


# The customer's door is shown no closer than this (3 decimals: ~110 m north-south): anyone the link is forwarded
# to sees the neighbourhood, not the address (SPEC 4.1: nothing beyond the dropoff street line).
DROPOFF_DECIMALS = 3


def tracking_page(request, token: str):
    language = translation.get_language_from_request(request)
    with translation.override(language):
        if (retry_after := tracking_visit(request)) is not None:
            response = render(request, "tracking/notice.html", {"busy": True, "retry_after": retry_after}, status=429)
            response.headers["Retry-After"] = str(retry_after)
        else:
            response = _tracking_page(request, token)
        response.headers["Content-Language"] = translation.get_language()
    patch_vary_headers(response, ["Accept-Language"])
    return response


def _tracking_page(request, token: str):
    try:
        delivery = delivery_for_link(token)
    except LinkExpired:
        return render(request, "tracking/notice.html", status=410)
    except NotFound:
        return render(request, "tracking/notice.html", {"unknown": True}, status=404)
    config = {
        "api": f"/api/v1/track/{token}",
        "socket": f"/ws/track/{token}/",
        "poll_every_s": POLL_EVERY_S,
        "tiles": settings.RELAY_MAP_TILES_URL,
        "language": translation.get_language(),
        "time_zone": delivery.zone.time_zone,
        "pickup": [delivery.pickup_lat, delivery.pickup_lng],
        "dropoff": [
            round(delivery.dropoff_lat, DROPOFF_DECIMALS),
            round(delivery.dropoff_lng, DROPOFF_DECIMALS),
        ],
    }
    state = messages.tracking(delivery)
    labels = _labels()
    context = {
        "state": state,
        # The heading in words from the start: the script only keeps it current.
        "status_label": labels["status"].get(state["status"], state["status"]),
        "config": config,
        "labels": labels,
        "merchant": delivery.merchant.name,
        "street": _street_line(delivery.dropoff_address),
    }
    return render(request, "tracking/page.html", context)
