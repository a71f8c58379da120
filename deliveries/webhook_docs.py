"""What the API docs (`/api/docs/`, `/api/schema/`'s `webhooks`) tell a merchant about consuming webhooks: the body,
the events, the signature and how to check it, the answer expected, the retries and the delivery semantics. The
event types and the retry schedule are read from the code that sends them (deliveries/webhooks.py); the body's shape
is deliveries/messages.py's, which tests/test_webhook_docs.py holds the two to."""

from datetime import timedelta

from django.conf import settings
from drf_spectacular.utils import OpenApiWebhook

from deliveries.models import DeliveryStatus, Escalation, EscalationLevel
from deliveries.webhooks import RETRY_DELAYS

STATUS_CHANGED = [f"delivery.{status}" for status in DeliveryStatus.values]  # common.transition_delivery_locked
EVENT_TYPES = [*STATUS_CHANGED, "delivery.escalated", "delivery.eta_updated"]


def _wait(delay: timedelta) -> str:
    minutes = int(delay.total_seconds()) // 60
    return f"{minutes // 60} h" if minutes >= 60 and minutes % 60 == 0 else f"{minutes} min"


def _description() -> str:
    retries = ", ".join(_wait(delay) for delay in RETRY_DELAYS)
    return f"""\
Relay `POST`s one JSON event to your merchant account's webhook URL:

- `delivery.<status>` (`{"`, `".join(STATUS_CHANGED)}`) for every status change of one of your deliveries;
- `delivery.escalated` when a delivery is critically late (unassigned for 10 minutes, say): `data` says how and why;
- `delivery.eta_updated` when its ETA moved by more than a minute: `data` is the ETA now shown.

The `X-Relay-Event` header repeats the body's `type`.

**Verify the signature** before trusting a body. `X-Relay-Signature: t=<unix seconds>,v1=<hex>`, where `v1` is the
lowercase hex HMAC-SHA256, keyed with your webhook signing secret (UTF-8), of `<t>` + `.` + the raw request body:
the bytes exactly as received, not JSON you parsed and serialized again. Compare in constant time, and refuse a `t`
far from your clock (more than 5 minutes, say): each attempt is signed anew with its own `t`, so a replayed old
request fails. Anyone can POST to your URL: refuse a header not in this form too, rather than fail on it. After your
secret is rotated, every attempt from then on is signed with the new one.

```python
import hashlib, hmac, time

def verify(secret: str, header: str, body: bytes, tolerance_s: int = 300) -> bool:
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    t, v1 = parts.get("t", ""), parts.get("v1", "")
    if not (t.isascii() and t.isdigit()) or abs(time.time() - int(t)) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), v1.encode())
```

**Answer** any `2xx` within {settings.RELAY_WEBHOOK_TIMEOUT_S:g} seconds: the event is then delivered (your answer's
body is not read). Any other status, a redirect (never followed) or no answer in time is a failed attempt.

**Retries.** A failed attempt is retried up to {len(RETRY_DELAYS)} times, after {retries} (each up to a minute
later): about {sum(RETRY_DELAYS, timedelta()) // timedelta(hours=1)} hours in all, so an endpoint down for a deploy
or a night still gets every event. After the last one the event is marked failed; Relay's operations team can send
it again once your endpoint is back.

**At least once, in any order.** An event may arrive more than once (an attempt whose answer was lost is made
again): deduplicate on `id`, the same on every attempt of one event. Events are sent independently and each is
retried on its own, so they may arrive out of order (a `delivery.assigned` retried for an hour arrives after the
`delivery.delivered` that followed it). Keep, per `delivery_id`, the event with the latest `occurred_at` and ignore
older ones, rather than applying each `status` as it arrives; `GET /api/v1/deliveries/{{id}}` always answers the
current state."""


def _example(type: str, status: str, data: dict) -> dict:
    return {
        "summary": type,
        "value": {
            "id": "5b0c7f0e-2f8e-4d2a-9a43-7c1e0d6f9a10",
            "type": type,
            "delivery_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
            "external_id": "order-1042",
            "status": status,
            "occurred_at": "2026-11-25T12:34:56.789012+00:00",
            "data": data,
        },
    }


BODY = {
    "type": "object",
    "description": "One event about one of your deliveries; signed byte for byte (see above).",
    "properties": {
        "id": {
            "type": "string",
            "format": "uuid",
            "description": "The event's id, the same on every attempt: deduplicate on it.",
        },
        "type": {"type": "string", "enum": EVENT_TYPES, "description": "What happened."},
        "delivery_id": {"type": "string", "format": "uuid", "description": "The delivery's `id` in the API."},
        "external_id": {"type": "string", "description": "Your own id for the delivery, as you created it."},
        "status": {
            "allOf": [{"$ref": "#/components/schemas/DeliveryStatusEnum"}],
            "description": "The delivery's status when the event occurred.",
        },
        "occurred_at": {
            "type": "string",
            "format": "date-time",
            "description": "When it happened (UTC, microseconds): keep the latest per `delivery_id`.",
        },
        "data": {
            "type": "object",
            "description": "`{}` for a status change, but for `delivery.cancelled` and `delivery.failed` "
            "`outcome_reason`, why (as a GET of the delivery names it); for `delivery.escalated` `level` (3, "
            "critical), `reason` and `detail`; for `delivery.eta_updated` the ETA (`pickup`, `dropoff`, "
            "`window_start`, `window_end`).",
        },
    },
    "required": ["id", "type", "delivery_id", "external_id", "status", "occurred_at", "data"],
}

DELIVERY_EVENT = OpenApiWebhook(
    name="delivery_event",
    decorator={
        "post": {
            "summary": "A delivery event, POSTed to your webhook URL",
            "description": _description(),
            "tags": ["webhooks"],
            "parameters": [
                {
                    "name": "X-Relay-Signature",
                    "in": "header",
                    "required": True,
                    "description": '`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`, keyed with your '
                    "webhook signing secret.",
                    "schema": {"type": "string", "pattern": "^t=[0-9]+,v1=[0-9a-f]{64}$"},
                },
                {
                    "name": "X-Relay-Event",
                    "in": "header",
                    "required": True,
                    "description": "The body's `type`.",
                    "schema": {"type": "string", "enum": EVENT_TYPES},
                },
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": BODY,
                        "examples": {
                            "status_changed": _example("delivery.picked_up", "picked_up", {}),
                            "escalated": _example(
                                "delivery.escalated",
                                "offered",
                                {
                                    "level": EscalationLevel.CRITICAL.value,
                                    "reason": Escalation.Reason.UNASSIGNED.value,
                                    "detail": "Unassigned for 10 min",
                                },
                            ),
                            "eta_updated": _example(
                                "delivery.eta_updated",
                                "assigned",
                                {
                                    "pickup": "2026-11-25T12:41:00Z",
                                    "dropoff": "2026-11-25T13:02:00Z",
                                    "window_start": "2026-11-25T12:57:00Z",
                                    "window_end": "2026-11-25T13:07:00Z",
                                },
                            ),
                        },
                    }
                },
            },
            "responses": {
                "2XX": {"description": "Received: Relay stops trying this event."},
                "default": {"description": "Any other answer, or none in time: a failed attempt, retried."},
            },
        }
    },
)
