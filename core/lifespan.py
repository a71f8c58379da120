"""The ASGI lifespan of a server process (uvicorn's `lifespan="on"`): nothing to do at startup; at shutdown, after
the process's last request and socket, the pushes its requests handed off go out before it exits."""

from core import loop_sends


async def lifespan(scope, receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await loop_sends.drain()
            await send({"type": "lifespan.shutdown.complete"})
            return
