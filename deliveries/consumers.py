"""`/ws/ops/`: live escalations (and zone pressure) for staff, by session or token."""

from core.ws import CLOSE_FORBIDDEN, JsonSocket, token_from_scope, user_for_token
from deliveries.services.ops_feed import OPS_GROUP


class OpsConsumer(JsonSocket):
    seq = 0
    joined = False

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            user = await user_for_token(token_from_scope(self.scope))
        if user is None or not user.is_staff:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.channel_layer.group_add(OPS_GROUP, self.channel_name)
        self.joined = True
        await self.accept()

    async def disconnect(self, code):
        if self.joined:
            await self.channel_layer.group_discard(OPS_GROUP, self.channel_name)

    async def stream_message(self, event):
        self.seq += 1
        await self.send_json(event["message"] | {"seq": self.seq})
