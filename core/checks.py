"""System checks for pairings of libraries that break Relay at run time without an error at startup."""

from django.core.checks import Error, register


@register()
def channel_layer_outlasts_its_blocking_reads(app_configs, **kwargs) -> list[Error]:
    """channels-redis waits for messages with a blocking pop of `brpop_timeout` seconds. A Redis client whose
    read timeout is not longer than that (redis-py 8 defaults every client to 5 s) times out while waiting, and
    every quiet websocket dies with it."""
    from channels.layers import get_channel_layer
    from channels_redis.core import RedisChannelLayer

    layer = get_channel_layer()
    if not isinstance(layer, RedisChannelLayer):
        return []
    errors = []
    for index in range(layer.ring_size):
        pool = layer.create_pool(index)
        # A client as the layer would make it (not connected): its read timeout, the library's default included.
        read_timeout = pool.connection_class(**pool.connection_kwargs).socket_timeout
        if read_timeout is not None and read_timeout <= layer.brpop_timeout:
            errors.append(
                Error(
                    f"The channel layer's Redis clients time out reads after {read_timeout} s, but channels-redis "
                    f"blocks {layer.brpop_timeout} s waiting for messages: every idle websocket would be closed.",
                    hint="Give the CHANNEL_LAYERS host a socket_timeout longer than the blocking pop (or None).",
                    id="relay.E001",
                )
            )
    return errors
