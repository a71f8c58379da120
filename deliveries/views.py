"""`/t/<token>`: the customer's tracking page. The page carries the link's state as it is now; the browser keeps
it live over `/ws/track/<token>/` and, when the socket fails, polls `GET /api/v1/track/<token>` every 10 s.
It speaks the customer's language (Accept-Language: English or Portuguese)."""

from django.conf import settings
from django.shortcuts import render
from django.utils import translation
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _

from core.errors import NotFound
from deliveries import messages
from deliveries.services.tracking import LinkExpired, delivery_for_link

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


def tracking_page(request, token: str):
    language = translation.get_language_from_request(request)
    with translation.override(language):
        try:
            delivery = delivery_for_link(token)
        except LinkExpired:
            response = render(request, "tracking/expired.html", status=410)
        except NotFound:
            response = render(request, "tracking/expired.html", {"unknown": True}, status=404)
        else:
            config = {
                "api": f"/api/v1/track/{token}",
                "socket": f"/ws/track/{token}/",
                "poll_every_s": POLL_EVERY_S,
                "tiles": settings.RELAY_MAP_TILES_URL,
                "language": translation.get_language(),
                "time_zone": delivery.zone.time_zone,
                "pickup": [delivery.pickup_lat, delivery.pickup_lng],
                "dropoff": [delivery.dropoff_lat, delivery.dropoff_lng],
            }
            context = {
                "state": messages.tracking(delivery),
                "config": config,
                "labels": _labels(),
                "merchant": delivery.merchant.name,
                "street": _street_line(delivery.dropoff_address),
            }
            response = render(request, "tracking/page.html", context)
        response.headers["Content-Language"] = translation.get_language()
    patch_vary_headers(response, ["Accept-Language"])
    return response
