"""Shared pieces of the benchmarks: environment, subprocesses, percentiles, a lean keep-alive HTTP client."""

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PYTHON = os.environ.get("BENCH_PYTHON", sys.executable)
# What the server processes run on. The interpreter's build moves every CPU figure: a plain source build (pyenv's
# default: libpython as a shared library, no --enable-optimizations) took 12-14 % more CPU per create + dispatch +
# accept than Debian's python3.11 on the same machine (BENCHMARKS.md, round 21).
INTERPRETER_PROBE = (
    "import json, platform, sys; maps = open('/proc/self/maps').read(); "
    "print(json.dumps({'executable': sys.executable, 'version': platform.python_version(), "
    "'libpython_shared': 'libpython' in maps}))"
)
# The bench's own database and Redis db (both wiped); a check run beside a real one sets others.
DB_NAME = os.environ.get("BENCH_DATABASE_NAME", "relay_bench")
DB_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DB_URL = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5")
KEY_PREFIX = "relay-bench:"
HOST = "127.0.0.1"


def app_env(**extra: str) -> dict[str, str]:
    """Production mode (PostgreSQL, Redis) on the bench's own database and Redis db."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=DB_URL,
        REDIS_URL=REDIS_URL,
        SECRET_KEY="bench-only-not-a-secret-0123456789abcdef0123456789abcdef",
        DEBUG="0",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="0",
        RELAY_REDIS_KEY_PREFIX=KEY_PREFIX,
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
        # The bench's 1,000 customers' sockets all come from this one address.
        TRACK_THROTTLE_RATE="1000000/min",
    )
    env.update(extra)
    return env


# --- numbers ---------------------------------------------------------------------------------------------
def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of the values; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary_ms(seconds: list[float]) -> dict:
    """p50/p95/p99/max in milliseconds of latencies given in seconds."""
    out = {"n": len(seconds)}
    for name, p in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100)):
        value = percentile(seconds, p)
        out[f"{name}_ms"] = None if value is None else round(value * 1000, 2)
    return out


# --- processes -------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {HOST}:{port} after {timeout}s")


@dataclass
class Service:
    """A subprocess the runner started and must stop, with its output in bench/results/<name>.log."""

    name: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen | None = None
    log: Path | None = field(default=None)

    def start(self) -> "Service":
        RESULTS.mkdir(parents=True, exist_ok=True)
        self.log = RESULTS / f"{self.name}.log"
        out = self.log.open("w")
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        out.close()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        children = process_tree(self.proc.pid)[1:]
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        # A supervisor killed while its workers drained their sockets leaves them orphaned: end them too.
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


def process_tree(pid: int) -> list[int]:
    """The process and its children (a multi-worker server is a supervisor with one child per worker)."""
    tree = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == pid:
            tree.append(int(stat.parent.name))
    return tree


def rss_by_process_mb(pid: int) -> dict[int, float]:
    """Resident memory of the process and of each of its children."""
    sizes = {}
    for member in process_tree(pid):
        for row in Path(f"/proc/{member}/status").read_text().splitlines():
            if row.startswith("VmRSS:"):
                sizes[member] = round(int(row.split()[1]) / 1024, 1)
    return sizes


def interpreter() -> dict:
    """The server's interpreter: its path, version and whether it calls into libpython as a shared library."""
    return json.loads(subprocess.run([PYTHON, "-c", INTERPRETER_PROBE], capture_output=True, check=True).stdout)


def rss_mb(pid: int) -> float:
    """Resident memory of the process and its children, summed."""
    return round(sum(rss_by_process_mb(pid).values()), 1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by the process and its children (from /proc/<pid>/stat)."""
    return sum(_cpu_ticks(f"/proc/{member}/stat") for member in process_tree(pid)) / os.sysconf("SC_CLK_TCK")


def main_thread_cpu_seconds(pid: int) -> float:
    """The same, of each process's main thread only: a server worker's event loop (uvicorn runs it there; Django's
    request threads and the pools' workers are the other threads). The process's figure less this one is what
    its other threads used, those that have ended included."""
    ticks = sum(_cpu_ticks(f"/proc/{member}/task/{member}/stat") for member in process_tree(pid))
    return ticks / os.sysconf("SC_CLK_TCK")


def _cpu_ticks(stat: str) -> int:
    fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def run_checked(argv: list[str], env: dict[str, str], timeout: float) -> str:
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


# --- a lean HTTP/1.1 keep-alive client -------------------------------------------------------------------
class HttpError(Exception):
    pass


class HttpConnection:
    """One keep-alive connection, one request at a time. Costs the load generator far less CPU per request
    than a general-purpose client, which matters when generator and server share 2 cores."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: dict | None = None, token: str | None = None):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        payload = json.dumps(body).encode() if body is not None else b""
        head = [f"{method} {path} HTTP/1.1", f"Host: {HOST}", f"Content-Length: {len(payload)}"]
        if body is not None:
            head.append("Content-Type: application/json")
        if token:
            head.append(f"Authorization: Token {token}")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        try:
            status, data = await self._response()
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            self.close()
            raise HttpError(str(exc)) from exc
        return status, data

    async def _response(self) -> tuple[int, bytes]:
        assert self.reader is not None
        header = await self.reader.readuntil(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for row in lines[1:]:
            if ":" in row:
                name, value = row.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            data = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            chunks = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                chunks.append(chunk[:-2])
            data = b"".join(chunks)
        else:
            data = b""
        if headers.get("connection") == "close":
            self.close()
        return status, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class HttpPool:
    """A fixed number of keep-alive connections; a request waits for a free one."""

    def __init__(self, port: int, size: int) -> None:
        self._free: asyncio.Queue[HttpConnection] = asyncio.Queue()
        for _ in range(size):
            self._free.put_nowait(HttpConnection(port))

    async def request(self, method: str, path: str, body: dict | None = None, token: str | None = None):
        conn = await self._free.get()
        try:
            return await conn.request(method, path, body, token)
        finally:
            self._free.put_nowait(conn)

    def close(self) -> None:
        while not self._free.empty():
            self._free.get_nowait().close()


async def paced(rate: float, duration: float, launch, *, max_in_flight: int) -> dict:
    """Open-loop load: call `launch(i)` (a coroutine function) `rate` times a second for `duration` seconds,
    without waiting for earlier calls, but never with more than max_in_flight outstanding (a launch that would
    exceed it is skipped and counted: the generator or the server could not keep up)."""
    total = int(rate * duration)
    tasks: set[asyncio.Task] = set()
    skipped = 0
    start = time.perf_counter()
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(tasks) >= max_in_flight:
            skipped += 1
            continue
        task = asyncio.create_task(launch(i))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    offered_s = time.perf_counter() - start
    if tasks:
        await asyncio.wait(tasks, timeout=10)
    for task in tasks:
        task.cancel()
    return {"planned": total, "skipped": skipped, "offer_window_s": round(offered_s, 2)}


async def asgi_post(application, path: str, token: str, body: bytes) -> tuple[int, bytes]:
    """One POST through an ASGI application in this process, as uvicorn hands it over (no HTTP): the in-process
    CPU harnesses' request. Returns the status and the body."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", f"Token {token}".encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    disconnected = asyncio.get_running_loop().create_future()  # never: the client stays until the answer

    async def receive():
        return pending.pop() if pending else await disconnected

    status, chunks = 0, []

    async def send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        else:
            chunks.append(message.get("body", b""))

    await application(scope, receive, send)
    return status, b"".join(chunks)
