"""The customer's tracking link kept current (SPEC 4.1): the ETA recomputed on each state change and, from
pings, at most every 15 s (the beat schedule of `refresh_etas`); `status` and `eta` pushed to the delivery's
tracking sockets after commit; the driver's pings followed (drivers/trail.py) while they carry it; breadcrumbs
written in batches and purged.

A push is one group send per delivery, however many customers watch: the message is built once, here."""

from dataclasses import asdict
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.audit import Actor, atomic_action, record_event
from core.errors import DomainError, NotFound
from core.purge import delete_in_batches
from deliveries import eta, messages
from deliveries.models import ACTIVE_STATUSES, Breadcrumb, Delivery, DeliveryStatus
from deliveries.webhooks import enqueue_webhook
from drivers import trail
from drivers.notifications import push_to_group

ETA_FIELDS = ["eta_pickup", "eta_dropoff", "eta_window_start", "eta_window_end"]
ETA_REFRESH = Actor.system("eta-refresh")


class LinkExpired(DomainError):
    code = "link_expired"
    status = 410
    default_detail = "This tracking link has expired."


def delivery_for_link(token: str, *, now: datetime | None = None) -> Delivery:
    """The delivery behind a tracking link; NotFound for an unknown token, LinkExpired once it finished more
    than RELAY_TRACKING_LINK_TTL ago."""
    delivery = Delivery.objects.select_related("merchant", "driver", "zone").filter(tracking_token=token).first()
    if delivery is None:
        raise NotFound("No such tracking link.")
    now = now or timezone.now()
    if delivery.finished_at is not None and now - delivery.finished_at > settings.RELAY_TRACKING_LINK_TTL:
        raise LinkExpired()
    return delivery


def push_tracking(delivery_id, type: str, data) -> None:
    push_to_group(trail.tracking_group(delivery_id), trail.tracking_envelope(type, data))


def created_unwatched(delivery: Delivery) -> None:
    """A delivery being created: its tracking link is first given in the answer to its create, which shows its
    status, so nobody can watch it before that transaction commits. Its transitions there push nothing."""
    delivery._tracking_unwatched = True


def delivery_changed_locked(delivery: Delivery, *, previous_status: str, previous_driver_id) -> None:
    """After a lifecycle transition of a locked delivery, before it is saved: a fresh ETA (kept at assignment,
    measured at delivery), and after commit the driver's trail and the customer's `status`."""
    eta.show_locked(delivery, eta.estimate(delivery))
    if delivery.status == DeliveryStatus.ASSIGNED and previous_status != DeliveryStatus.ASSIGNED:
        eta.predict_at_assignment_locked(delivery)
    if delivery.status == DeliveryStatus.DELIVERED:
        eta.learn_from_delivery_locked(delivery, vehicle=delivery.driver.vehicle)
    if delivery.status == previous_status:
        return

    def after_commit():
        if delivery.status in (DeliveryStatus.ASSIGNED, DeliveryStatus.PICKED_UP):
            trail.carry(delivery.driver_id, delivery.pk, phase=delivery.status)
        elif previous_driver_id is not None:
            trail.uncarry(previous_driver_id, delivery.pk)
        if getattr(delivery, "_tracking_unwatched", False):
            return
        # Each step of one transaction (an offer passed on: offered, pending, offered) reads the state it ended in
        # at commit: the customer hears it once.
        state = messages.tracking(delivery)
        if state != getattr(delivery, "_tracking_announced", None):
            delivery._tracking_announced = state
            push_tracking(delivery.pk, "status", state)

    # robust: the change is committed whatever happens to its announcement (logged, not raised to the caller).
    transaction.on_commit(after_commit, robust=True)


def refresh_etas() -> int:
    """For deliveries whose driver sent points since the last run (a beat task, every 15 s), and those whose shown
    ETA has passed (pings stopped: the driver is stuck or their app is; shown as it was, the window ended in the
    past while the customer still waited): a new ETA is shown, pushed to the customer and sent to the merchant
    only when it moved by more than a minute. Returns how many moved."""
    moved = 0
    pinged = trail.due_for_eta()
    overdue = Q(eta_dropoff__lt=timezone.now())
    due = Delivery.objects.active().filter(Q(pk__in=pinged) | overdue).select_related("driver", "zone", "merchant")
    # Taken from the set of those pinged: a run that fails puts back the ones it did not get to, or they kept the
    # ETA shown until their driver's next batch of points, or for good when there was none.
    left = set(pinged)
    try:
        for delivery in due:
            moved += _refresh_eta(delivery)
            left.discard(str(delivery.pk))
    except BaseException:
        trail.due_for_eta_again(left)
        raise
    return moved


