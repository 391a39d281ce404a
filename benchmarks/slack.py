#!/usr/bin/env python
"""Benchmark: how fast the Slack adapter acks, and how long an image takes from event to upload.

Run from the repository root (results go to benchmarks/results/slack.json, git-ignored)::

    python benchmarks/slack.py            # about 20 s on 2 cores
    python benchmarks/slack.py --quick    # a smoke test

The bot runs in HTTP mode exactly as in production (``open_service`` + ``open_slack`` + ``slack_routes`` served
by uvicorn on loopback), with real Bolt and slack_sdk. FakeSlack (tests/fakes/slack.py) runs in a *separate
process*, so its work does not count as the bot's; the sender playing Slack (signed POSTs with httpx) shares the
bot's process, so every figure includes its client overhead and is an upper bound.

- Ack latency with a slow remover: the remover never finishes until the end, so every job is still in flight
  (status lines, queue notices going out to the fake) while more events arrive. Time from sending a signed
  ``message.im`` event with an image to the HTTP answer: first sequentially, then in a burst sent at once.
- Event to upload with an instant remover (returns its input): time from sending the event to the fake
  receiving ``files.completeUploadExternal`` (both clocks are CLOCK_MONOTONIC, shared by the processes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from pydantic import SecretStr  # noqa: E402
from starlette.applications import Starlette  # noqa: E402

from adapters.slack import EVENTS_PATH, open_slack, slack_routes  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.core import open_service  # noqa: E402
from bot.images import Image  # noqa: E402
from tests.fakes.servers import serve  # noqa: E402
from tests.fakes.slack import BOT_TOKEN, SIGNING_SECRET, FakeSlack, signed_headers  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "slack.json"
ACK_DEADLINE = 3.0


class SlowRemover:
    """Never finishes until released: the slowest remover there is."""

    name = "slow"

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def remove(self, image: Image, progress=None, *, on_task=None, source_url=None) -> Image:  # type: ignore[no-untyped-def]
        if progress is not None:
            await progress(5)
        await self.release.wait()
        return image


class InstantRemover:
    """Gives the image straight back."""

    name = "instant"

    async def remove(self, image: Image, progress=None, *, on_task=None, source_url=None) -> Image:  # type: ignore[no-untyped-def]
        return image


# --- the fake, in its own process --------------------------------------------------------------------------


def _fake_main(connection: Any, files: int) -> None:
    asyncio.run(_fake_serve(connection, files))


async def _fake_serve(connection: Any, count: int) -> None:
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route

    from tests.conftest import jpeg

    fake = FakeSlack()

    async def uploaded(request: Any) -> JSONResponse:
        """Long-poll: the monotonic time at which upload number n arrived."""
        n = int(request.path_params["n"])
        await fake.wait_for(lambda: len(fake.uploads) >= n, timeout=60)
        return JSONResponse({"at": fake.uploads[n - 1].at})

    app = Starlette(routes=[Route("/bench/uploads/{n}", uploaded), Mount("/", app=fake.app)])
    async with serve(app) as url:
        fake.url = url
        shared = [fake.add_file(jpeg(640, 480, seed=i), f"photo{i}.jpg") for i in range(count)]
        connection.send((url, shared))
        await asyncio.to_thread(connection.recv)  # until the parent says stop


@contextlib.contextmanager
def fake_slack(files: int):  # type: ignore[no-untyped-def]
    """Start FakeSlack with ``files`` distinct images shared; yield its URL and their file objects."""
    parent, child = mp.get_context("spawn").Pipe()
    process = mp.get_context("spawn").Process(target=_fake_main, args=(child, files), daemon=True)
    process.start()
    try:
        if not parent.poll(120):
            raise RuntimeError("FakeSlack did not start")
        yield parent.recv()
    finally:
        with contextlib.suppress(OSError):
            parent.send("stop")
        process.join(10)
        if process.is_alive():
            process.kill()


# --- measurements ---------------------------------------------------------------------------------------


async def deliver(http: httpx.AsyncClient, fake: FakeSlack, channel: str, file: dict[str, Any]) -> float:
    """Send one signed DM event with one image; seconds until Slack would have had its ack."""
    body = json.dumps(fake.event_callback(fake.message_event(channel=channel, files=[file]))).encode()
    started = time.perf_counter()
    response = await http.post(EVENTS_PATH, content=body, headers=signed_headers(body))
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed


def summary(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return {"n": len(ms), "median_ms": statistics.median(ms), "p99_ms": p99, "max_ms": ms[-1]}


async def bench(url: str, files: list[dict[str, Any]], sequential: int, burst: int, uploads: int) -> dict[str, Any]:
    fake = FakeSlack(url=url)  # builds payloads with the real fake's URLs; its own server is not used
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(_env_file=None, database=Path(folder) / "bench.sqlite3", daily_limit=0,
                            slack_bot_token=SecretStr(BOT_TOKEN), slack_signing_secret=SecretStr(SIGNING_SECRET),
                            slack_api_url=f"{url}/api/")
        results: dict[str, Any] = {}
        slow = SlowRemover()
        async with (open_service(settings, remover=slow) as service, open_slack(service, settings) as bot,
                    serve(Starlette(routes=slack_routes(bot))) as app_url,
                    httpx.AsyncClient(base_url=app_url, timeout=30) as http):
            await deliver(http, fake, "D0WARMUP", files[0])  # auth.test and connection set-up
            one_by_one = [await deliver(http, fake, f"D{i % 20:04d}", files[1 + i]) for i in range(sequential)]
            at_once = await asyncio.gather(*(deliver(http, fake, f"C{i:04d}", files[1 + sequential + i])
                                             for i in range(burst)))
            results["ack_slow_remover_sequential"] = summary(one_by_one)
            results["ack_slow_remover_burst"] = summary(list(at_once))
            results["jobs_in_flight_during_acks"] = 1 + sequential + burst
            slow.release.set()
            await bot.join(120)

        first = 1 + sequential + burst
        async with (open_service(settings, remover=InstantRemover()) as service, open_slack(service, settings) as bot,
                    serve(Starlette(routes=slack_routes(bot))) as app_url,
                    httpx.AsyncClient(base_url=app_url, timeout=30) as http,
                    httpx.AsyncClient(base_url=url, timeout=70) as control):
            done = first  # every job of the first part was uploaded once the remover let go
            await deliver(http, fake, "D0WARMUP2", files[first])
            await control.get(f"/bench/uploads/{done + 1}")
            done += 1
            acks, to_upload = [], []
            for i in range(uploads):
                sent = time.monotonic()
                acks.append(await deliver(http, fake, f"D9{i:03d}", files[first + 1 + i]))
                done += 1
                at = (await control.get(f"/bench/uploads/{done}")).json()["at"]
                to_upload.append(at - sent)
            await bot.join(60)
        results["ack_instant_remover"] = summary(acks)
        results["event_to_upload_instant_remover"] = summary(to_upload)
        return results


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, for a smoke test")
    args = parser.parse_args()
    sequential, burst, uploads = (20, 10, 10) if args.quick else (200, 50, 50)
    with fake_slack(2 + sequential + burst + uploads + 1) as (url, files):
        results = asyncio.run(bench(url, files, sequential, burst, uploads))
    report = {"machine": machine(), "results": results}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    host = report["machine"]
    print(f"machine: {host['cpu']}, {host['cores']} cores, Python {host['python']}")
    for name, row in results.items():
        if isinstance(row, dict):
            print(f"{name:36s} n={row['n']:<4d} median {row['median_ms']:7.1f} ms   p99 {row['p99_ms']:7.1f} ms"
                  f"   max {row['max_ms']:7.1f} ms")
    slowest = max(results["ack_slow_remover_sequential"]["max_ms"], results["ack_slow_remover_burst"]["max_ms"])
    print(f"every ack within Slack's {ACK_DEADLINE:.0f} s: {'yes' if slowest < ACK_DEADLINE * 1000 else 'NO'}")
    print(f"written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
