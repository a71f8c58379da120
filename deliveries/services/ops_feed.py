"""Live messages to the ops websocket (`/ws/ops/`), sent after commit. The consumer numbers them per
subscriber; ops pages reload state from the database on reconnect, so nothing depends on delivery."""

from django.db import transaction

from core import ws
from drivers.notifications import push_to_group

OPS_GROUP = "ops"


def push_ops(type: str, data: dict) -> None:
    message = ws.envelope(type, data)  # the consumer numbers it per subscriber
    transaction.on_commit(lambda: push_to_group(OPS_GROUP, message))
