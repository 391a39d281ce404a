#!/usr/bin/env python
"""Benchmark: the core's own overhead per image, its throughput with many chats at once, and its memory.

Run from the repository root (nothing is installed or changed; results go to benchmarks/results/core.json)::

    python benchmarks/core.py            # full run, under a minute on 2 cores
    python benchmarks/core.py --quick    # smaller run, for a smoke test

What it measures, against the PicWish fake (tests/fakes/picwish.py) served by uvicorn on loopback in a
*separate process*, so that this process's time, RSS and Python allocations are the bot's own:

- Baseline (same run, interleaved with the core): the least any client must do per image, one raw
  ``httpx.AsyncClient`` multipart POST with sync=1 and one GET of ``data.file``.
- Core: ``Service.handle(job, RecordingReplies())`` with a real ``PicWishClient`` and a real
  ``UsageStore`` on a temporary SQLite file, through ``open_service``. Every job gets a different
  image (the dedupe cache would otherwise answer at once). Overhead = median(core) - median(baseline);
  also median(handle - time inside remover.remove) from a thin timing wrapper around the client.
- Memory: for one 12 MP job, the Python heap peak during ``handle`` (tracemalloc) and the RSS high-water
  mark over RSS before (Linux ``/proc/self/clear_refs``), each divided by the JPEG's byte size.
- Event loop: the longest stall of the loop during one 12 MP ``handle`` and, in asyncio debug mode,
  the callbacks that ran longer than 2 ms (and where the task was suspended next).
- Throughput: N chats each sending one 1 MP image at once (asyncio.gather), concurrency 4 and 16,
  beside the raw client doing the same work under the same concurrency limit.

The fake's "processing" is zero by default: in the fake's process ``_process`` is replaced by an echo
of the uploaded bytes (the fake's task states, signing and result URL are unchanged), so no Pillow work
competes with the bot for the CPU. ``--fake-processing mirror`` keeps the fake's own decode/mirror/encode.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import io
import itertools
import json
import logging
import math
import multiprocessing as mp
import os
import platform
import queue as queue_module
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import PIL.Image  # noqa: E402

from bot import images  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.core import Service, open_service  # noqa: E402
from bot.images import Image  # noqa: E402
from bot.jobs import ChatRef, ImageJob  # noqa: E402
from bot.picwish import TASK_PATH, PicWishClient  # noqa: E402
from tests.fakes.replies import RecordingReplies  # noqa: E402

KEY = "bench-key"
RESULTS = ROOT / "benchmarks" / "results" / "core.json"
QUALITY = 90
SIZES = {"1mp": (1000, 1000), "12mp": (4000, 3000)}
JOB_TIMEOUT = 60.0  # seconds for any one job or request; the fake answers in milliseconds
FAKE_START_TIMEOUT = 60.0
FAKE_LIFETIME = 900.0  # the fake exits by itself after this, or as soon as this process is gone
USAGE_STAGES = ("start", "begin", "record_input", "recent_result", "claim", "set_task", "remember_result", "finish")
SLOW_CALLBACK = 0.002  # seconds: asyncio debug mode reports callbacks that hold the loop longer


# --- the fake, in its own process ---------------------------------------------------------------


def _echo_process(data: bytes, max_bytes: int) -> tuple[int, bytes, str]:
    """Stand-in for the fake's ``_process``: the 'cleaned' image is the upload itself (zero processing)."""
    if len(data) > max_bytes:
        return -5, b"", ""
    kind = images.sniff(data)
    if kind == "jpeg":
        return 1, data, "jpg"
    if kind == "png":
        return 1, data, "png"
    return -7, b"", ""


def _fake_main(channel: Any, stop: Any, processing: str, parent_pid: int, lifetime: float) -> None:
    asyncio.run(_fake_serve(channel, stop, processing, parent_pid, lifetime))


async def _fake_serve(channel: Any, stop: Any, processing: str, parent_pid: int, lifetime: float) -> None:
    from tests.fakes import picwish as fakes
    from tests.fakes.servers import serve

    if processing == "echo":
        fakes._process = _echo_process  # type: ignore[assignment]  # looked up at call time by _create
    fake = fakes.FakePicWish(keys={KEY})
    fake.qps = None  # no 2 requests/s limit; default states, so sync=1 answers done at once
    async with serve(fake.app) as url:
        channel.put(("url", url))
        deadline = time.monotonic() + lifetime
        while not stop.is_set() and os.getppid() == parent_pid and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            fake.requests.clear()  # the fake records every request; keep its memory flat
    channel.put(("done", {
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "tasks": len(fake.tasks), "credits_used": fake.credits_used,
    }))