def _refresh_eta(delivery: Delivery) -> bool:
    """Show a delivery a new ETA if it moved by more than a minute. Whether it did."""
    estimate = eta.estimate(delivery)
    if estimate is None or not estimate.moved_from(delivery):
        return False
    with atomic_action():
        # Only if nothing changed meanwhile: a transition computes its own ETA.
        changed = Delivery.objects.filter(pk=delivery.pk, status=delivery.status, driver=delivery.driver_id)
        eta.show_locked(delivery, estimate)
        if not changed.update(**{field: getattr(delivery, field) for field in ETA_FIELDS}):
            return False
        data = messages.eta(delivery)
        # A change of the delivery, audited as every change is (SPEC 3.2), in the words the merchant is told.
        record_event("delivery.eta_updated", actor=ETA_REFRESH, subject=delivery, delivery_id=delivery.pk, payload=data)
        enqueue_webhook(delivery, "delivery.eta_updated", data)
        transaction.on_commit(lambda: push_tracking(delivery.pk, "eta", data))
    return True


def flush_breadcrumbs(batch: int = 5000) -> int:
    """Write the buffered breadcrumbs in bulk, after restoring what the drivers carry (`restore_carried`).
    Returns how many were written. A batch the database fails goes back to the buffer for the next flush: taken
    out and not written, that stretch of every trail was lost for good."""
    restore_carried()
    written = 0
    while crumbs := trail.drain(batch):
        try:
            rows = [Breadcrumb(**asdict(crumb)) for crumb in _while_carried(crumbs)]  # a Crumb has its fields
            Breadcrumb.objects.bulk_create(rows, batch_size=1000)
        except BaseException:
            trail.put_back(crumbs)
            raise
        written += len(rows)
    return written


def _while_carried(crumbs: list[trail.Crumb]) -> list[trail.Crumb]:
    """The crumbs a driver left while carrying the delivery: recorded while it is still theirs, or before it stopped
    being theirs (its last change). The others come from an `uncarry` a Redis outage lost at the delivery's end or
    handover: the trail is told again to stop following it, and nothing is kept after the delivery (SPEC 6)."""
    ids = {crumb.delivery_id for crumb in crumbs}
    now = Delivery.objects.filter(pk__in=ids).values_list("pk", "driver_id", "status", "status_changed_at")
    now = {str(pk): (str(driver_id), status, changed) for pk, driver_id, status, changed in now}
    kept, gone = [], set()
    for crumb in crumbs:
        driver_id, status, changed = now.get(crumb.delivery_id, (None, None, None))
        if driver_id == crumb.driver_id and (status in ACTIVE_STATUSES or crumb.recorded_at <= changed):
            kept.append(crumb)
        elif changed is None or crumb.recorded_at > changed:
            gone.add((crumb.driver_id, crumb.delivery_id))
    for driver_id, delivery_id in gone:
        trail.uncarry(driver_id, delivery_id)
    return kept


def restore_carried() -> None:
    """Tell the trail again what every driver carries, from the database, for the `carry` a Redis outage lost.
    A delivery that changed between the read and the write had its own `carry` or `uncarry` run before that
    write, which the write undid: it is redone here, so no trail or live location outlives its delivery and a
    pickup is not set back to `assigned` (the customer sees the location from pickup on)."""
    active = list(Delivery.objects.active().values_list("driver_id", "pk", "status"))
    if not trail.carry_again(active):
        return
    now = Delivery.objects.filter(pk__in=[pk for _, pk, _ in active]).active().values_list("pk", "driver_id", "status")
    now = {pk: (driver_id, status) for pk, driver_id, status in now}
    for driver_id, delivery_id, status in active:
        if (current := now.get(delivery_id)) is None or current[0] != driver_id:
            trail.uncarry(driver_id, delivery_id)
        elif current[1] != status:
            trail.carry(driver_id, delivery_id, phase=current[1])


def purge_old_breadcrumbs() -> int:
    """Raw breadcrumbs older than RELAY_BREADCRUMB_RETENTION are deleted (privacy, SPEC 6)."""
    return delete_in_batches(
        Breadcrumb.objects.filter(recorded_at__lt=timezone.now() - settings.RELAY_BREADCRUMB_RETENTION)
    )
