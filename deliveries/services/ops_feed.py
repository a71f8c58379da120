"""Live messages to the ops websocket (`/ws/ops/`), sent after commit. The consumer numbers them per
subscriber; ops pages reload state from the database on reconnect, so nothing depends on delivery."""

import uuid

from django.db import transaction
from django.utils import timezone

from drivers.notifications import push_to_group

OPS_GROUP = "ops"


def push_ops(type: str, data: dict) -> None:
    message = {"type": type, "id": str(uuid.uuid4()), "sent_at": timezone.now().isoformat(), "data": data}
    transaction.on_commit(lambda: push_to_group(OPS_GROUP, message))
