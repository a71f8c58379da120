"""A merchant's webhook endpoint on 127.0.0.1 for tests: records every request, answers as told, and can hang
(a merchant whose server stalls) until released."""

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict
    body: bytes


class Receiver:
    def __init__(self, status: int = 200, headers: dict | None = None, hang: bool = False):
        self.status = status
        self.requests: list[Request] = []
        self.arrived = threading.Event()
        self.release = threading.Event()
        if not hang:
            self.release.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append(Request(self.command, self.path, dict(self.headers), body))
                receiver.arrived.set()
                receiver.release.wait(60)
                self.send_response(receiver.status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
