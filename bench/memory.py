"""Server memory: VmRSS of the uvicorn process before and after opening N driver websockets."""

import asyncio

from bench.common import rss_by_process_mb, rss_mb
from bench.driverws import DriverSockets


async def open_sockets(port: int, server_pid: int, drivers: list[dict]) -> tuple[DriverSockets, dict]:
    idle = rss_mb(server_pid)
    sockets = DriverSockets(port, drivers)
    took = await sockets.open()
    await asyncio.sleep(2)  # let the server settle (handshakes done, group_adds flushed)
    loaded = rss_mb(server_pid)
    n = sockets.open_count
    return sockets, {
        "sockets_requested": len(drivers),
        "sockets_open": n,
        "failed_connects": sockets.failed_connects,
        "open_s": round(took, 2),
        "rss_before_sockets_mb": idle,
        "rss_mb": loaded,
        "rss_by_process_mb": sorted(rss_by_process_mb(server_pid).values(), reverse=True),
        "kb_per_socket": round((loaded - idle) * 1024 / n, 1) if n else None,
    }
