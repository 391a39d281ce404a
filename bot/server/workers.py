"""WorkerPool: engine processes that clean one image file at a time, report progress, and can be killed.

The engine is CPU-bound, so it runs in separate processes rather than threads: the event loop never
waits on it, and a task past its deadline is stopped by killing its process (a thread cannot be
stopped). Each worker loads the engine once, when it starts, and gets one job at a time over a pipe;
the parent reads the pipe with ``loop.add_reader``, so a pool is not tied to one event loop.

Messages from a worker: ``("ready",)`` or ``("broken", detail)`` once at start, then per job any number
of ``("progress", percent)`` and one ``("done", path, format, width, height)`` or
``("failed", code, detail)``, where ``code`` is an ``UnmarkError.code``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot import images
from bot.errors import EngineBroken, NotAnImage, UnmarkError

if TYPE_CHECKING:  # onnxruntime loads in the workers only
    from bot.engine import MarkEngine

logger = logging.getLogger(__name__)

START_TIMEOUT = 120.0  # seconds for a fresh process to import numpy/OpenCV/onnxruntime and load the model
STOP_TIMEOUT = 5.0
# The parent runs threads (aiosqlite, the default executor): forking it could copy a held lock.
CONTEXT = multiprocessing.get_context("spawn")
WORKER_LOST = "worker_lost"  # the code of a job whose process died under it
RESULT_NOT_STORED = "result_not_stored"  # the code of a job cleaned but not written to disk

Progress = Callable[[int], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Job:
    """One image to clean: the file holding its bytes, and the result's path without its extension."""

    source: Path
    target: Path


@dataclass(frozen=True, slots=True)
class Cleaned:
    """A finished job: the result file, in the input's format."""

    path: Path
    format: str
    width: int
    height: int


