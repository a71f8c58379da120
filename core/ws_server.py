"""The websocket protocol `manage.py serve` gives uvicorn: its own (websockets-sansio, what `--ws auto` picks),
holding less for each open socket. Imports no Django: the `serve --workers` supervisor names it to uvicorn."""

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from core.aio import Gate, Inbox


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's protocol with a lean receive queue and write gate (core.aio), which forgets the opening
    handshake's request and response once the socket is accepted: their headers (~3 KB) only serve to answer it."""

    # What uvicorn's protocol keeps, as slots rather than in an instance dict: it has more attributes than
    # CPython shares a dict's keys for, so each socket paid for a dict of its own (~1.6 KB). An attribute a later
    # uvicorn adds lands in the instance's dict, as before.
    __slots__ = (
        *("app", "app_state", "asgi_version", "client", "close_sent", "close_timeout", "close_timer", "config"),
        *("conn", "connections", "curr_msg_data_type", "default_headers", "disconnected", "frames"),
        *("handshake_complete", "handshake_initiated", "initial_response", "last_ping_rtt", "logger", "loop"),
        *("pending_ping_payload", "ping_interval", "ping_sent_at", "ping_timeout", "ping_timer", "pong_timer"),
        *("queue", "read_paused", "request", "response", "root_path", "scheme", "scope", "server", "tasks"),
        *("transport", "writable"),
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()
        self.writable = Gate()
        self.writable.set()

    async def send(self, message) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body", False):
            # A refusal answered with a response (a 503 while Redis is down) completes the handshake too: uvicorn's
            # protocol forgets to say so and logs each one as an ERROR (Kludex/uvicorn#3138, open).
            self.handshake_complete = True
        elif message["type"] == "websocket.accept" and self.handshake_complete:
            # websockets' parser keeps the request object for the connection's life (a local of its generator):
            # emptied, it keeps no headers.
            self.request.headers.clear()
            self.request = self.response = None
