"""The dispatch's system metrics (SPEC 5, "system"): counted where the work happens, summed over processes by
`core.metrics`; what the database already knows (unassigned deliveries, open escalations) is read at scrape."""

from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from core import metrics
from deliveries.models import Delivery, Escalation, EscalationStatus

ASSIGNMENT_LATENCY = metrics.histogram(
    "relay_assignment_latency_seconds",
    "From a delivery's creation to its first offer (stage=first_offer) and to its first assignment (stage=assigned)",
    ["stage"],
    buckets=metrics.LATENCY_BUCKETS,
)
OFFERS = metrics.counter(
    "relay_offers_total", "Offers by outcome (created, accepted, declined, expired, withdrawn)", ["outcome"]
)
DISPATCH_DURATION = metrics.histogram("relay_dispatch_duration_seconds", "Time to choose a driver for a delivery")


def observe_first_offer(delivery: Delivery, offer) -> None:
    if not delivery.offers.exclude(pk=offer.pk).exists():
        ASSIGNMENT_LATENCY.labels(stage="first_offer").observe((offer.sent_at - delivery.created_at).total_seconds())


def observe_assignment(delivery: Delivery) -> None:
    if delivery.reassignment_count == 0:  # the first assignment: latency counts from creation
        ASSIGNMENT_LATENCY.labels(stage="assigned").observe(
            (delivery.assigned_at - delivery.created_at).total_seconds()
        )


def collect_backlog():
    """Unassigned deliveries and the age of the oldest, by zone; open escalations by level."""
    unassigned = GaugeMetricFamily("relay_unassigned_deliveries", "Deliveries waiting for a driver", labels=["zone"])
    oldest = GaugeMetricFamily(
        "relay_oldest_unassigned_age_seconds", "How long the longest-waiting delivery has waited", labels=["zone"]
    )
    now = timezone.now()
    waiting = Delivery.objects.open().values("zone__code").annotate(count=Count("pk"), since=Min("unassigned_since"))
    for row in waiting:
        unassigned.add_metric([row["zone__code"]], row["count"])
        oldest.add_metric([row["zone__code"]], (now - row["since"]).total_seconds() if row["since"] else 0)
    escalations = GaugeMetricFamily(
        "relay_open_escalations", "Escalations not yet resolved, by level", labels=["level"]
    )
    open_ones = Escalation.objects.exclude(status=EscalationStatus.RESOLVED).values("level").annotate(count=Count("pk"))
    for row in open_ones:
        escalations.add_metric([str(row["level"])], row["count"])
    yield from (unassigned, oldest, escalations)
