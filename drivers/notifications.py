"""Messages to a driver's app: stored first (numbered per driver), pushed over the websocket after commit."""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from drivers.models import Driver, DriverMessage

log = logging.getLogger(__name__)
PURGE_BATCH = 5000


def driver_group(driver_id) -> str:
    return f"driver.{driver_id}"


def notify_driver(driver_id, type: str, data: dict) -> DriverMessage:
    """Store the message in the driver's stream and send it when the surrounding transaction commits."""
    if not connection.in_atomic_block:
        raise RuntimeError("notify_driver must run inside the transaction of the change it reports")
    seq = _next_seq(driver_id)
    message = DriverMessage.objects.create(driver_id=driver_id, seq=seq, type=type, data=data)
    envelope = message.envelope()
    transaction.on_commit(lambda: push_to_group(driver_group(driver_id), envelope))
    return message


def _next_seq(driver_id) -> int:
    """Take the driver's next message number in one statement (PostgreSQL and SQLite ≥ 3.35 both have
    RETURNING); the row lock it takes orders concurrent messages to one driver."""
    table = Driver._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET message_seq = message_seq + 1 WHERE id = %s RETURNING message_seq",
            [Driver._meta.pk.get_db_prep_value(driver_id, connection)],
        )
        return cursor.fetchone()[0]


def push_to_group(group: str, envelope: dict) -> None:
    """Best effort: the channel layer is at-most-once; the stored stream is what `resume` replays."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, {"type": "stream.message", "message": envelope})
    except Exception:  # a down channel layer must not fail the committed change; the app resumes from seq
        log.warning("push to %s failed; the client will resume", group, exc_info=True)


def purge_old_messages() -> int:
    """Delete stream messages older than RELAY_DRIVER_MESSAGE_RETENTION, in short batches. `resume` replays
    only what is kept: an app away for longer reloads its state over REST. Returns how many were deleted."""
    old = DriverMessage.objects.filter(sent_at__lt=timezone.now() - settings.RELAY_DRIVER_MESSAGE_RETENTION)
    deleted = 0
    while batch := list(old.values_list("pk", flat=True)[:PURGE_BATCH]):
        deleted += DriverMessage.objects.filter(pk__in=batch).delete()[0]
    return deleted
