"""Dispatch: POST /api/v1/deliveries → `offer.created` on the chosen driver's websocket, with every seeded
driver in the location index. Each pickup is put on one of the listened grid drivers (see bench/seed.py), and
each offer is accepted by its driver as soon as it arrives (timed: the accept benchmark).

Lower bound: what dispatch cannot do without, with nothing around it: one GEOSEARCH of the zone (same radius
and COUNT as the app), one INSERT, and one channel-layer group_send received on a listening channel."""

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime

import psycopg
import redis.asyncio as aioredis
from channels_redis.pubsub import RedisPubSubChannelLayer

from bench import accept as accept_bench
from bench.common import DB_URL, KEY_PREFIX, REDIS_URL, HttpError, HttpPool, paced, summary_ms

PICKUP_OFFSET_DEG = 0.00002  # ~2 m from the listened driver
SEARCH_RADIUS_KM = 5.0
CANDIDATE_POOL = 50
OFFER_WAIT_S = 10.0


async def app(sockets, port: int, merchant_token: str, *, listened: int, rate: float, duration: float) -> dict:
    targets = list(range(listened))
    sent_at: dict[str, float] = {}  # delivery id → when its POST was sent
    create_latencies: list[float] = []
    create_status: dict[str, int] = {}
    statuses_after_create: dict[str, int] = {}
    offers: dict[str, tuple[float, str]] = {}  # delivery id → (when offer.created arrived, offer id)
    accept_latencies: list[float] = []
    accept_statuses: dict[str, int] = {}
    merchant = HttpPool(port, 32)
    drivers = HttpPool(port, 32)
    accepts: set[asyncio.Task] = set()

    async def do_accept(i: int, offer_id: str) -> None:
        status, elapsed = await accept_bench.accept(drivers, offer_id, sockets.drivers[i]["token"])
        accept_statuses[str(status)] = accept_statuses.get(str(status), 0) + 1
        if status == 200:
            accept_latencies.append(elapsed)

    def on_offer(i: int, message: dict, now: float) -> None:
        offers[message["data"]["delivery"]["id"]] = (now, message["data"]["id"])
        task = asyncio.create_task(do_accept(i, message["data"]["id"]))
        accepts.add(task)
        task.add_done_callback(accepts.discard)

    sockets.on_offer = on_offer
    run = uuid.uuid4().hex[:8]

    async def launch(i: int) -> None:
        driver = sockets.drivers[targets[i % len(targets)]]
        lat, lng = driver["lat"] + PICKUP_OFFSET_DEG, driver["lng"] + PICKUP_OFFSET_DEG
        body = {
            "external_id": f"bench-{run}-{i}",
            "pickup": {"name": "Bench pickup", "address": "Rua A 1", "lat": lat, "lng": lng},
            "dropoff": {"name": "Bench dropoff", "address": "Rua B 2", "lat": lat + 0.01, "lng": lng + 0.01},
            "value": "20.00",
        }
        start = time.perf_counter()
        try:
            status, data = await merchant.request("POST", "/api/v1/deliveries", body, merchant_token)
        except HttpError:
            status, data = 0, b""
        create_status[str(status)] = create_status.get(str(status), 0) + 1
        if status == 201:
            created = json.loads(data)
            sent_at[created["id"]] = start
            create_latencies.append(time.perf_counter() - start)
            statuses_after_create[created["status"]] = statuses_after_create.get(created["status"], 0) + 1

    window = await paced(rate, duration, launch, max_in_flight=32)
    deadline = time.perf_counter() + OFFER_WAIT_S
    while time.perf_counter() < deadline and (len(set(sent_at) - set(offers)) > 0 or accepts):
        await asyncio.sleep(0.05)
    sockets.on_offer = None
    for task in accepts:
        task.cancel()
    await asyncio.gather(*accepts, return_exceptions=True)
    merchant.close()
    drivers.close()

    # Each heard offer's latency and when it was sent (seconds into the phase). The slowest spread evenly queued
    # behind load; bunched, something paused the server (a garbage collection, a periodic task).
    first = min(sent_at.values(), default=0.0)
    heard = sorted(((offers[d][0] - t, t - first) for d, t in sent_at.items() if d in offers), reverse=True)
    latencies = [latency for latency, _ in heard]
    slowest = [[round(at, 2), round(latency * 1000, 1)] for latency, at in heard[: max(1, len(heard) // 100)]]
    return {
        "rate_per_s": rate,
        **window,
        "created": len(sent_at),
        "create_statuses": create_status,
        "status_in_create_response": statuses_after_create,
        "offers_heard": len(latencies),
        "offers_not_heard": len(sent_at) - len(latencies),
        "latency": summary_ms(latencies),
        "slowest_1pct_sent_at_s_and_ms": sorted(slowest),
        "create_response_latency": summary_ms(create_latencies),
        "accept": {"statuses": accept_statuses, "latency": summary_ms(accept_latencies)},
    }


async def lower_bound(drivers: list[dict], *, listened: int, rate: float, duration: float) -> dict:
    redis_client = aioredis.Redis.from_url(REDIS_URL)
    # As config/settings.py configures it (the pub/sub layer), on a prefix of its own.
    layer = RedisPubSubChannelLayer(hosts=[{"address": REDIS_URL, "socket_timeout": 30}], prefix="bench-lb")
    channel = await layer.new_channel()
    group = f"bench.lb.{uuid.uuid4().hex[:8]}"
    await layer.group_add(group, channel)
    waiting: dict[str, asyncio.Future] = {}

    async def receive() -> None:
        while True:
            message = await layer.receive(channel)
            future = waiting.pop(message["id"], None)
            if future is not None and not future.done():
                future.set_result(time.perf_counter())

    receiver = asyncio.create_task(receive())
    latencies: list[float] = []
    conn = await psycopg.AsyncConnection.connect(DB_URL.replace("postgres://", "postgresql://"), autocommit=True)
    lock = asyncio.Lock()  # one statement at a time on the connection

    async def launch(i: int) -> None:
        driver = drivers[i % listened]
        key = uuid.uuid4().hex
        future = asyncio.get_running_loop().create_future()
        waiting[key] = future
        start = time.perf_counter()
        await redis_client.geosearch(
            f"{KEY_PREFIX}geo:{driver['zone']}",
            longitude=driver["lng"] + PICKUP_OFFSET_DEG,
            latitude=driver["lat"] + PICKUP_OFFSET_DEG,
            radius=SEARCH_RADIUS_KM,
            unit="km",
            sort="ASC",
            count=CANDIDATE_POOL,
            withdist=True,
            withcoord=True,
        )
        async with lock:
            await conn.execute(
                "INSERT INTO bench_lb_offer (id, driver_id, status, sent_at, payload) VALUES (%s, %s, 'pending', %s, "
                "%s)",
                (uuid.uuid4(), driver["id"], datetime.now(UTC), json.dumps({"delivery": key})),
            )
        await layer.group_send(group, {"type": "stream.message", "id": key})
        latencies.append(await asyncio.wait_for(future, 5) - start)

    window = await paced(rate, duration, launch, max_in_flight=32)
    receiver.cancel()
    await asyncio.gather(receiver, return_exceptions=True)
    await layer.group_discard(group, channel)
    await conn.close()
    await redis_client.aclose()
    return {"rate_per_s": rate, **window, "latency": summary_ms(latencies)}
