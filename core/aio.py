"""asyncio's queue and event, for what each of a server's thousands of sockets holds while it waits.

CPython 3.11's `asyncio.Queue` keeps four deques and an `Event` (~3.3 KB empty) and an `asyncio.Event` a deque of
waiters (~0.7 KB). A driver socket held two such queues (uvicorn's receive queue and the channel layer's) and an
event, from its opening to its close, mostly empty (BENCHMARKS.md, issue 12 round 9). These keep their items and
waiters only while there are some.
"""

import asyncio
from collections import deque


class Inbox:
    """An unbounded first-in first-out queue for one reader, with the part of `asyncio.Queue`'s interface the
    socket code uses (uvicorn's receive queue, channels-redis' channel queues): `put_nowait`, `get`, `get_nowait`,
    `empty`."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque | None = None  # only while it holds something
        self._waiter: asyncio.Future | None = None  # only while its reader waits

    def put_nowait(self, item) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self):
        while not self._items:
            if self._waiter is not None:
                raise RuntimeError("an Inbox has one reader at a time")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.get_nowait()

    def get_nowait(self):
        if not self._items:
            raise asyncio.QueueEmpty
        item = self._items.popleft()
        if not self._items:
            self._items = None
        return item

    def empty(self) -> bool:
        return not self._items


class Gate:
    """`asyncio.Event`'s `set`, `clear` and `wait` (what uvicorn uses of its write event), keeping a list of
    waiters only while some wait."""

    __slots__ = ("_open", "_waiters")

    def __init__(self) -> None:
        self._open = False
        self._waiters: list[asyncio.Future] | None = None

    def set(self) -> None:
        self._open = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(True)

    def clear(self) -> None:
        self._open = False

    async def wait(self) -> bool:
        if self._open:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            return await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
                if not self._waiters:
                    self._waiters = None
