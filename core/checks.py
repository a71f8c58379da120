"""System checks for what breaks Relay at run time without an error at startup: pairings of libraries, and (with
`check --deploy`) settings a deployment must not keep at their defaults."""

from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Warning, register

# channels-redis' pub/sub layer reads its subscriptions in polls of this many seconds (pubsub.py, fixed).
PUBSUB_POLL_S = 0.1


@register()
def channel_layer_outlasts_its_blocking_reads(app_configs, **kwargs) -> list[Error]:
    """A channel layer waits for messages with a blocking read: the list layer (RedisChannelLayer) a blocking pop of
    `brpop_timeout` seconds, the pub/sub layer a poll of 0.1 s. A Redis client whose read timeout is not longer
    than that (redis-py 8 defaults every client to 5 s) times out while waiting, and every quiet websocket dies
    with it."""
    from channels.layers import get_channel_layer
    from channels_redis.core import RedisChannelLayer
    from channels_redis.pubsub import RedisPubSubChannelLayer
    from channels_redis.utils import create_pool, decode_hosts

    layer = get_channel_layer()
    if isinstance(layer, RedisChannelLayer):
        blocks_s, pools = layer.brpop_timeout, [layer.create_pool(index) for index in range(layer.ring_size)]
    elif isinstance(layer, RedisPubSubChannelLayer):
        blocks_s, pools = PUBSUB_POLL_S, [create_pool(host) for host in decode_hosts(layer._kwargs.get("hosts"))]
    else:
        return []
    errors = []
    for pool in pools:
        # A client as the layer would make it (not connected): its read timeout, the library's default included.
        read_timeout = pool.connection_class(**pool.connection_kwargs).socket_timeout
        if read_timeout is not None and read_timeout <= blocks_s:
            errors.append(
                Error(
                    f"The channel layer's Redis clients time out reads after {read_timeout} s, but channels-redis "
                    f"blocks {blocks_s} s waiting for messages: every idle websocket would be closed.",
                    hint="Give the CHANNEL_LAYERS host a socket_timeout longer than the blocking read (or None).",
                    id="relay.E001",
                )
            )
    return errors


@register(deploy=True)
def tracking_links_reach_customers(app_configs, **kwargs) -> list[Warning]:
    """Every delivery's `tracking_url`, which merchants hand to their customers, starts with RELAY_PUBLIC_URL. Left
    at its default (this machine, for `make run`), every link a deployment gave out would lead nowhere."""
    host = urlsplit(settings.RELAY_PUBLIC_URL).hostname or ""
    if host in {"127.0.0.1", "localhost", "::1", "0.0.0.0", ""}:
        return [
            Warning(
                f"RELAY_PUBLIC_URL is {settings.RELAY_PUBLIC_URL}: every tracking link merchants give their customers "
                "would point at the customer's own machine.",
                hint="Set RELAY_PUBLIC_URL to the address customers reach this deployment at (https://...).",
                id="relay.W001",
            )
        ]
    return []
