"""A server on its own event loop in a background thread (tests, benchmarks, the demo)."""
from __future__ import annotations

import asyncio
import threading

from .backend import Backend
from .server import StreamServer, run_server
from .server_config import ServerConfig


class ServerThread:
    """A server on its own event loop in a background thread (tests, benchmarks).

    ``with ServerThread(backend, ServerConfig(port=0)) as st: st.url``
    """

    def __init__(self, backend: Backend, config: ServerConfig = ServerConfig(port=0)):
        self.backend, self.config = backend, config
        self.server: StreamServer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="llmcodec-server", daemon=True)

    def _main(self) -> None:
        async def main():
            self.loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()

            def on_ready(server: StreamServer) -> None:
                self.server = server
                self._started.set()
            await run_server(self.backend, self.config, self._stop, on_ready)
        try:
            asyncio.run(main())
        except BaseException as e:  # surfaced by start()
            self._error = e
            self._started.set()

    def start(self, timeout: float = 30.0) -> "ServerThread":
        self._thread.start()
        if not self._started.wait(timeout) or self._error is not None:
            raise RuntimeError(f"server did not start: {self._error!r}")
        return self

    @property
    def url(self) -> str:
        return self.server.url

    def call(self, fn, timeout: float = 30.0):
        """Run ``fn()`` (a function or coroutine function) on the server's loop; returns its result."""
        async def wrap():
            r = fn()
            return await r if asyncio.iscoroutine(r) else r
        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(timeout)

    def stop(self, timeout: float = 60.0) -> None:
        if self._thread.is_alive() and self.loop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout)

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
