"""A scripted HTTP server on 127.0.0.1: each (method, path) answers a programmed sequence.

Every request is recorded (method, path, query, headers, body, monotonic arrival time) so tests
assert on what the client really sent. ``POST /oauth/token`` issues numbered tokens unless a
script for it is queued.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN_PATH = "/oauth/token"
TOKEN_MARK = "tkn-s3cr3t"


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = None
    """JSON-serialisable, or ``bytes`` sent as they are."""
    headers: dict[str, str] = field(default_factory=dict)
    truncate_to: int | None = None
    """Announce the full length but send only this many bytes, then close."""
    delay: float = 0.0

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return b"" if self.body is None else json.dumps(self.body).encode()


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class ScriptedServer:
    def __init__(self, url: str) -> None:
        self.url = url
        self.token_lifetime = 3600
        self.requests: list[Seen] = []
        self._scripts: dict[tuple[str, str], deque[Reply]] = {}
        self._tokens_issued = 0
        self._lock = threading.Lock()

    def script(self, method: str, path: str, *replies: Reply) -> None:
        with self._lock:
            self._scripts.setdefault((method, path), deque()).extend(replies)

    def seen(self, method: str, path: str) -> list[Seen]:
        return [r for r in self.requests if (r.method, r.path) == (method, path)]

    def api_requests(self) -> list[Seen]:
        return [r for r in self.requests if r.path != TOKEN_PATH]

    def token_requests(self) -> list[Seen]:
        return self.seen("POST", TOKEN_PATH)

    def reply_for(self, seen: Seen) -> Reply:
        with self._lock:
            self.requests.append(seen)
            queue = self._scripts.get((seen.method, seen.path))
            if queue:
                return queue.popleft()
            if (seen.method, seen.path) == ("POST", TOKEN_PATH):
                self._tokens_issued += 1
                token = f"{TOKEN_MARK}-{self._tokens_issued}"
                body = {"access_token": token, "token_type": "Bearer"}
                return Reply(body=body | {"expires_in": self.token_lifetime})
        return Reply(418, {"error": f"unscripted {seen.method} {seen.path}"})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""

    def _answer(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        seen = Seen(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self.rfile.read(length),
            at=time.monotonic(),
        )
        reply = self.server.scripted.reply_for(seen)
        time.sleep(reply.delay)
        payload = reply.payload()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if reply.truncate_to is None:
            self.wfile.write(payload)
            return
        self.wfile.write(payload[: reply.truncate_to])
        self.wfile.flush()
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    scripted: ScriptedServer


@contextmanager
def serve() -> Iterator[ScriptedServer]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    host, port = httpd.server_address[:2]
    httpd.scripted = ScriptedServer(f"http://{host!s}:{port}")
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield httpd.scripted
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