@contextlib.contextmanager
def fake_picwish(processing: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Start the fake in a child process; yield its base URL and a dict filled with its stats at exit."""
    ctx = mp.get_context("spawn")
    channel, stop = ctx.Queue(), ctx.Event()
    process = ctx.Process(target=_fake_main, args=(channel, stop, processing, os.getpid(), FAKE_LIFETIME),
                          name="picwish-fake", daemon=True)
    process.start()
    stats: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + FAKE_START_TIMEOUT
        url = None
        while url is None:
            if not process.is_alive():
                raise RuntimeError(f"the fake exited before serving (exit code {process.exitcode})")
            if time.monotonic() > deadline:
                raise RuntimeError("the fake did not start in time")
            with contextlib.suppress(queue_module.Empty):
                _, url = channel.get(timeout=0.2)
        yield url, stats
    finally:
        stop.set()
        with contextlib.suppress(queue_module.Empty, OSError, EOFError):
            kind, payload = channel.get(timeout=10)
            if kind == "done":
                stats.update(payload)
        process.join(10)
        if process.is_alive():
            process.terminate()
            process.join(5)
        if process.is_alive():
            process.kill()
            process.join(5)
        channel.close()
        channel.join_thread()


# --- images -----------------------------------------------------------------------------------


class Photo:
    """A deterministic photo-like picture (gradients, soft texture, sensor-like noise); variants differ
    in one 8x8 block, so each has its own bytes and hash."""

    def __init__(self, width: int, height: int, seed: int, noise: float = 8.0) -> None:
        rng = np.random.default_rng(seed)
        y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
        x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
        texture = 40 * np.sin(23 * x) * np.cos(17 * y)
        self.pixels = np.empty((height, width, 3), np.uint8)
        for channel, (a, b) in enumerate([(200, 30), (60, 170), (110, 110)]):
            plane = a * x + b * y + texture * (channel + 1) / 3
            plane = plane + rng.standard_normal((height, width), dtype=np.float32) * noise
            np.clip(plane, 0, 255, out=plane)
            self.pixels[..., channel] = plane

    def jpeg(self, variant: int) -> bytes:
        if not 0 <= variant < 256:
            raise ValueError("variants 0-255 only")
        block = self.pixels[:8, :8].copy()
        self.pixels[:8, :8] = ((37 * variant) % 256, (91 * variant) % 256, (53 * variant) % 256)
        try:
            out = io.BytesIO()
            PIL.Image.fromarray(self.pixels).save(out, "JPEG", quality=QUALITY)
            return out.getvalue()
        finally:
            self.pixels[:8, :8] = block


# --- what is timed ----------------------------------------------------------------------------


class TimedRemover:
    """The client, plus the time each ``remove`` took (the same Remover signature and ``name``)."""

    def __init__(self, inner: PicWishClient) -> None:
        self.inner = inner
        self.name = inner.name
        self.spent_ms: list[float] = []

    async def remove(self, image: Image, progress: Any = None, *, on_task: Any = None,
                     source_url: str | None = None) -> Image:
        started = time.perf_counter()
        try:
            return await self.inner.remove(image, progress, on_task=on_task, source_url=source_url)
        finally:
            self.spent_ms.append((time.perf_counter() - started) * 1000)


class StageClock:
    """Times the UsageStore's awaited calls, by replacing them on the one instance the service holds."""

    def __init__(self) -> None:
        self.current: dict[str, float] = defaultdict(float)

    def instrument(self, store: Any) -> None:
        for name in USAGE_STAGES:
            setattr(store, name, self._timed(name, getattr(store, name)))

    def _timed(self, name: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await method(*args, **kwargs)
            finally:
                self.current[name] += (time.perf_counter() - started) * 1000
        return timed

    def take(self) -> dict[str, float]:
        taken, self.current = dict(self.current), defaultdict(float)
        return taken


class BenchPlatform:
    """The adapter side: it already has each job's bytes (no copy, no I/O) and records its replies."""

    name = "bench"

    def __init__(self) -> None:
        self._pending: dict[str, tuple[bytes, RecordingReplies]] = {}
        self._ids = itertools.count()

    def job(self, data: bytes, chat: ChatRef, replies: RecordingReplies) -> ImageJob:
        source = f"image-{next(self._ids)}"
        self._pending[source] = (data, replies)
        return ImageJob(chat=chat, source=source, answer_to=source, filename="photo.jpg", size=len(data))

    async def fetch(self, job: ImageJob) -> bytes:
        return self._pending[job.source][0]

    @contextlib.asynccontextmanager
    async def replies(self, job: ImageJob) -> AsyncIterator[RecordingReplies]:
        try:
            yield self._pending[job.source][1]
        finally:
            del self._pending[job.source]  # a benchmark of memory must not keep every image it sent


async def raw_client_once(http: httpx.AsyncClient, base: str, data: bytes) -> bytes:
    """The baseline: what any client must do for one image against the same fake."""
    response = await http.post(
        base + TASK_PATH, headers={"X-API-KEY": KEY},
        files={"sync": (None, "1"), "file": ("image.jpg", data, "image/jpeg")},
    )
    response.raise_for_status()
    file_url = response.json()["data"]["file"]
    result = await http.get(file_url)
    result.raise_for_status()
    body = result.content
    if not body.startswith(b"\xff\xd8\xff"):
        raise RuntimeError("the baseline got something other than a jpeg back")
    return body


BENCH = BenchPlatform()


async def handle_once(service: Service, data: bytes, chat: ChatRef) -> RecordingReplies:
    replies = RecordingReplies()
    async with asyncio.timeout(JOB_TIMEOUT):
        outcome = await service.handle(BENCH.job(data, chat, replies))
    if not outcome.ok or outcome.cached or len(replies.images) != 1:
        raise RuntimeError(f"core job did not deliver a fresh result: {outcome.error_code} {replies.said}")
    return replies


@contextlib.asynccontextmanager
async def bench_service(base: str, db: Path, concurrency: int = 4
                        ) -> AsyncIterator[tuple[Service, TimedRemover, StageClock]]:
    settings = Settings(database=db, daily_limit=0, concurrency=concurrency, _env_file=None)
    async with PicWishClient(KEY, base_url=base, requests_per_second=None) as client:
        remover = TimedRemover(client)
        async with open_service(settings, remover=remover) as service:
            await service.attach(BENCH)
            clock = StageClock()
            clock.instrument(service.usage)
            yield service, remover, clock


# --- the measurements -------------------------------------------------------------------------


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summary(values: list[float]) -> dict[str, Any]:
    return {"median_ms": statistics.median(values), "p90_ms": quantile(values, 0.9),
            "min_ms": min(values), "n": len(values), "samples_ms": [round(v, 3) for v in values]}


async def sequential(base: str, tmp: Path, label: str, inputs: list[bytes], warmups: int) -> dict[str, Any]:
    """Baseline and core, alternating (ABBA) image by image; the first ``warmups`` pairs are dropped."""
    chat = ChatRef("bench", f"seq-{label}", "u1")
    base_ms, core_ms, remove_ms, rest_ms = [], [], [], []
    stages: dict[str, list[float]] = defaultdict(list)
    cpu_ms: dict[str, list[float]] = defaultdict(list)  # this process, all its threads; the fake is apart
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0)) as http, \
            bench_service(base, tmp / f"seq-{label}.sqlite3") as (service, remover, clock):

        async def baseline(data: bytes) -> float:
            gc.collect()
            cpu, started = time.process_time(), time.perf_counter()
            async with asyncio.timeout(JOB_TIMEOUT):
                await raw_client_once(http, base, data)
            cpu_ms["baseline"].append((time.process_time() - cpu) * 1000)
            return (time.perf_counter() - started) * 1000

        async def core(data: bytes) -> tuple[float, float, dict[str, float]]:
            gc.collect()
            clock.take()
            cpu, started = time.process_time(), time.perf_counter()
            await handle_once(service, data, chat)
            total = (time.perf_counter() - started) * 1000
            cpu_ms["core"].append((time.process_time() - cpu) * 1000)
            return total, remover.spent_ms[-1], clock.take()

        for i, data in enumerate(inputs):
            if i % 2 == 0:
                b = await baseline(data)
                c, r, s = await core(data)
            else:
                c, r, s = await core(data)
                b = await baseline(data)
            if i < warmups:
                continue
            base_ms.append(b)
            core_ms.append(c)
            remove_ms.append(r)
            rest_ms.append(c - r)
            for name in USAGE_STAGES:
                stages[name].append(s.get(name, 0.0))

    load_ms = []
    for data in inputs[warmups:]:
        started = time.perf_counter()
        images.load(data)
        load_ms.append((time.perf_counter() - started) * 1000)
    paired = [c - b for c, b in zip(core_ms, base_ms)]
    return {
        "input_bytes_median": int(statistics.median(len(d) for d in inputs)),
        "warmups": warmups,
        "baseline": summary(base_ms),
        "core_handle": summary(core_ms),
        "core_remove": summary(remove_ms),
        "core_handle_minus_remove": summary(rest_ms),
        "overhead_ms": statistics.median(core_ms) - statistics.median(base_ms),
        "overhead_paired_median_ms": statistics.median(paired),
        "cpu_ms_per_image": {k: statistics.median(v[warmups:]) for k, v in cpu_ms.items()},
        "usage_store_median_ms": {name: statistics.median(v) for name, v in stages.items()},
        "images_load_standalone_median_ms": statistics.median(load_ms),
    }


