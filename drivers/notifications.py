"""Messages to a driver's app: stored first (numbered per driver), pushed over the websocket after commit."""

import logging
from collections.abc import Callable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from core import loop_sends
from core.channel_layer import unreachable
from core.purge import delete_in_batches
from drivers.models import Driver, DriverMessage

log = logging.getLogger(__name__)


def driver_group(driver_id) -> str:
    return f"driver.{driver_id}"


def notify_driver(driver_id, type: str, data: dict, *, unsent: Callable[[], None] | None = None) -> DriverMessage:
    """Store the message in the driver's stream and send it when the surrounding transaction commits. `unsent`
    runs (in a thread, after the commit) if the channel layer could not take the push."""
    if not connection.in_atomic_block:
        raise RuntimeError("notify_driver must run inside the transaction of the change it reports")
    message = _store_next(DriverMessage(driver_id=driver_id, type=type, data=data))
    envelope = message.envelope()
    transaction.on_commit(lambda: push_to_group(driver_group(driver_id), envelope, unsent=unsent))
    return message


def _store_next(message: DriverMessage) -> DriverMessage:
    """Number the message (the driver's next `message_seq`) and store it. The UPDATE of the driver's counter
    takes its row lock, which orders concurrent messages to one driver. On PostgreSQL both are one statement (an
    UPDATE … RETURNING feeding the INSERT); elsewhere the number is taken first (SQLite ≥ 3.35 has RETURNING)."""
    driver_table, message_table = Driver._meta.db_table, DriverMessage._meta.db_table
    driver_id = Driver._meta.pk.get_db_prep_value(message.driver_id, connection)
    take_seq = f"UPDATE {driver_table} SET message_seq = message_seq + 1 WHERE id = %s RETURNING message_seq"
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            cursor.execute(take_seq, [driver_id])
            message.seq = cursor.fetchone()[0]
            message.save(force_insert=True)
            return message
        fields = {f.attname: f for f in DriverMessage._meta.concrete_fields if f.attname not in ("driver_id", "seq")}
        columns = ", ".join(f.column for f in fields.values())
        cursor.execute(
            f"WITH taken AS ({take_seq}) INSERT INTO {message_table} (driver_id, seq, {columns}) "
            f"SELECT %s, message_seq, {', '.join(['%s'] * len(fields))} FROM taken RETURNING seq",
            [
                driver_id,
                driver_id,
                *(f.get_db_prep_save(f.pre_save(message, add=True), connection) for f in fields.values()),
            ],
        )
        message.seq = cursor.fetchone()[0]
    message._state.adding, message._state.db = False, connection.alias
    return message


def push_to_group(group: str, envelope: dict, *, unsent: Callable[[], None] | None = None) -> None:
    """Best effort: the channel layer is at-most-once; the stored stream is what `resume` replays. A request's
    thread hands the send to its server's event loop and goes on (core/loop_sends.py). `unsent` runs if the
    channel layer could not take the message."""
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "stream.message", "message": envelope}
    if loop_sends.hand_off(layer, group, message, unsent=unsent):
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception as exc:  # a down channel layer must not fail the committed change; the app resumes from seq
        log.warning("push to %s failed (%s); the client will resume", group, exc, exc_info=not unreachable(exc))
        if unsent is not None:
            loop_sends.run_unsent(unsent)


def purge_old_messages() -> int:
    """Delete stream messages older than RELAY_DRIVER_MESSAGE_RETENTION, in short batches. `resume` replays
    only what is kept: an app away for longer reloads its state over REST. Returns how many were deleted."""
    return delete_in_batches(
        DriverMessage.objects.filter(sent_at__lt=timezone.now() - settings.RELAY_DRIVER_MESSAGE_RETENTION)
    )
