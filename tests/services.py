"""The services a scaled-out chat shares, started for real by the tests: Redis (Debian's redis-server)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import redis

from .helpers import free_port, wait_until


class RedisServer:
    """``redis-server`` on a free port, in a directory of its own, with nothing saved to disk."""

    def __init__(self, workdir: Path) -> None:
        assert shutil.which("redis-server"), "install Debian's redis-server (tests/run.sh does)"
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        with open(self.workdir / "redis.log", "a") as log:
            self.process = subprocess.Popen(command, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self.answers, what=f"redis-server on port {self.port}")
        return self

    def answers(self) -> bool:
        try:
            return redis.Redis(port=self.port, socket_timeout=1).ping()
        except redis.RedisError:
            return False

    def kill(self) -> None:
        """Stop it at once, as a crash would (what it held is lost)."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def pause(self) -> None:
        """Freeze it: connections stay open and nothing answers (a half-open connection, seen from a client)."""
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.resume()
        self.kill()


class DelayingProxy:
    """A TCP proxy to ``upstream_port`` on 127.0.0.1 whose client-to-server bytes arrive ``delay`` seconds late.

    A Redis far away, as a process sees it: every command's answer comes a round trip later.
    """

    def __init__(self, upstream_port: int, delay: float) -> None:
        self.upstream_port, self.delay = upstream_port, delay
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._serve(), self.loop).result()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def _serve(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        await asyncio.gather(self._pipe(reader, upstream_writer, self.delay), self._pipe(upstream_reader, writer, 0))

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, target: asyncio.StreamWriter, delay: float) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await source.read(65536):
                await asyncio.sleep(delay)
                target.write(data)
                await target.drain()
        target.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
