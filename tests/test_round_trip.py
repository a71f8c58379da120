"""The shared Redis round trip (core/round_trip.py) sends a pipeline's commands on a connection of its own and
reads the replies itself: what its callers get must be what redis-py's pipeline gives, and a connection that
breaks mid-way must never hand one round trip's replies to the next."""

import asyncio

import pytest
import redis
import redis.asyncio as aioredis
from django.conf import settings

from core.round_trip import RoundTrip

pytestmark = pytest.mark.redis
KEY = "relay-test:round-trip"


def _queue(pipe) -> None:
    pipe.set(KEY, "x").get(KEY).exists(KEY).ping()
    pipe.hset(f"{KEY}:hash", mapping={"a": "1"}).hgetall(f"{KEY}:hash")
    pipe.zadd(f"{KEY}:zset", {"m": 2.5}).zrange(f"{KEY}:zset", 0, -1, withscores=True)
    pipe.eval("return {KEYS[1], ARGV[1]}", 1, KEY, 7).incr(KEY)  # the last one fails: "x" is no integer


@pytest.fixture
async def redis_client():
    client = aioredis.Redis.from_url(settings.RELAY_LOCATION_REDIS_URL, socket_timeout=0.5)
    yield client
    await client.delete(KEY, f"{KEY}:hash", f"{KEY}:zset")
    await client.aclose()


@pytest.fixture
async def shared(redis_client):
    shared = RoundTrip(redis_client)
    yield shared
    await shared.aclose()


async def test_callers_get_what_a_redis_py_pipeline_gives(redis_client, shared):
    await redis_client.delete(KEY, f"{KEY}:hash", f"{KEY}:zset")
    async with redis_client.pipeline(transaction=False) as pipe:
        _queue(pipe)
        expected = await pipe.execute(raise_on_error=False)
    await redis_client.delete(KEY, f"{KEY}:hash", f"{KEY}:zset")
    pipe = redis_client.pipeline(transaction=False)
    _queue(pipe)
    got = await shared.exchange(pipe.command_stack)
    assert got[:-1] == expected[:-1] == [True, b"x", 1, True, 1, {b"a": b"1"}, 1, [(b"m", 2.5)], [KEY.encode(), b"7"]]
    assert type(got[-1]) is type(expected[-1]) is redis.exceptions.ResponseError


async def test_a_kept_connection_that_redis_closed_meanwhile_is_opened_again_for_the_round_trip(redis_client, shared):
    """Redis restarted, or an idle timeout on the way, closed the connection the round trips keep: the next round
    trip still gets its answers (on a new connection), as a pool's connection checked on checkout would."""
    [first] = await shared.execute(lambda pipe: pipe.client_id())
    await redis_client.client_kill_filter(_id=first)
    [second] = await shared.execute(lambda pipe: pipe.client_id())
    assert second != first
    assert await shared.execute(lambda pipe: pipe.set(KEY, "y").get(KEY)) == [True, b"y"]


async def test_with_redis_unreachable_a_round_trip_fails_with_a_connection_error():
    """What the callers' fallbacks catch (the pings then go to the database): no retry that hides it."""
    client = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_timeout=0.5, socket_connect_timeout=0.5)
    unreachable = RoundTrip(client)
    try:
        with pytest.raises(redis.exceptions.ConnectionError):
            await unreachable.execute(lambda pipe: pipe.ping())
    finally:
        await unreachable.aclose()
        await client.aclose()


async def test_a_reply_that_comes_too_late_is_never_read_as_the_next_round_trips(redis_client, shared):
    """The client's socket timeout (0.5 s here) ends a round trip whose reply is late (a BLPOP that waits 1 s):
    its callers get the timeout, and the reply that Redis still sends is not taken for the next round trip's."""
    with pytest.raises(redis.exceptions.TimeoutError):
        await shared.execute(lambda pipe: pipe.blpop(f"{KEY}:empty", timeout=1))
    assert await shared.execute(lambda pipe: pipe.ping().set(KEY, "z").get(KEY)) == [True, True, b"z"]


async def test_a_round_trip_cancelled_before_it_began_cancels_its_callers(shared):
    """The loop closing cancels the round trip's task, perhaps before its first step: its callers are cancelled
    with it, not left waiting for ever, and the next round trip goes out as usual."""
    waiting = asyncio.ensure_future(shared.execute(lambda pipe: pipe.ping()))
    while shared.in_flight is None:
        await asyncio.sleep(0)
    shared.in_flight.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await shared.execute(lambda pipe: pipe.ping()) == [True]


async def test_a_round_trip_cancelled_while_out_leaves_the_next_its_own_replies(redis_client):
    """Cancelled with its replies still unread (a BLPOP that Redis holds for 5 s): its callers are cancelled,
    and the next round trip reads its own replies, not the abandoned one (which would come as the SET's)."""
    # Held for longer than a loaded machine takes to see it held: a BLPOP of 0.3 s was answered before the test's
    # look at CLIENT LIST once that came 0.4 s late, and there was no round trip left to cancel.
    patient = aioredis.Redis.from_url(settings.RELAY_LOCATION_REDIS_URL, socket_timeout=10)
    shared = RoundTrip(patient)
    try:
        waiting = asyncio.ensure_future(shared.execute(lambda pipe: pipe.blpop(f"{KEY}:empty", timeout=5)))
        while not any(client["cmd"] == "blpop" for client in await redis_client.client_list()):
            await asyncio.sleep(0.01)  # until Redis holds it
        shared.in_flight.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert await shared.execute(lambda pipe: pipe.set(KEY, "w").get(KEY)) == [True, b"w"]
    finally:
        await shared.aclose()
        await patient.aclose()