def _rss_kib(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _malloc_trim() -> None:
    """Give glibc's free memory back to the OS, so the next high-water mark shows what a job needs."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _reset_rss_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux >= 4.0: VmHWM := VmRSS
        return True
    except OSError:
        return False


async def memory(base: str, tmp: Path, warm_input: bytes, heap_input: bytes, rss_input: bytes) -> dict[str, Any]:
    """One 12 MP job under tracemalloc, another (without it) for the RSS high-water mark."""
    chat = ChatRef("bench", "memory", "u1")
    async with bench_service(base, tmp / "memory.sqlite3") as (service, _, _):
        await handle_once(service, warm_input, chat)  # connections, statement caches, first-use imports
        gc.collect()
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            before, _ = tracemalloc.get_traced_memory()
            replies = await handle_once(service, heap_input, chat)
            current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        result_bytes = len(replies.images[0].data)
        del replies
        gc.collect()
        _malloc_trim()
        hwm_so_far = _rss_kib("VmHWM")  # the run's high-water mark until now: clear_refs resets it
        rss_before = _rss_kib("VmRSS")
        reset = _reset_rss_peak()
        await handle_once(service, rss_input, chat)
        rss_peak = _rss_kib("VmHWM") if reset else None
    size = len(heap_input)
    out: dict[str, Any] = {
        "input_bytes": size, "result_bytes": result_bytes,
        "heap_peak_bytes": peak - before, "heap_peak_copies": (peak - before) / size,
        # The adapter holds the input for the whole job: it is one of the copies a job keeps in memory.
        "heap_peak_copies_with_input": (peak - before + size) / size,
        "heap_retained_after_bytes": current - before,
        "_hwm_before_reset_kib": hwm_so_far,
    }
    if rss_peak is not None and rss_before is not None:
        out["rss_highwater_over_before_bytes"] = (rss_peak - rss_before) * 1024
        out["rss_highwater_copies"] = (rss_peak - rss_before) * 1024 / len(rss_input)
    return out


class _Collect(logging.Handler):
    """Keeps asyncio's slow-callback warnings, with where the job's task was suspended right after."""

    def __init__(self, task_name: str) -> None:
        super().__init__(logging.WARNING)
        self.task_name = task_name
        self.task: asyncio.Task[Any] | None = None
        self.records: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        took = re.search(r"took ([0-9.]+) seconds", message)
        ours = self.task is not None and f"name='{self.task_name}'" in message
        try:
            chain = _suspended_at(self.task) if ours and self.task is not None else []
        except Exception as exc:  # a diagnostic must never break the run
            chain = [f"(could not walk the task: {exc!r})"]
        self.records.append({"ms": float(took.group(1)) * 1000 if took else None,
                             "suspended_next_at": chain, "message": message[:300]})


def _suspended_at(task: asyncio.Task[Any]) -> list[str]:
    """The await chain of a suspended task, outermost first: the code right before it ran on the loop."""
    chain: list[str] = []
    awaited: Any = task.get_coro()
    for _ in range(64):
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None) \
            or getattr(awaited, "gi_frame", None)
        if frame is None:
            break
        chain.append(f"{frame.f_code.co_qualname} ({_short(frame.f_code.co_filename)}:{frame.f_lineno})")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None) \
            or getattr(awaited, "gi_yieldfrom", None)
        if awaited is None:
            break
    return chain


async def event_loop(base: str, tmp: Path, probe_input: bytes, debug_input: bytes) -> dict[str, Any]:
    """The longest stall of the loop during one 12 MP handle(), then slow callbacks in debug mode."""
    chat = ChatRef("bench", "loop", "u1")
    loop = asyncio.get_running_loop()
    async with bench_service(base, tmp / "loop.sqlite3") as (service, _, _):
        stalls: list[float] = []
        done = asyncio.Event()

        async def probe() -> None:
            for _ in range(200_000):  # bounded; stops when the job is done
                if done.is_set():
                    return
                started = time.perf_counter()
                await asyncio.sleep(0.001)
                stalls.append((time.perf_counter() - started - 0.001) * 1000)

        prober = asyncio.create_task(probe())
        await asyncio.sleep(0.01)
        try:
            await handle_once(service, probe_input, chat)
        finally:
            done.set()
            await prober

        collector = _Collect("bench-debug-job")
        asyncio_logger = logging.getLogger("asyncio")
        asyncio_logger.addHandler(collector)
        previous = (loop.get_debug(), loop.slow_callback_duration, asyncio_logger.propagate)
        asyncio_logger.propagate = False
        loop.set_debug(True)
        loop.slow_callback_duration = SLOW_CALLBACK
        try:
            collector.task = asyncio.create_task(handle_once(service, debug_input, chat), name=collector.task_name)
            await collector.task
        finally:
            loop.set_debug(previous[0])
            loop.slow_callback_duration = previous[1]
            asyncio_logger.propagate = previous[2]
            asyncio_logger.removeHandler(collector)
    slow = sorted(collector.records, key=lambda s: -(s["ms"] or 0))
    return {"max_stall_ms": max(stalls) if stalls else None, "probe_wakeups": len(stalls),
            "stalls_over_5ms": sum(s > 5 for s in stalls), "slow_callbacks": slow}


def _short(path: str) -> str:
    with contextlib.suppress(ValueError):
        return str(Path(path).resolve().relative_to(ROOT))
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    return "/".join(Path(path).parts[-2:])


async def throughput(base: str, tmp: Path, inputs: list[bytes], concurrency: int, repeats: int) -> dict[str, Any]:
    """len(inputs) chats, one image each, all at once; core vs the raw client under the same limit."""
    core_walls, base_walls, store_ms, remove_ms, core_cpu, base_cpu = [], [], [], [], [], []
    for repeat in range(repeats):
        # Baseline: the raw client, at most `concurrency` images in flight, like Service's slots.
        async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0)) as http:
            slots = asyncio.Semaphore(concurrency)

            async def one(data: bytes) -> bytes:
                async with slots, asyncio.timeout(JOB_TIMEOUT):
                    return await raw_client_once(http, base, data)

            gc.collect()
            cpu, started = time.process_time(), time.perf_counter()
            got = await asyncio.gather(*(one(d) for d in inputs))
            base_walls.append(time.perf_counter() - started)
            base_cpu.append((time.process_time() - cpu) * 1000 / len(inputs))
            if len(got) != len(inputs):
                raise RuntimeError("the baseline lost an image")

        db = tmp / f"throughput-c{concurrency}-r{repeat}.sqlite3"
        async with bench_service(base, db, concurrency) as (service, remover, clock):
            chats = [ChatRef("bench", f"chat-{i}", f"user-{i}") for i in range(len(inputs))]
            clock.take()
            gc.collect()
            cpu, started = time.process_time(), time.perf_counter()
            replies = await asyncio.gather(*(handle_once(service, d, c) for d, c in zip(inputs, chats)))
            core_walls.append(time.perf_counter() - started)
            core_cpu.append((time.process_time() - cpu) * 1000 / len(inputs))
            # Per job, means: with jobs in parallel these include waiting (the store has one connection).
            store_ms.append(sum(clock.take().values()) / len(inputs))
            remove_ms.append(statistics.fmean(remover.spent_ms))
            delivered = sum(len(r.images) == 1 for r in replies)
            if delivered != len(inputs):
                raise RuntimeError(f"only {delivered} of {len(inputs)} chats got their image")
    core_wall, base_wall = statistics.median(core_walls), statistics.median(base_walls)
    return {
        "chats": len(inputs), "concurrency": concurrency, "repeats": repeats, "all_delivered": True,
        "core_wall_s": core_wall, "core_images_per_s": len(inputs) / core_wall, "core_walls_s": core_walls,
        "baseline_wall_s": base_wall, "baseline_images_per_s": len(inputs) / base_wall,
        "baseline_walls_s": base_walls,
        "core_cpu_ms_per_image": statistics.median(core_cpu), "baseline_cpu_ms_per_image": statistics.median(base_cpu),
        "core_mean_usage_store_ms_per_job": statistics.median(store_ms),
        "core_mean_remove_ms_per_job": statistics.median(remove_ms),
    }


# --- the machine and the report ---------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for package in ("httpx", "aiosqlite", "pillow", "uvicorn", "starlette", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    commit = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        run = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=5)
        commit = run.stdout.strip() or None
    return {
        "cpu": model or platform.machine(), "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(), "implementation": platform.python_implementation(),
        "os": platform.platform(), "packages": versions, "commit": commit,
    }


def report(result: dict[str, Any]) -> str:
    m, cfg, seq = result["machine"], result["config"], result["sequential"]
    one, twelve = seq["1mp"], seq["12mp"]
    lines = [
        f"unmark core benchmark - {m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['os']}",
        f"fake PicWish: separate process, loopback, qps off, processing={cfg['fake_processing']}; "
        f"{'quick' if cfg['quick'] else 'full'} run, {result['elapsed_s']:.0f} s",
        "",
        f"Per image, sequential (one chat), ms: 1 MP {cfg['sizes']['1mp']} jpeg q{QUALITY} "
        f"{one['input_bytes_median'] / 1024:.0f} KiB, n={one['core_handle']['n']}; "
        f"12 MP {cfg['sizes']['12mp']} {twelve['input_bytes_median'] / 2**20:.2f} MiB, "
        f"n={twelve['core_handle']['n']} (after {one['warmups']} warm-ups each)",
        f"  {'':44}{'1 MP median':>12}{'p90':>8}{'12 MP median':>14}{'p90':>8}",
    ]

    def row(label: str, key: str) -> str:
        return (f"  {label:44}{one[key]['median_ms']:12.1f}{one[key]['p90_ms']:8.1f}"
                f"{twelve[key]['median_ms']:14.1f}{twelve[key]['p90_ms']:8.1f}")

    lines += [
        row("baseline: raw httpx POST sync=1 + GET file", "baseline"),
        row("core: Service.handle()", "core_handle"),
        row("  inside remover.remove() (PicWishClient)", "core_remove"),
        row("  handle - remove", "core_handle_minus_remove"),
        f"  {'overhead = median(core) - median(baseline)':44}{one['overhead_ms']:12.1f}{'':8}"
        f"{twelve['overhead_ms']:14.1f}   target < 30 ms at 1 MP: "
        f"{'MET' if one['overhead_ms'] < 30 else 'MISSED'}",
        f"  {'  paired: median(core_i - baseline_i)':44}{one['overhead_paired_median_ms']:12.1f}{'':8}"
        f"{twelve['overhead_paired_median_ms']:14.1f}",
        f"  {'CPU of this process per image: baseline':44}{one['cpu_ms_per_image']['baseline']:12.1f}{'':8}"
        f"{twelve['cpu_ms_per_image']['baseline']:14.1f}",
        f"  {'                                core':44}{one['cpu_ms_per_image']['core']:12.1f}{'':8}"
        f"{twelve['cpu_ms_per_image']['core']:14.1f}",
        "",
        "  where handle's time outside the HTTP round trips goes (medians, ms):",
    ]
    for name in USAGE_STAGES:
        note = "  (awaited inside remove)" if name == "set_task" else ""
        lines.append(f"    UsageStore.{name:30}{one['usage_store_median_ms'][name]:12.2f}{'':8}"
                     f"{twelve['usage_store_median_ms'][name]:14.2f}{note}")
    lines.append(f"    {'images.load (run alone, same bytes)':42}{one['images_load_standalone_median_ms']:12.2f}{'':8}"
                 f"{twelve['images_load_standalone_median_ms']:14.2f}  (in a thread in handle)")

    mem = result["memory"]
    mib = 2**20
    copies = mem["heap_peak_copies_with_input"]
    verdict = "MET" if copies <= 3 else f"MISSED by {copies - 3:.2f}"
    lines += [
        "",
        f"Memory, one 12 MP job (input {mem['input_bytes'] / mib:.2f} MiB, result {mem['result_bytes'] / mib:.2f} "
        f"MiB; allocated before measuring: the input, and nothing else):",
        f"  Python heap peak during handle (tracemalloc)   {mem['heap_peak_bytes'] / mib:8.2f} MiB = "
        f"{mem['heap_peak_copies']:.2f} copies of the input's size",
        f"  with the input itself (held for the whole job) {(mem['heap_peak_bytes'] + mem['input_bytes']) / mib:8.2f}"
        f" MiB = {copies:.2f} copies   target <= 3: {verdict}",
        f"  Python heap still held after handle            {mem['heap_retained_after_bytes'] / mib:8.2f} MiB "
        f"(the Outcome and the recorded reply hold the result)",
    ]
    if "rss_highwater_copies" in mem:
        over = mem["rss_highwater_over_before_bytes"] / mib
        lines.append(f"  RSS high-water during handle over RSS before   {over:8.2f}"
                     f" MiB = {mem['rss_highwater_copies']:.2f} copies (includes SQLite's and malloc's own buffers)")
    if "measured_part_rss" in result:
        part = result["measured_part_rss"]
        lines.append(f"  peak RSS, bot process, measured part           {part['peak_mib']:8.1f} MiB "
                     f"(from {part['start_mib']:.1f} MiB with the test images made)")
    lines.append(f"  peak RSS, bot process (ru_maxrss, whole run)   {result['peak_rss_mib']:8.1f} MiB "
                 f"(includes making the test images)")
    if result["fake"].get("max_rss_mib"):
        lines.append(f"  peak RSS, fake (separate process)              {result['fake']['max_rss_mib']:8.1f} MiB")

    loop = result["event_loop"]
    lines += ["", f"Event loop during one 12 MP handle(): longest stall {loop['max_stall_ms']:.1f} ms, "
                  f"{loop['stalls_over_5ms']} stalls > 5 ms of {loop['probe_wakeups']} 1-ms wake-ups; "
                  f"callbacks > {SLOW_CALLBACK * 1000:.0f} ms in asyncio debug mode: {len(loop['slow_callbacks'])}"]
    for slow in loop["slow_callbacks"][:6]:
        chain = slow["suspended_next_at"]
        if chain:
            ours = [c for c in chain if " (bot/" in c]
            where = (ours[-1] if ours else chain[0]) + (f" -> {chain[-1]}" if chain[-1] not in ours[-1:] else "")
        else:
            where = "(another task) " + slow["message"][:100]
        lines.append(f"  {slow['ms'] or 0:6.1f} ms, just before: {where}")

    lines += ["", f"Throughput: {cfg['chats']} chats, one 1 MP jpeg each, all at once "
                  f"(median of {cfg['throughput_repeats']} rounds)",
              f"  {'':24}{'concurrency':>12}{'wall s':>9}{'images/s':>10}{'all delivered':>15}"
              f"{'CPU ms/img':>11}{'per job: in store':>19}{'in remove':>11}"]
    for tp in result["throughput"]:
        lines.append(f"  {'baseline (raw client)':24}{tp['concurrency']:12d}{tp['baseline_wall_s']:9.2f}"
                     f"{tp['baseline_images_per_s']:10.1f}{'':>15}{tp['baseline_cpu_ms_per_image']:11.1f}")
        lines.append(f"  {'core: Service.handle()':24}{tp['concurrency']:12d}{tp['core_wall_s']:9.2f}"
                     f"{tp['core_images_per_s']:10.1f}{'yes' if tp['all_delivered'] else 'NO':>15}"
                     f"{tp['core_cpu_ms_per_image']:11.1f}"
                     f"{tp['core_mean_usage_store_ms_per_job']:16.1f} ms{tp['core_mean_remove_ms_per_job']:8.1f} ms")
    lines += ["", f"JSON: {RESULTS.relative_to(ROOT)}"]
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    warmups = 1 if quick else 2
    n = {"1mp": 10 if quick else 60, "12mp": 3 if quick else 15}
    chats = args.chats or (20 if quick else 50)
    repeats = 1 if quick else 3

    t0 = time.perf_counter()
    print("generating images...", file=sys.stderr, flush=True)
    photos = {label: Photo(*SIZES[label], seed=seed) for seed, label in enumerate(SIZES, start=1)}
    inputs = {label: [photos[label].jpeg(v) for v in range(warmups + n[label])] for label in SIZES}
    extra_12 = [photos["12mp"].jpeg(v) for v in range(200, 205)]  # memory (3) and event-loop (2) jobs
    crowd = [photos["1mp"].jpeg(v) for v in range(100, 100 + chats)]
    del photos
    gc.collect()
    _malloc_trim()
    rss_start_kib, hwm_reset = _rss_kib("VmRSS"), _reset_rss_peak()  # from here on: the measured part
    print(f"images ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)

    result: dict[str, Any] = {
        "benchmark": "core", "machine": machine(),
        "config": {"quick": quick, "warmups": warmups, "runs": n, "chats": chats, "throughput_repeats": repeats,
                   "sizes": {k: f"{w}x{h}" for k, (w, h) in SIZES.items()}, "jpeg_quality": QUALITY,
                   "fake_processing": args.fake_processing, "concurrencies": [4, 16]},
        "images": {label: {"bytes_min": min(map(len, v)), "bytes_max": max(map(len, v))}
                   for label, v in inputs.items()},
    }
    with tempfile.TemporaryDirectory(prefix="unmark-bench-") as tmp_name, \
            fake_picwish(args.fake_processing) as (base, fake_stats):
        tmp = Path(tmp_name)
        result["sequential"] = {}
        for label in SIZES:
            print(f"sequential {label}...", file=sys.stderr, flush=True)
            result["sequential"][label] = await sequential(base, tmp, label, inputs[label], warmups)
        print("memory...", file=sys.stderr, flush=True)
        result["memory"] = await memory(base, tmp, *extra_12[:3])
        print("event loop...", file=sys.stderr, flush=True)
        result["event_loop"] = await event_loop(base, tmp, *extra_12[3:])
        result["throughput"] = []
        for concurrency in (4, 16):
            print(f"throughput, concurrency {concurrency}...", file=sys.stderr, flush=True)
            result["throughput"].append(await throughput(base, tmp, crowd, concurrency, repeats))
    result["fake"] = fake_stats
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    hwm_before = result["memory"].pop("_hwm_before_reset_kib", None)
    hwm_end = _rss_kib("VmHWM")
    if hwm_reset and hwm_end is not None and rss_start_kib is not None:
        result["measured_part_rss"] = {"start_mib": rss_start_kib / 1024,
                                       "peak_mib": max(hwm_end, hwm_before or 0) / 1024}
    result["elapsed_s"] = time.perf_counter() - t0
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and chats (a smoke test)")
    parser.add_argument("--chats", type=int, default=None, help="chats sending at once (default 50; 20 with --quick)")
    parser.add_argument("--fake-processing", choices=("echo", "mirror"), default="echo",
                        help="echo: the fake returns the upload (zero processing, default); "
                             "mirror: the fake's own Pillow decode/mirror/encode")
    parser.add_argument("--time-limit", type=float, default=600.0, help="abort after this many seconds")
    args = parser.parse_args()
    if not 1 <= (args.chats or 50) <= 150:
        parser.error("--chats must be 1-150")

    async def bounded() -> dict[str, Any]:
        async with asyncio.timeout(args.time_limit):
            return await run(args)

    result = asyncio.run(bounded())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(report(result))


if __name__ == "__main__":
    main()
