"""Benchmark: how the bot scales past one process, beside one `unmark run` on SQLite, in the same run.

Every setup gets the same burst: 20 Telegram chats send 4 photos each (80 photos of 640x480, all at once) to the
Bot API fake; PicWish's fake takes 0.5 s a task (each create is held half a second) and allows the key 20
requests/s (PICWISH_QPS=20). Each setup runs as real processes on this machine:

- `sqlite`: one `unmark run` on a SQLite file: it receives and cleans;
- `postgres-N`: one `unmark run --no-work` receiving into PostgreSQL's queue, and N `unmark worker`s cleaning.

Reported per setup: images per second (80 / from the first photo sent to the last answer), and the p50 and p95 of
one photo's time from being sent to its cleaned file reaching the chat. Every process runs UNMARK_CONCURRENCY=4.

    python benchmarks/scale.py                     # sqlite, then 1, 2 and 4 workers
    python benchmarks/scale.py --workers 1 2 --rounds 3
Needs PostgreSQL at UNMARK_TEST_POSTGRES (default postgresql://127.0.0.1:5432/test); each setup gets a fresh
database there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import KEY, jpeg  # noqa: E402
from tests.fakes.picwish import TASKS_PATH, FakePicWish  # noqa: E402
from tests.fakes.servers import serve  # noqa: E402
from tests.fakes.telegram import TOKEN, FakeBotAPI  # noqa: E402
from tests.postgres import fresh_database  # noqa: E402
from tests.processes import Unmark, unmark  # noqa: E402

CHATS, PHOTOS = 20, 4
TASK_SECONDS, KEY_QPS = 0.5, 20
TIMEOUT = 300.0


@contextlib.asynccontextmanager
async def processes(commands: list[list[str]], env: dict[str, str]) -> AsyncIterator[list[Unmark]]:
    async with contextlib.AsyncExitStack() as stack:
        started = [await stack.enter_async_context(unmark(*command, env=env)) for command in commands]
        try:
            yield started
        finally:
            for process in started:
                if process.process.returncode is None:
                    await process.stop()


async def one_setup(name: str, workers: int, folder: Path) -> dict[str, float]:
    tg, picwish = FakeBotAPI(), FakePicWish(keys={KEY})
    picwish.qps = KEY_QPS
    picwish.hang("POST", TASKS_PATH, TASK_SECONDS, times=10**6)
    chats = [tg.private_chat(tg.person(f"Person{n}")) for n in range(CHATS)]
    photos = [jpeg(640, 480, seed=n) for n in range(CHATS * PHOTOS)]  # made before the clock starts
    async with contextlib.AsyncExitStack() as databases, tg.running() as api_url, serve(picwish.app) as picwish_url:
        env = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": api_url, "PICWISH_API_KEY": KEY,
               "PICWISH_API_URL": picwish_url, "PICWISH_QPS": str(KEY_QPS), "UNMARK_LOG_LEVEL": "WARNING",
               "UNMARK_CONCURRENCY": "4"}
        if workers == 0:
            env["UNMARK_DATABASE"] = str(folder / "unmark.sqlite3")
            commands = [["run"]]
        else:
            env["UNMARK_DATABASE"] = databases.enter_context(fresh_database())
            commands = [["run", "--no-work"]] + [["worker"]] * workers
        async with processes(commands, env):
            await tg.wait_for(lambda: tg.calls_to("getUpdates"), timeout=60, what="the receiver")
            await asyncio.sleep(3 if workers else 0.5)  # the workers' start-up is not part of the burst
            sent_at: dict[tuple[int, int], float] = {}
            start = time.monotonic()
            for i, photo in enumerate(photos):
                chat = chats[i % CHATS]
                message = tg.send_photo(chat, photo)
                sent_at[(chat["id"], message["message_id"])] = time.monotonic()
            await tg.wait_for(lambda: sum(len(tg.documents(chat)) for chat in chats) >= len(photos),
                              timeout=TIMEOUT, what=f"{name}: every answer")
    answered = {(m.chat_id, m.reply_to): m.sent_at for chat in chats for m in tg.documents(chat)}
    latencies = sorted(answered[key] - sent for key, sent in sent_at.items())
    refused = sum(r.status == 429 for r in picwish.requests)
    return {
        "images_per_s": len(photos) / (max(answered.values()) - start),
        "p50_s": statistics.median(latencies),
        "p95_s": latencies[int(0.95 * (len(latencies) - 1))],
        "picwish_429s": refused,
    }


async def main(worker_counts: list[int], rounds: int) -> None:
    setups = [("sqlite (one unmark run)", 0)] + [(f"postgres, {n} worker{'s' * (n > 1)}", n) for n in worker_counts]
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in setups}
    for n in range(rounds):
        for name, workers in setups:
            with tempfile.TemporaryDirectory() as folder:
                result = await one_setup(name, workers, Path(folder))
            results[name].append(result)
            print(f"round {n + 1}, {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in result.items()), file=sys.stderr)
    print(f"{CHATS * PHOTOS} photos from {CHATS} chats, PicWish fake {TASK_SECONDS} s a task at {KEY_QPS} req/s; "
          f"median of {rounds} round(s) on {cpu()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| setup | images/s | p50 s | p95 s | PicWish 429s |")
    print("|---|---|---|---|---|")
    for name, rows in results.items():
        med = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
        print(f"| {name} | {med['images_per_s']:.1f} | {med['p50_s']:.2f} | {med['p95_s']:.2f} "
              f"| {int(med['picwish_429s'])} |")


def cpu() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rounds", type=int, default=1)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.workers, arguments.rounds))
