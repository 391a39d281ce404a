#!/usr/bin/env python
"""Benchmark: `unmark serve` under load — N tasks from C concurrent PicWish clients, on loopback only.

Run from the repository root, in the project's virtualenv (nothing is installed or changed; the numbers
go to stdout and, with the raw samples, to benchmarks/results/server_load.json)::

    python benchmarks/server_load.py                 # 200 tasks from 20 clients, as issue 5 asks
    python benchmarks/server_load.py --quick         # 20 tasks from 4 clients, a smoke test

What it does:

- starts ``python -m bot serve --port 0`` as a separate process on 127.0.0.1 (a temporary data folder,
  one API key per client, the default 2 requests/s per key, ``--workers`` engine processes);
- makes every task's image distinct (a 640x480 photo-like JPEG with a text watermark, seeded per task),
  all before the clock starts;
- runs C clients at once, each the project's own ``PicWishClient`` (sync=1, polling if needed, its own
  2 requests/s pacing) over real HTTP, cleaning its share of the images one after another;
- latency of a task = from the create request to the result's bytes downloaded and checked (format and
  size); throughput = tasks delivered / wall time of the whole run;
- peak RSS: the server's process tree (the API process and its workers) sampled every 50 ms from
  /proc, summed per sample; and each process's own high-water mark (VmHWM) read just before the stop.

Bounded in count (``--tasks``) and time (``--timeout`` for the whole run, then everything is stopped).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot import images  # noqa: E402
from bot.errors import UnmarkError  # noqa: E402
from bot.picwish import PicWishClient  # noqa: E402
from tests.watermarks import add_text_watermark, encode, photo  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "server_load.json"
START_TIMEOUT = 120.0
STOP_TIMEOUT = 20.0
SAMPLE_EVERY = 0.05
LISTENING = re.compile(r"serving the PicWish-compatible API on (http://\S+)")


@dataclass
class Outcome:
    """One task as a client saw it."""

    client: int
    seconds: float
    delivered: bool
    error: str | None = None


@dataclass
class Memory:
    """RSS of the server's process tree: the largest summed sample, and each process's high-water mark."""

    peak_tree_bytes: int = 0
    samples: int = 0
    hwm_bytes: dict[str, int] = field(default_factory=dict)


def make_images(count: int, width: int, height: int) -> list[images.Image]:
    """Distinct watermarked JPEGs, so no cache or dedupe anywhere could answer for the engine."""
    made = []
    for seed in range(count):
        marked, _ = add_text_watermark(photo(width, height, seed=seed), text=f"SAMPLE {seed}", seed=seed)
        made.append(images.load(encode(marked, "jpeg")))
    return made


@contextlib.contextmanager
def serve(keys: list[str], workers: int, folder: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`python -m bot serve` on 127.0.0.1, port 0; yields its URL and process, and stops it with SIGINT."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PICWISH_", "UNMARK_"))}
    env.update(UNMARK_API_KEYS=",".join(keys), UNMARK_WORKERS=str(workers), UNMARK_DATA_DIR=str(folder / "data"),
               UNMARK_LOG_LEVEL="INFO")
    log = folder / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", "--port", "0"],
                                   cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not (found := LISTENING.search(log.read_text())):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"unmark serve did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield found.group(1), process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def tree(pid: int) -> list[int]:
    """The process and all its descendants (Linux /proc)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                queue.extend(int(child) for child in (task / "children").read_text().split())
    return found


def role(pid: int, server: int) -> str:
    """What a process of the server's tree is: the API process, an engine worker, or multiprocessing's helper."""
    if pid == server:
        return "server"
    with contextlib.suppress(OSError):
        if b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return f"resource tracker {pid}"
    return f"worker {pid}"


