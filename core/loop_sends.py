"""Group sends handed from a request's thread to its server's event loop: in order, and without waiting.

A request's sync work runs in a thread (core/asgi_http.py), and its pushes go out after commit. Sent from that
thread (`async_to_sync(group_send)`), each push hops to the event loop and blocks the thread until the loop has
sent it: the hop's machinery costs more CPU than the send, and the answer to the request waits behind every
push it makes, longest while the loop is busy with other sockets. Handed off, the thread goes on at once, and
one task per loop sends what it was handed, one message after the other in the order handed. Order matters: a
driver's socket delivers its stream by `seq` and drops a message older than the last it delivered.

A thread that serves no request of a running server (Celery's workers, management commands, the tests' sync
client) hands nothing off: its caller sends in place, as before. The channel layer is at most once either way
(a driver's stream is stored and `resume` replays it); a send that fails is logged, its `unsent` hook runs (in a
thread: it may write to the database), and the next ones go on. When the server stops (`drain`, from the ASGI
lifespan's shutdown, after its last request and socket), the sends already handed off still go out, for up to
`STOP_GRACE_S`; the hooks of those that did not run, as for a failed send (an offer the driver's app never heard
is not counted as their miss), as do those of the sends left when the loop cancels the task as it closes."""

import asyncio
import contextlib
import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable

from channels.db import database_sync_to_async

from core.channel_layer import unreachable

log = logging.getLogger(__name__)
_thread = threading.local()
STOP_GRACE_S = 2.0  # how long a stopping server goes on sending what its requests handed off


@contextlib.contextmanager
def serving(loop: asyncio.AbstractEventLoop):
    """Within it, the calling thread does a request's work for the server running on `loop`."""
    _thread.loop = loop
    try:
        yield
    finally:
        _thread.loop = None


def hand_off(layer, group: str, message: dict, *, unsent: Callable[[], None] | None = None) -> bool:
    """Queue the group send on the event loop this thread's request came from. False, and nothing queued, in a
    thread that serves no request: the caller sends it itself."""
    loop = getattr(_thread, "loop", None)
    if loop is None:
        return False
    try:
        loop.call_soon_threadsafe(_Sender.of(loop).add, layer, group, message, unsent)
    except RuntimeError:  # the loop has closed: the server stopped while this request finished
        log.warning("push to %s not sent: the server is stopping; the client will resume", group)
        if unsent is not None:
            run_unsent(unsent)
    return True


async def drain() -> None:
    """Send what this loop's requests handed off, before the server exits: uvicorn kills its process as soon as
    it has served its last request, with no time for a task still sending. The sends go on as they were for up to
    `STOP_GRACE_S`, none cut short: one cut while the layer answers may have gone, and is not sent again."""
    sender = _Sender._by_loop.get(asyncio.get_running_loop())
    task = sender.task if sender is not None else None
    if task is None:
        return
    _, sending = await asyncio.wait({task}, timeout=STOP_GRACE_S)
    if sending:  # the layer hangs: what is left is not sent
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class _Sender:
    """One loop's queue of handed-off sends, and the task that sends them while there are any."""

    _by_loop: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    _lock = threading.Lock()

    @classmethod
    def of(cls, loop) -> "_Sender":
        with cls._lock:  # request threads of one loop ask at once
            sender = cls._by_loop.get(loop)
            if sender is None:
                sender = cls._by_loop[loop] = cls()
            return sender

    def __init__(self) -> None:
        self.queue: deque = deque()
        self.task: asyncio.Task | None = None  # held here: the loop keeps only a weak reference to its tasks

    def add(self, layer, group: str, message: dict, unsent: Callable[[], None] | None) -> None:  # on the loop
        self.queue.append((layer, group, message, unsent))
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._send_all())

    async def _send_all(self) -> None:
        try:
            while self.queue:
                await self._send_first()
        except asyncio.CancelledError:  # the server is stopping: what is left is not sent, the clients resume
            await self._unsent_all()
            raise
        finally:
            self.task = None

    async def _send_first(self) -> None:
        layer, group, message, unsent = self.queue[0]
        try:
            await layer.group_send(group, message)
        except Exception as exc:  # a down channel layer must not stop the sends behind it
            log.warning("push to %s failed (%s); the client will resume", group, exc, exc_info=not unreachable(exc))
        else:
            unsent = None
        self.queue.popleft()  # before its hook runs: a stop cutting the hook short does not run it again
        if unsent is not None:
            await database_sync_to_async(run_unsent)(unsent)

    async def _unsent_all(self) -> None:
        """The hooks of the sends left (the one cut short included: it may not have gone)."""
        if self.queue:
            log.warning("%d pushes not sent: the server is stopping; the clients will resume", len(self.queue))
        left, self.queue = list(self.queue), deque()
        for *_, unsent in left:
            if unsent is not None:
                await database_sync_to_async(run_unsent)(unsent)


def run_unsent(unsent: Callable[[], None]) -> None:
    """Run the hook of a push the channel layer could not take. Its own failure is logged, not raised: the
    sends behind it, and the change that made the push, go on."""
    try:
        unsent()
    except Exception:
        log.exception("the hook of a push that could not be sent failed")
