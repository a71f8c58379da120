"""Tracking fan-out: customers' sockets (`/ws/track/<token>/`) watching deliveries on their way while the
drivers ping at the production rate (one point every 4 s, REST). Push lag is measured from sending a ping to each
socket receiving its `location` (so it includes the ping's own request); every message delivered is counted for
the server's CPU per message. The sockets are opened first, measured as a phase of their own."""

import asyncio
import json
import time
from datetime import UTC, datetime

import websockets

from bench.common import HOST, HttpError, HttpPool, paced, summary_ms

PING_EVERY_S = 4.0  # the drivers' app, SPEC 1


class Watchers:
    """Customers' sockets on the tracked deliveries, open (each has had its initial `status`) and counting what
    arrives; the opening is measured apart from the fan-out (a socket's handshake reads the link and the state)."""

    def __init__(self, tracked: list[dict], sockets_per_delivery: int) -> None:
        self.tracked, self.sockets_per_delivery = tracked, sockets_per_delivery
        self.sent: dict[tuple[int, str], float] = {}  # (delivery, recorded_at) → when the ping left
        self.lags: list[float] = []
        self.counts = {"locations": 0, "unmatched": 0, "other": 0}
        self.sockets: list = []
        self.readers: list[asyncio.Task] = []

    async def open(self, port: int) -> int:
        gate = asyncio.Semaphore(50)

        async def open_one(i: int):
            async with gate:
                url = f"ws://{HOST}:{port}/ws/track/{self.tracked[i]['tracking_token']}/"
                try:
                    return i, await websockets.connect(url, compression=None, ping_interval=None, open_timeout=30)
                except (OSError, TimeoutError, websockets.exceptions.WebSocketException):
                    return i, None

        every = (open_one(i) for i in range(len(self.tracked)) for _ in range(self.sockets_per_delivery))
        self.sockets = [(i, ws) for i, ws in await asyncio.gather(*every) if ws is not None]
        self.readers = [asyncio.create_task(self._watch(i, ws)) for i, ws in self.sockets]
        await asyncio.sleep(2)  # the initial `status` of every socket has arrived
        self.counts["other"] = 0
        return len(self.sockets)

    async def close(self) -> None:
        await asyncio.gather(*(ws.close() for _, ws in self.sockets), return_exceptions=True)
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)

    async def _watch(self, i: int, ws) -> None:
        counts, sent, lags = self.counts, self.sent, self.lags
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


async def fanout(port: int, watchers: Watchers, *, duration: float) -> dict:
    """The drivers of the watched deliveries ping; every `location` each socket receives is timed."""
    tracked, sent, counts = watchers.tracked, watchers.sent, watchers.counts
    pings = {"accepted": 0, "failed": 0}
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
        pings["accepted" if status == 202 else "failed"] += 1

    pacing = await paced(len(tracked) / PING_EVERY_S, duration, ping, max_in_flight=200)
    await asyncio.sleep(2)  # the last pushes land
    pool.close()
    return {
        "deliveries": len(tracked),
        "sockets_requested": len(tracked) * watchers.sockets_per_delivery,
        "sockets_open": len(watchers.sockets),
        "ping_every_s": PING_EVERY_S,
        "pings": pacing | pings,
        "locations_expected": pings["accepted"] * watchers.sockets_per_delivery,
        "locations_received": counts["locations"],
        "locations_unmatched": counts["unmatched"],
        "other_messages": counts["other"],
        "push_lag": summary_ms(watchers.lags),
    }