def status_kib(pid: int, field_name: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


async def sample_memory(pid: int, memory: Memory) -> None:
    """Sum the RSS of the server's tree every SAMPLE_EVERY seconds until cancelled."""
    while True:
        total = sum(status_kib(p, "VmRSS") for p in tree(pid)) * 1024
        memory.peak_tree_bytes = max(memory.peak_tree_bytes, total)
        memory.samples += 1
        await asyncio.sleep(SAMPLE_EVERY)


async def client_loop(number: int, key: str, url: str, work: list[images.Image], outcomes: list[Outcome]) -> None:
    """One client: the project's PicWishClient, cleaning its images one after another."""
    async with PicWishClient(key, base_url=url, deadline=300.0) as client:
        for image in work:
            started = time.perf_counter()
            try:
                result = await client.remove(image)
                delivered = (result.format, result.width, result.height) == (image.format, image.width, image.height)
                outcomes.append(Outcome(number, time.perf_counter() - started, delivered,
                                        None if delivered else "wrong result"))
            except UnmarkError as error:
                outcomes.append(Outcome(number, time.perf_counter() - started, False, error.code))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))]


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = 0
    with contextlib.suppress(OSError, ValueError):
        memory = int(Path("/proc/meminfo").read_text().split()[1]) * 1024  # MemTotal, in KiB
    versions = {}
    for package in ("onnxruntime", "opencv-python", "numpy", "uvicorn", "starlette", "httpx"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return {"cpu": model, "cores": os.cpu_count(), "memory_bytes": memory, "python": platform.python_version(),
            "os": platform.platform(), "packages": versions}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = make_images(args.tasks, *args.size)
    keys = [f"bench-key-{i:02d}" for i in range(args.clients)]
    shares = [work[i::args.clients] for i in range(args.clients)]
    outcomes: list[Outcome] = []
    memory = Memory()
    with tempfile.TemporaryDirectory(prefix="unmark-load-") as folder, \
            serve(keys, args.workers, Path(folder)) as (url, process):
        sampler = asyncio.create_task(sample_memory(process.pid, memory))
        started = time.perf_counter()
        try:
            async with asyncio.timeout(args.timeout):
                await asyncio.gather(*(client_loop(i, keys[i], url, shares[i], outcomes)
                                       for i in range(args.clients)))
        except TimeoutError:
            print(f"stopped at the {args.timeout:.0f} s limit", file=sys.stderr)
        wall = time.perf_counter() - started
        sampler.cancel()
        pids = tree(process.pid)
        memory.hwm_bytes = {role(p, process.pid): status_kib(p, "VmHWM") * 1024 for p in pids}
        log = (Path(folder) / "server.log").read_text()
    latencies = [o.seconds for o in outcomes if o.delivered]
    delivered = sum(o.delivered for o in outcomes)
    return {
        "machine": machine(),
        "settings": {"tasks": args.tasks, "clients": args.clients, "workers": args.workers,
                     "image": f"{args.size[0]}x{args.size[1]} JPEG", "qps_per_key": 2, "timeout_s": args.timeout},
        "delivered": delivered,
        "failed": dict(Counter(o.error for o in outcomes if not o.delivered)),
        "wall_s": wall,
        "throughput_per_s": delivered / wall if wall else 0.0,
        "latency_s": {
            "p50": statistics.median(latencies) if latencies else None,
            "p95": percentile(latencies, 0.95) if latencies else None,
            "max": max(latencies) if latencies else None,
            "mean": statistics.fmean(latencies) if latencies else None,
        },
        "memory": asdict(memory),
        "server_errors_logged": log.count("Traceback"),
        "samples_s": [o.seconds for o in outcomes],
    }


def report(result: dict[str, Any]) -> str:
    m, s, lat, mem = result["machine"], result["settings"], result["latency_s"], result["memory"]
    mib = 1024 * 1024
    workers = sorted(v for k, v in mem["hwm_bytes"].items() if k.startswith("worker"))
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_bytes'] / 2**30:.1f} GiB RAM; Python {m['python']}; "
        f"onnxruntime {m['packages'].get('onnxruntime', '?')}",
        f"load: {s['tasks']} tasks ({s['image']}, each distinct) from {s['clients']} concurrent PicWishClients "
        f"(sync=1, {s['qps_per_key']} req/s per key), {s['workers']} engine worker(s), loopback",
        f"delivered: {result['delivered']}/{s['tasks']}" + (f"  failures: {result['failed']}" if result["failed"]
                                                             else "  (every result checked: format and size)"),
        f"wall time: {result['wall_s']:.1f} s   throughput: {result['throughput_per_s']:.2f} tasks/s",
        "latency per task (create → result downloaded): "
        + (f"p50 {lat['p50']:.2f} s, p95 {lat['p95']:.2f} s, max {lat['max']:.2f} s" if lat["p50"] else "n/a"),
        f"peak RSS, whole server tree (sampled every {SAMPLE_EVERY * 1000:.0f} ms): "
        f"{mem['peak_tree_bytes'] / mib:.0f} MiB"
        f"; high-water marks: API process {mem['hwm_bytes'].get('server', 0) / mib:.0f} MiB, workers "
        + ", ".join(f"{w / mib:.0f}" for w in workers) + " MiB",
        f"server tracebacks logged: {result['server_errors_logged']}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="engine processes (default: cores)")
    parser.add_argument("--size", type=lambda v: tuple(int(x) for x in v.split("x")), default=(640, 480),
                        help="image size, WIDTHxHEIGHT (default 640x480)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for the whole run")
    parser.add_argument("--quick", action="store_true", help="20 tasks from 4 clients")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.clients = 20, 4
    result = asyncio.run(run(args))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(report(result))
    sys.exit(0 if result["delivered"] == args.tasks else 1)


if __name__ == "__main__":
    main()
