"""Tracking fan-out: customers' sockets (`/ws/track/<token>/`) watching deliveries on their way while the
drivers ping at the production rate (one point every 4 s, REST). Push lag is measured from sending a ping to each
socket receiving its `location` (so it includes the ping's own request); every message delivered is counted for
the server's CPU per message."""

import asyncio
import json
import time
from datetime import UTC, datetime

import websockets

from bench.common import HOST, HttpError, HttpPool, paced, summary_ms

PING_EVERY_S = 4.0  # the drivers' app, SPEC 1


async def fanout(port: int, tracked: list[dict], *, sockets_per_delivery: int, duration: float) -> dict:
    sent: dict[tuple[int, str], float] = {}  # (delivery, recorded_at) → when the ping left
    lags: list[float] = []
    counts = {"locations": 0, "unmatched": 0, "other": 0, "pings_accepted": 0, "pings_failed": 0}

    async def watch(i: int, ws) -> None:
        try:
            async for raw in ws:
                now = time.perf_counter()
                message = json.loads(raw)
                if message["type"] != "location":
                    counts["other"] += 1
                    continue
                counts["locations"] += 1
                started = sent.get((i, message["data"]["recorded_at"]))
                if started is None:
                    counts["unmatched"] += 1
                else:
                    lags.append(now - started)
        except websockets.exceptions.ConnectionClosed:
            pass

    gate = asyncio.Semaphore(50)

    async def open_one(i: int):
        async with gate:
            url = f"ws://{HOST}:{port}/ws/track/{tracked[i]['tracking_token']}/"
            try:
                return i, await websockets.connect(url, compression=None, ping_interval=None, open_timeout=30)
            except (OSError, TimeoutError, websockets.exceptions.WebSocketException):
                return i, None

    opened = await asyncio.gather(*(open_one(i) for i in range(len(tracked)) for _ in range(sockets_per_delivery)))
    sockets = [(i, ws) for i, ws in opened if ws is not None]
    readers = [asyncio.create_task(watch(i, ws)) for i, ws in sockets]
    await asyncio.sleep(2)  # the initial `status` of every socket has arrived
    counts["other"] = 0

    pool = HttpPool(port, size=min(32, len(tracked)))
    step = {"n": 0}

    async def ping(k: int) -> None:
        i = k % len(tracked)
        rider = tracked[i]
        step["n"] += 1
        recorded_at = datetime.now(UTC).isoformat().replace("+00:00", "Z")  # as the server writes it back
        point = {"lat": rider["lat"] + (step["n"] % 500) * 1e-5, "lng": rider["lng"], "recorded_at": recorded_at}
        sent[(i, recorded_at)] = time.perf_counter()
        try:
            status, _ = await pool.request("POST", "/api/v1/driver/locations", {"points": [point]}, rider["token"])
        except HttpError:
            status = 0
        counts["pings_accepted" if status == 202 else "pings_failed"] += 1

    pacing = await paced(len(tracked) / PING_EVERY_S, duration, ping, max_in_flight=200)
    await asyncio.sleep(2)  # the last pushes land
    pool.close()
    await asyncio.gather(*(ws.close() for _, ws in sockets), return_exceptions=True)
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    return {
        "deliveries": len(tracked),
        "sockets_requested": len(tracked) * sockets_per_delivery,
        "sockets_open": len(sockets),
        "ping_every_s": PING_EVERY_S,
        "pings": pacing | {"accepted": counts["pings_accepted"], "failed": counts["pings_failed"]},
        "locations_expected": counts["pings_accepted"] * sockets_per_delivery,
        "locations_received": counts["locations"],
        "locations_unmatched": counts["unmatched"],
        "other_messages": counts["other"],
        "push_lag": summary_ms(lags),
    }
