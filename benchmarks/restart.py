"""Benchmark: how long after a restart the person gets the image a crash cut off.

Each round starts ``unmark run`` (Telegram long polling against the Bot API fake, PicWish's fake behind it, both
on loopback in this process), sends a 1 MP photo, kills the bot with SIGKILL as soon as PicWish's task id is in
the jobs table (the bot is polling the task), starts it again on the same database and times, from the second
spawn, the moment the cleaned image reaches the chat. Beside it, in the same round and on the same machine:

- cold start: from spawn to the first getUpdates, the floor any restart pays (imports, getMe, the command menu);
- warm: a new photo sent to the running bot, from the update to the cleaned image (no restart), with the same
  PicWish script (it answers "working", and done at the poll a second later).

    python benchmarks/restart.py            # 10 rounds; medians and the machine
    python benchmarks/restart.py --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import KEY, jpeg  # noqa: E402
from tests.fakes.picwish import FakePicWish  # noqa: E402
from tests.fakes.servers import serve  # noqa: E402
from tests.fakes.telegram import TOKEN, FakeBotAPI  # noqa: E402
from tests.processes import unmark  # noqa: E402
from tests.test_restarts import rows  # noqa: E402

TIMEOUT = 60.0


async def one_round(folder: Path) -> dict[str, float]:
    tg, picwish = FakeBotAPI(), FakePicWish(keys={KEY})
    picwish.sync_returns_early = True
    for _ in range(2):  # the cut-off image, then the warm one: the sync answer says "working", the next poll done
        picwish.script(2, 1)
    chat = tg.private_chat()
    database = folder / "unmark.sqlite3"
    async with tg.running() as api_url, serve(picwish.app) as picwish_url:
        env = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": api_url, "PICWISH_API_KEY": KEY,
               "PICWISH_API_URL": picwish_url, "UNMARK_DATABASE": str(database), "UNMARK_LOG_LEVEL": "WARNING"}
        spawned = time.monotonic()
        async with unmark("run", env=env) as bot:
            await tg.wait_for(lambda: tg.calls_to("getUpdates"), timeout=TIMEOUT)
            cold = time.monotonic() - spawned
            tg.send_photo(chat, jpeg(1152, 864))  # about 1 MP
            await tg.wait_for(lambda: database.exists() and rows(database) and rows(database)[0]["task_id"],
                              timeout=TIMEOUT)
            await bot.kill()
        assert not tg.documents(chat), "the bot answered before it was killed"

        spawned = time.monotonic()
        async with unmark("run", env=env) as bot:
            await tg.wait_for(lambda: tg.documents(chat), timeout=TIMEOUT)
            resumed = time.monotonic() - spawned
            sent = time.monotonic()
            tg.send_photo(chat, jpeg(1152, 864, seed=1))
            await tg.wait_for(lambda: len(tg.documents(chat)) == 2, timeout=TIMEOUT)
            warm = time.monotonic() - sent
            await bot.stop()
    assert len(picwish.tasks) == 2  # the cut-off image was polled, not sent to PicWish again
    return {"restart_to_resumed_result_s": resumed, "cold_start_s": cold, "warm_update_to_result_s": warm}


async def main(rounds: int) -> None:
    results = []
    for n in range(rounds):
        with tempfile.TemporaryDirectory() as folder:
            results.append(await one_round(Path(folder)))
        print(f"round {n + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in results[-1].items()), file=sys.stderr)
    print(f"{rounds} rounds on {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; median (min-max), seconds:")
    for key in results[0]:
        values = [r[key] for r in results]
        print(f"  {key:30} {statistics.median(values):6.2f}  ({min(values):.2f}-{max(values):.2f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    asyncio.run(main(parser.parse_args().rounds))
