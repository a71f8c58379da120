"""`/ws/ops/`: live escalations (and zone pressure) for staff, by session or token."""

from channels.db import database_sync_to_async

from core.ws import CLOSE_FORBIDDEN, AuthenticatedConsumer
from deliveries.services.ops_feed import OPS_GROUP

# What the feed shows is the escalation queue: whoever may view escalations in the console may watch it.
OPS_FEED_PERMISSION = "deliveries.view_escalation"


@database_sync_to_async
def _may_watch(user) -> bool:
    return user.is_staff and user.has_perm(OPS_FEED_PERMISSION)


class OpsConsumer(AuthenticatedConsumer):
    kind = "ops"
    seq = 0
    joined = False

    async def authorized_user(self, user):
        return user if await _may_watch(user) else None

    async def connect(self):
        if await self.authenticate() is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.channel_layer.group_add(OPS_GROUP, self.channel_name)
        self.joined = True
        await self.accept()

    async def disconnect(self, code):
        await super().disconnect(code)
        if self.joined:
            await self.channel_layer.group_discard(OPS_GROUP, self.channel_name)

    async def stream_message(self, event):
        self.seq += 1
        await self.send_json(event["message"] | {"seq": self.seq})
