"""Many driver websockets (`/ws/driver/?token=`) in one asyncio process: open them, send locations, and route
what the server pushes (offers to a callback, probe answers to the location-latency measurement)."""

import asyncio
import collections
import json
import time
from collections.abc import Callable

import websockets

from bench.common import HOST

# The consumer answers an unknown message type with an error, after handling everything sent before it on the
# same socket (a consumer handles its messages one at a time). A probe sent right after a location therefore
# times that location's processing; there is no other acknowledgement of a websocket location.
PROBE = json.dumps({"type": "bench.probe"})


class DriverSockets:
    def __init__(self, port: int, drivers: list[dict]) -> None:
        self.port = port
        self.drivers = drivers
        self.conns: list = [None] * len(drivers)
        self.readers: list[asyncio.Task] = []
        self.probes: list[collections.deque] = [collections.deque() for _ in drivers]
        self.probe_latencies: list[float] = []
        self.outstanding = 0  # probes sent and not answered yet, all sockets
        self.last_answer = 0.0  # perf_counter of the last probe answer
        self.on_offer: Callable[[int, dict, float], None] | None = None
        self.unexpected: collections.Counter = collections.Counter()
        self.failed_connects = 0
        self.lost_probes = 0
        self.closed_by_server = 0

    async def open(self, concurrency: int = 50, timeout: float = 300.0) -> float:
        """Connect every driver; returns seconds taken. Bounded in time; failures are counted."""
        gate = asyncio.Semaphore(concurrency)

        async def connect(i: int) -> None:
            url = f"ws://{HOST}:{self.port}/ws/driver/?token={self.drivers[i]['token']}"
            async with gate:
                try:
                    ws = await websockets.connect(url, compression=None, ping_interval=None, open_timeout=30)
                except (OSError, TimeoutError, websockets.exceptions.WebSocketException):
                    self.failed_connects += 1
                    return
            self.conns[i] = ws
            self.readers.append(asyncio.create_task(self._read(i, ws)))

        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(connect(i) for i in range(len(self.drivers)))), timeout)
        return time.perf_counter() - start

    @property
    def open_count(self) -> int:
        return sum(1 for ws in self.conns if ws is not None)

    async def _read(self, i: int, ws) -> None:
        try:
            async for raw in ws:
                now = time.perf_counter()
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "error" and message["data"].get("code") == "unknown_type" and self.probes[i]:
                    self.probe_latencies.append(now - self.probes[i].popleft())
                    self.outstanding -= 1
                    self.last_answer = now
                elif kind == "offer.created" and self.on_offer is not None:
                    self.on_offer(i, message, now)
                else:
                    self.unexpected[kind if kind != "error" else f"error:{message['data'].get('code')}"] += 1
        except websockets.exceptions.ConnectionClosed:
            pass
        # Closed by the server, cleanly or not: what was awaiting an answer never will be.
        self.conns[i] = None
        self.closed_by_server += 1
        self.outstanding -= len(self.probes[i])
        self.lost_probes += len(self.probes[i])
        self.probes[i].clear()

    async def send_location(self, i: int, lat: float, lng: float, recorded_at: str, *, probe: bool) -> bool:
        ws = self.conns[i]
        if ws is None:
            return False
        point = {"type": "location", "data": {"lat": lat, "lng": lng, "recorded_at": recorded_at, "accuracy": 5}}
        try:
            if probe:
                self.probes[i].append(time.perf_counter())
                self.outstanding += 1
                await ws.send(json.dumps(point))
                await ws.send(PROBE)
            else:
                await ws.send(json.dumps(point))
        except websockets.exceptions.ConnectionClosed:
            self.conns[i] = None
            return False
        return True

    async def close(self) -> None:
        await asyncio.gather(*(ws.close() for ws in self.conns if ws is not None), return_exceptions=True)
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
