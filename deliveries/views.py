"""Staff pages beside the admin: the live ops board (SPEC 4.2)."""

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.utils import timezone

from deliveries import messages
from deliveries.consumers import OPS_FEED_PERMISSION
from deliveries.models import Escalation, EscalationStatus
from deliveries.selectors import measure_zones

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
