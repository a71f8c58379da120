"""The channel layer of production mode: channels-redis' pub/sub layer, with a lean queue per channel that a
socket can read itself.

Every socket's consumer has a channel of its own, and the layer keeps a queue per channel for the socket's life:
an `asyncio.Queue`, ~3.3 KB empty, where `core.aio.Inbox` holds nothing while nothing waits in it. A socket that
takes its channel with `new_inbox` reads that queue itself (core/ws.py), without a task waiting in `receive`. A
channel has one reader at a time (an `Inbox` refuses a second), where channels-redis let several race for it.
"""

import asyncio
import logging

from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer, _wrap_close

from core.aio import Inbox

log = logging.getLogger(__name__)


class _LoopLayer(RedisPubSubLoopLayer):
    async def _subscribe_to_channel(self, channel):
        self.channels[channel] = Inbox()
        try:
            await self._get_shard(channel).subscribe(channel)
        except BaseException:
            self.channels.pop(channel, None)  # Redis down: a refused socket's channel is not kept, for each retry
            raise

    async def new_inbox(self, prefix="specific."):
        """A new channel, and the inbox its messages arrive in, serialized (`deserialize` reads them), for a
        reader that takes them itself rather than through `receive`; it ends with `close_inbox`."""
        channel = await self.new_channel(prefix)
        return channel, self.channels[channel]

    async def close_inbox(self, channel):
        """The channel of `new_inbox` is forgotten and unsubscribed: what `receive` does when it is cancelled."""
        if self.channels.pop(channel, None) is None:
            return
        try:
            await self._get_shard(channel).unsubscribe(channel)
        except Exception:
            log.exception("unsubscribing a closed socket's channel failed")


class PubSubChannelLayer(RedisPubSubChannelLayer):
    def _get_layer(self):
        # As the parent's, with the loop layer above.
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = self._layers[loop] = _LoopLayer(*self._args, **self._kwargs, channel_layer=self)
            _wrap_close(self, loop)
        return layer