class JobFailed(Exception):
    """The worker refused or failed the image; ``code`` is the ``UnmarkError.code`` that says why."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail


class Worker:
    """One engine process and the pipe to it; killed when a job overruns, started again before the next."""

    def __init__(self, *, threads: int) -> None:
        self._threads = threads
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._ready = False
        # Starts run in a thread and may outlive a cancelled caller: one at a time, and stop() waits for it.
        self._starting = threading.Lock()

    @property
    def alive(self) -> bool:
        """Started, engine loaded, and not killed or dead since."""
        return self._ready and self._process is not None and self._process.is_alive()

    @property
    def pid(self) -> int | None:
        """The process id, while there is a process."""
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        """Start a process and wait until it has loaded the engine, unless one is running (blocking)."""
        with self._starting:
            if self.alive:
                return
            self.kill()
            ours, theirs = CONTEXT.Pipe()
            self._process = CONTEXT.Process(target=_serve, args=(theirs, self._threads), name="unmark-worker",
                                            daemon=True)
            self._process.start()
            theirs.close()
            self._conn = ours
            self._wait_ready(ours)

    def _wait_ready(self, conn: Connection) -> None:
        try:
            late = f"a worker did not load the engine within {START_TIMEOUT:.0f} s"
            message = conn.recv() if conn.poll(START_TIMEOUT) else ("broken", late)
        except (EOFError, OSError):
            message = ("broken", "a worker process died while loading the engine")
        if message[0] != "ready":
            self.kill()
            raise EngineBroken(str(message[1]))
        self._ready = True

    async def ensure_started(self) -> None:
        """Start a fresh process if this one was killed or died (off the event loop: it takes a second)."""
        if not self.alive:
            await asyncio.to_thread(self.start)

    async def run(self, job: Job, progress: Progress) -> Cleaned:
        """Clean one image, forwarding progress; if we are cancelled (a deadline) the process is killed."""
        conn = self._conn
        if conn is None or not self.alive:
            raise JobFailed(WORKER_LOST, "the worker is not running")
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        try:
            return await self._exchange(conn, job, inbox, loop, progress)
        except JobFailed as failed:
            if failed.code == WORKER_LOST:
                self.kill()
            raise
        except (BrokenPipeError, ConnectionResetError) as exc:
            self.kill()
            raise JobFailed(WORKER_LOST, "the worker process died") from exc
        except BaseException:
            # Cut off mid-job (a deadline, shutdown): its late messages would reach the next job.
            self.kill()
            raise

    async def _exchange(self, conn: Connection, job: Job, inbox: asyncio.Queue[tuple[Any, ...]],
                        loop: asyncio.AbstractEventLoop, progress: Progress) -> Cleaned:
        """Send the job and read messages until its answer; the pipe is watched only meanwhile."""
        fd = conn.fileno()  # saved: once the pipe is closed its number may belong to a new one
        loop.add_reader(fd, _drain, conn, inbox, loop)
        try:
            conn.send(job)
            while True:
                message = await inbox.get()
                match message:
                    case ("progress", percent):
                        await progress(int(percent))
                    case ("done", path, fmt, width, height):
                        return Cleaned(Path(path), fmt, width, height)
                    case ("failed", code, detail):
                        raise JobFailed(code, detail)
                    case _:
                        raise JobFailed(WORKER_LOST, "the worker process died")
        finally:
            loop.remove_reader(fd)

    def kill(self) -> None:
        """Stop the process at once; the next ``ensure_started`` replaces it."""
        self._ready = False
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            if self._process.pid is not None:  # it may have failed to start at all
                self._process.join(STOP_TIMEOUT)
            self._process = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def stop(self) -> None:
        """Ask the process to finish and wait for it; kill it if it does not (blocking)."""
        with self._starting:
            if self._conn is not None and self._process is not None and self._process.is_alive():
                with contextlib.suppress(OSError):
                    self._conn.send(None)
                self._process.join(STOP_TIMEOUT)
            self.kill()


class WorkerPool:
    """A fixed number of workers, started together so a broken engine fails at start-up."""

    def __init__(self, workers: tuple[Worker, ...]) -> None:
        self.workers = workers

    @classmethod
    def start(cls, size: int, *, threads: int | None = None) -> WorkerPool:
        """Start ``size`` workers and wait until each has loaded the engine (blocking)."""
        if threads is None:  # share the cores out, so N workers do not each start N threads
            threads = max(1, (os.cpu_count() or 1) // size)
        pool = cls(tuple(Worker(threads=threads) for _ in range(size)))
        try:
            with ThreadPoolExecutor(size) as starting:  # every worker loads the engine at the same time
                list(starting.map(Worker.start, pool.workers))
        except BaseException:
            pool.close()
            raise
        logger.info("%d engine worker(s) ready, %d thread(s) each", size, threads)
        return pool

    def close(self) -> None:
        """Stop every worker (blocking)."""
        for worker in self.workers:
            worker.stop()

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, size: int, *, threads: int | None = None) -> AsyncIterator[WorkerPool]:
        """Start the pool off the event loop and stop it however we leave."""
        pool = await asyncio.to_thread(cls.start, size, threads=threads)
        try:
            yield pool
        finally:
            await asyncio.to_thread(pool.close)


def _drain(conn: Connection, inbox: asyncio.Queue[tuple[Any, ...]], loop: asyncio.AbstractEventLoop) -> None:
    """Move every message waiting on the pipe into the inbox; a closed pipe becomes ``("lost",)``."""
    try:
        while conn.poll():
            inbox.put_nowait(conn.recv())
    except (EOFError, OSError):
        # The fd stays readable at EOF: stop watching it, or this callback would spin.
        loop.remove_reader(conn.fileno())
        inbox.put_nowait(("lost",))


# --- in the worker process -----------------------------------------------------------------


def _serve(conn: Connection, threads: int) -> None:
    """Worker process: load the engine once, then clean jobs until told to stop or the parent goes away."""
    # Ctrl-C reaches the whole process group; the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import cv2

        from bot.engine import MarkEngine

        cv2.setNumThreads(threads)  # OpenCV would otherwise start a thread per core in every worker
        engine = MarkEngine.load(threads=threads)
    except Exception as exc:  # a missing or corrupt model: tell the parent in one line
        conn.send(("broken", str(exc) or type(exc).__name__))
        return
    conn.send(("ready",))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if job is None:
            return
        try:
            conn.send(_clean(engine, job, lambda percent: conn.send(("progress", percent))))
        except OSError:  # a broken pipe: the parent died mid-job
            return


def _clean(engine: MarkEngine, job: Job, report: Callable[[int], None]) -> tuple[Any, ...]:
    """Validate, clean and store one image in its own format; failures become ``("failed", code, detail)``."""
    try:
        data = job.source.read_bytes()
        kind = images.sniff(data)
        if kind not in images.SENT_AS_IS:  # PicWish takes jpg, png and bmp only
            raise NotAnImage(kind)
        image = images.load(data)
        rgb, alpha, icc = images.to_array(image)
        result = images.from_array(engine.clean(rgb, report), alpha, image.format, icc, like=image)
        path = job.target.with_name(f"{job.target.name}.{result.extension}")
        partial = path.with_name(path.name + ".part")
        try:
            partial.write_bytes(result.data)
            os.replace(partial, path)  # a result file is either whole or absent
        except OSError as exc:  # a full or broken disk: PicWish's "result upload failed"
            return ("failed", RESULT_NOT_STORED, f"{type(exc).__name__}: {exc}")
        return ("done", str(path), result.format, result.width, result.height)
    except UnmarkError as error:
        return ("failed", error.code, str(error))
    except BrokenPipeError:  # from a progress report: the parent is gone, so is this job
        raise
    except MemoryError:
        return ("failed", "too_large", "out of memory")
    except Exception as exc:  # the engine's own bug: fail this image, keep the worker
        logger.exception("cleaning %s failed", job.source.name)
        return ("failed", "removal_failed", f"{type(exc).__name__}: {exc}")
