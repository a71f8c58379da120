"""Redis commands of an event loop's many callers in shared round trips, one in flight at a time (group commit).

Used by the location pings (drivers/locations.py, the driver sockets; drivers/ingest.py, the REST route): the
hottest Redis traffic, a few small commands from each of many tasks of one loop.

A round trip goes out on a connection of its own (only one is ever out), packed in C (hiredis, as redis-py's
synchronous client packs) in one write, and each reply is read and parsed by the client's own `parse_response`,
so callers get exactly what a redis-py pipeline's `execute(raise_on_error=False)` gives. That skips the
pipeline's execution machinery (a pool checkout and release, the pure-Python packer, retry and observability
wrappers, a timeout per read and a task per write): ~160 µs of CPU per round trip became ~60 µs
(BENCHMARKS.md, "Issue 12, round 10").
"""

import asyncio
from collections.abc import Callable

import redis
import redis.asyncio as aioredis
from redis.connection import HiredisRespSerializer
from redis.exceptions import ResponseError

_pack = HiredisRespSerializer().pack


class RoundTrip:
    """The commands an event loop's callers queue go to Redis in shared pipelines, one in flight at a time: the
    callers of one turn of the loop share one, and those that come while it is out share the next, sent as soon
    as it is back. Under load the batches grow by themselves and a command costs less, while an idle process
    sends each at once. Each caller awaits its own results, so a socket's messages keep their order."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        pool = client.connection_pool
        # Its own connection, outside the pool: one round trip is out at a time, so it never waits for one. The
        # client's socket timeout bounds each whole round trip (`exchange`), not each read and write of it.
        kwargs = dict(pool.connection_kwargs)
        self.timeout_s = kwargs.get("socket_timeout")
        self.connection = pool.connection_class(**{**kwargs, "socket_timeout": None})
        self.waiting: list[tuple[Callable, asyncio.Future]] = []
        self.in_flight: asyncio.Task | None = None

    async def execute(self, queue: Callable) -> list:
        """`queue(pipe)` queues the caller's commands on the shared pipeline; returns their results, in order. An
        error of the caller's `queue` or of one of its commands is raised to that caller only; a connection's, to
        every caller of the round trip."""
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        self.waiting.append((queue, answer))
        if len(self.waiting) == 1 and self.in_flight is None:
            loop.call_soon(self._flush)  # after the other callers of this turn have queued theirs
        results = await answer
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results

    async def aclose(self) -> None:
        await self.connection.disconnect()

    def _flush(self) -> None:
        batch, self.waiting = self.waiting, []
        self.in_flight = asyncio.ensure_future(self._send(batch))
        self.in_flight.add_done_callback(lambda sent: self._back(sent, batch))

    def _back(self, sent: asyncio.Task, batch: list) -> None:
        self.in_flight = None
        if sent.cancelled():  # the loop is closing (even before the round trip began): so are its callers
            for _, answer in batch + self.waiting:
                answer.cancel()
            self.waiting = []
        elif self.waiting:
            self._flush()  # those that came while it was out

    async def _send(self, batch: list) -> None:
        pipe = self.client.pipeline(transaction=False)  # only queues: `exchange` sends what it holds
        spans = []
        for queue, answer in batch:
            start = len(pipe)
            try:
                queue(pipe)
            except Exception as exc:  # the caller's own code failed: its error alone, its commands out
                del pipe.command_stack[start:]
                if not answer.done():  # a caller cancelled meanwhile has nobody to tell
                    answer.set_exception(exc)
            spans.append((start, len(pipe)))
        try:
            results = await self.exchange(pipe.command_stack) if pipe.command_stack else []
        except Exception as exc:  # every caller decides (Redis errors: the database fallback)
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(exc)
            return
        for (_, answer), (start, end) in zip(batch, spans, strict=True):
            if not answer.done():
                answer.set_result(results[start:end])

    async def exchange(self, commands: list) -> list:
        """A pipeline's queued commands (`command_stack`) sent in one write and their replies read in order: a
        command's error in its place, as `execute(raise_on_error=False)`. A connection error, or no answer within the
        client's socket timeout, is raised as redis-py raises it, and the connection is closed: the next round
        trip opens it again.

        A connection that sat open may have been closed meanwhile (Redis restarted, an idle timeout on the way):
        redis-py's pool checks a connection for that as it hands it out; here a round trip that finds its kept
        connection closed goes out once more on a new one, as the pool would have given it."""
        packed = b"".join([_pack(*args)[0] for args, _ in commands])
        kept = self.connection.is_connected
        try:
            return await self._exchange(packed, commands)
        except redis.exceptions.ConnectionError:
            if not kept:
                raise
            return await self._exchange(packed, commands)

    async def _exchange(self, packed: bytes, commands: list) -> list:
        connection = self.connection
        results = []
        try:
            async with asyncio.timeout(self.timeout_s):
                await connection.send_packed_command(packed, check_health=False)
                for args, options in commands:
                    try:
                        results.append(await self.client.parse_response(connection, args[0], **options))
                    except ResponseError as exc:
                        results.append(exc)
        except TimeoutError:
            await connection.disconnect(nowait=True)  # its replies, if they come, are for nobody
            raise redis.exceptions.TimeoutError(f"No answer from Redis within {self.timeout_s} s") from None
        except BaseException:  # replies left unread would answer the next round trip: start it afresh
            await connection.disconnect(nowait=True)
            raise
        return results
