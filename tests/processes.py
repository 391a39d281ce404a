"""``unmark`` as a child process, for tests and benchmarks that start, stop and kill the real thing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(slots=True)
class Unmark:
    """A running ``unmark`` process and what it has written to stderr so far (drained as it goes)."""

    process: asyncio.subprocess.Process
    stderr: bytearray
    reader: asyncio.Task[None] | None = None

    async def stop(self) -> str:
        """SIGTERM, as a platform stops a process; wait for the exit; its whole stderr."""
        self.process.send_signal(signal.SIGTERM)
        return await self.wait()

    async def kill(self) -> str:
        """SIGKILL, as a crash or an out-of-memory killer ends a process: no cleanup at all; its whole stderr."""
        self.process.kill()
        return await self.wait()

    async def wait(self) -> str:
        """Wait for the exit; its whole stderr."""
        await asyncio.wait_for(self.process.wait(), 30)
        if self.reader is not None:
            await self.reader  # up to the end of the pipe
        return self.stderr.decode()


@contextlib.asynccontextmanager
async def unmark(*args: str, env: dict[str, str]) -> AsyncIterator[Unmark]:
    """``unmark <args>`` as a child process, its pipes drained (DEBUG logs outgrow a pipe); killed if left running."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env={**os.environ, **env})
    running = Unmark(process, bytearray())

    async def drain() -> None:
        assert process.stderr is not None
        while chunk := await process.stderr.read(65536):
            running.stderr += chunk

    running.reader = asyncio.create_task(drain())
    try:
        yield running
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await running.reader
