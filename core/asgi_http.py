"""Django's ASGI handler with each request's sync work done in one thread hop.

Django's own handler (django.core.handlers.asgi.ASGIHandler) builds its middleware chain for async mode. With
Relay's middleware (sync, as most of Django's own) and sync views, one request then crosses between the event
loop and a thread five times: the request_started signal, the chain, the chain's call back into the loop for
the view, the view, and the response's close (request_finished). Each request also gets a new thread of its own
(asgiref's ThreadSensitiveContext), and with it new per-thread state: Django's database wrapper, the cache
client, Celery's per-thread app state.

This handler builds the chain in sync mode and runs request_started, the chain and the view, and the close of a
finished (non-streaming) response in one call, on a small pool of long-lived threads: one thread still does all
of one request's sync work, as Django requires, and what a thread builds is kept for its next request. The
body is read and the answer sent on the event loop as before. Streaming answers (static files) are sent by
Django's own code and closed after, as Django does.

Measured (bench/dispatch_cpu.py): see BENCHMARKS.md, "Issue 12, round 4".
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers import asgi, base
from django.urls import set_script_prefix

from core import loop_sends


class ASGIHandler(asgi.ASGIHandler):
    def __init__(self):
        base.BaseHandler.__init__(self)
        self.load_middleware(is_async=False)
        # As many as the process's database connections: more could only wait for one.
        self._threads = ThreadPoolExecutor(max_workers=settings.RELAY_REQUEST_THREADS, thread_name_prefix="request")
        self._respond = sync_to_async(self._respond_sync, thread_sensitive=False, executor=self._threads)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(asgi.get_script_prefix(scope))
        response = await self._respond(scope, body_file, asyncio.get_running_loop())
        await self.send_response(response, send)
        if response.streaming:
            await sync_to_async(response.close, thread_sensitive=False, executor=self._threads)()
        body_file.close()

    def _respond_sync(self, scope, body_file, loop):
        # The script prefix set above is seen here: sync_to_async runs this in a copy of the caller's context.
        # The request's pushes after commit are handed to the loop, not waited for (core/loop_sends.py).
        with loop_sends.serving(loop):
            signals.request_started.send(sender=self.__class__, scope=scope)
            request, response = self.create_request(scope, body_file)
            if request is not None:
                response = self.get_response(request)
                response._handler_class = self.__class__
            if not response.streaming:
                response.close()  # request_finished: the database connection goes back to the pool before the send
            return response
