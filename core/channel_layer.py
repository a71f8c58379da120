"""The channel layer of production mode: channels-redis' pub/sub layer, with a lean queue per channel that a
socket can read itself, and sockets told when the layer loses Redis.

Every socket's consumer has a channel of its own, and the layer keeps a queue per channel for the socket's life:
an `asyncio.Queue`, ~3.3 KB empty, where `core.aio.Inbox` holds nothing while nothing waits in it. A socket that
takes its channel with `new_inbox` reads that queue itself (core/ws.py), without a task waiting in `receive`. A
channel has one reader at a time (an `Inbox` refuses a second), where channels-redis let several race for it.

Pub/sub is at most once: what is published while the layer's connection is down never arrives, and a socket that
stayed open through the outage would never learn it missed anything (a driver set offline meanwhile would go on
pinging into the void). So when the connection is lost every channel of the layer is told
(`LOST`), the sockets close with 1012 and their apps reconnect and `resume` from the stored stream; and the layer
starts again from no subscription, as the sockets it had are gone (channels-redis would log a traceback a second
while Redis is down and resubscribe the dead channels when it is back).
"""

import asyncio
import contextlib
import logging

from channels_redis.pubsub import (
    RedisPubSubChannelLayer,
    RedisPubSubLoopLayer,
    RedisSingleShardConnection,
    _close_redis,
    _wrap_close,
)
from redis.exceptions import RedisError

from core.aio import Inbox

log = logging.getLogger(__name__)
LOST = {"type": "channel_layer.lost"}  # what every channel of a layer receives when the layer loses Redis
RETRY_S = 1.0  # while Redis is down, the receiving task tries again this often (channels-redis' pace)


def unreachable(exc: Exception) -> bool:
    """The channel layer could not reach Redis (worth a line while Redis is down), rather than a fault of ours
    (worth its traceback)."""
    return isinstance(exc, RedisError | OSError)


class _Shard(RedisSingleShardConnection):
    async def _do_receiving(self):
        # As channels-redis' loop, but a lost connection is one warning and a reset, not a traceback a second.
        while True:
            try:
                if self._pubsub and self._pubsub.subscribed:
                    message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                    self._receive_message(message)
                else:
                    await asyncio.sleep(0.1)
            except (TimeoutError, asyncio.CancelledError, GeneratorExit):
                raise
            except Exception as exc:
                log.warning("channel layer: Redis connection lost (%s); its sockets close to resume", exc)
                await self._reset()
                await asyncio.sleep(RETRY_S)

    async def _reset(self) -> None:
        """Forget every subscription (they died with the connection) and tell every channel of the layer."""
        async with self._lock:
            redis, self._redis, self._pubsub, self._subscribed_to = self._redis, None, None, set()
            for channel in list(self.channel_layer.channels.values()):
                channel.put_nowait(self.channel_layer.channel_layer.serialize(LOST))
            if redis is not None:
                with contextlib.suppress(Exception):  # the connection is gone already
                    await _close_redis(redis)


class _LoopLayer(RedisPubSubLoopLayer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._shards = [_Shard(shard.host, self) for shard in self._shards]

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
        except Exception as exc:
            if not unreachable(exc):
                log.exception("unsubscribing a closed socket's channel failed")
            else:  # Redis is gone, and the subscription with its connection
                log.warning("channel layer: a closed socket's channel not unsubscribed: Redis unavailable (%s)", exc)


class PubSubChannelLayer(RedisPubSubChannelLayer):
    def _get_layer(self):
        # As the parent's, with the loop layer above.
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = self._layers[loop] = _LoopLayer(*self._args, **self._kwargs, channel_layer=self)
            _wrap_close(self, loop)
        return layer
