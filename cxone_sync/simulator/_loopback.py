"""What the simulator's two servers (API and S3) share: a socketserver on a loopback port,
served from a daemon thread, stopped cleanly, usable as a context manager."""

from __future__ import annotations

import socketserver
import threading
from types import TracebackType
from typing import Self

from cxone_sync.settings import LOCAL_HOST


class LoopbackServer:
    _server: socketserver.BaseServer
    _thread: threading.Thread

    def _serve(self, server: socketserver.BaseServer, name: str) -> None:
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{name}-{self.port}",
            daemon=True,
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])  # type: ignore[index]

    @property
    def url(self) -> str:
        return f"http://{LOCAL_HOST}:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
