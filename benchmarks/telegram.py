#!/usr/bin/env python
"""Benchmark: how long a Telegram photo takes from its update arriving to the cleaned file being uploaded.

Run from the repository root (nothing is installed or changed; results go to benchmarks/results/telegram.json)::

    python benchmarks/telegram.py             # 30 sequential photos, then bursts of 20
    python benchmarks/telegram.py --quick     # 10 photos, for a smoke test

What it measures, with the real adapter (``adapters.telegram.run``: PTB long polling, AIORateLimiter, the
core, SQLite in a temporary folder) against the fake Bot API (tests/fakes/telegram.py) on loopback:

- Latency: a 1 MP JPEG photo (1000x1000, a different one each time, so the one-hour cache never answers)
  is put in the fake's update queue; the clock stops when the fake has read the whole ``sendDocument``
  body. The remover is instant (it returns the image as is), so the figure is the bot's own cost plus
  Telegram-side round trips on loopback: getUpdates, getFile, the download, the status message, the upload.
  Photos go one at a time, each after the previous one's status message is gone.
- Baseline, same run: the least any python-telegram-bot bot must do for the same photos, with no core (no
  validation, quota, SQLite, status message): long polling, getFile, the download and one sendDocument.
- Burst: 20 such photos at once in one private chat, unlimited and then with the fake's flood control at
  5 messages per second per chat (429 with retry_after=1, as in the tests): total time, 429s met.

The fake runs in this process and event loop, so its own work (parsing each multipart upload, serving each
download) is inside the figures: they are an upper bound of the bot's cost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on sys.path, and this file would shadow the `telegram` package.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import PIL.Image  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from adapters import telegram as adapter  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.core import open_service  # noqa: E402
from bot.images import Image  # noqa: E402
from tests.fakes.telegram import TOKEN, FakeBotAPI  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "telegram.json"
SIDE = 1000  # 1 MP
QUALITY = 90
TIMEOUT = 60.0


class InstantRemover:
    """A remover that takes no time: what is left is the bot's own cost."""

    name = "instant"

    async def remove(self, image: Image, progress=None, *, on_task=None, source_url=None) -> Image:  # type: ignore[no-untyped-def]
        if progress is not None:
            await progress(100)
        return image


def photo(seed: int) -> bytes:
    """A photo-like 1 MP JPEG: a gradient with noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIDE, 0:SIDE]
    base = np.stack([x * 255 / SIDE, y * 255 / SIDE, (x + y) * 127 / SIDE], -1)
    pixels = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    PIL.Image.fromarray(pixels).save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


async def sequential(tg: FakeBotAPI, count: int) -> list[float]:
    """Seconds from update to uploaded result, one photo at a time."""
    chat = tg.private_chat(tg.person("Sequential"))
    latencies = []
    for i in range(count):
        data = photo(seed=i)
        before = len(tg.calls_to("sendDocument", chat=chat))
        tg.send_photo(chat, data, sender={"id": chat["id"], "is_bot": False, "first_name": "Sequential"})
        queued = time.monotonic()  # the update is in the queue now (making the thumbnail took the fake a while)
        await tg.wait_for(lambda: len(tg.calls_to("sendDocument", chat=chat)) > before
                          and tg.calls_to("sendDocument", chat=chat)[-1].status == 200, timeout=TIMEOUT)
        latencies.append(tg.calls_to("sendDocument", chat=chat)[-1].done_at - queued)
        await tg.wait_for(lambda: len(tg.sent(chat)) == i + 1, timeout=TIMEOUT)  # the status is gone too
    return latencies


async def baseline(tg: FakeBotAPI, url: str, count: int) -> list[float]:
    """The same photos through a bare PTB echo bot: getUpdates, getFile, download, sendDocument."""
    from telegram import Update
    from telegram.ext import Application, ContextTypes, MessageHandler, filters

    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None
        file = await update.message.photo[-1].get_file()
        data = bytes(await file.download_as_bytearray())
        await update.message.reply_document(data, filename="photo-clean.jpg", disable_content_type_detection=True)

    app = Application.builder().token(TOKEN).base_url(f"{url}/bot").base_file_url(f"{url}/file/bot").build()
    app.add_handler(MessageHandler(filters.PHOTO, echo))
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0)
        try:
            await sequential(tg, 3)  # warm-up
            return await sequential(tg, count)
        finally:
            await app.updater.stop()
            await app.stop()


async def burst(tg: FakeBotAPI, name: str, count: int, seed: int) -> dict[str, Any]:
    """``count`` photos at once in one chat: how long until all are answered, and the 429s met on the way."""
    person = tg.person(name)
    chat = tg.private_chat(person)
    photos = [photo(seed=seed + i) for i in range(count)]
    flooded_before = sum(c.status == 429 for c in tg.calls)
    started = time.monotonic()
    for data in photos:
        tg.send_photo(chat, data, sender=person)
    await tg.wait_for(lambda: len(tg.documents(chat)) == count and len(tg.sent(chat)) == count, timeout=TIMEOUT * 2)
    uploads = [c for c in tg.calls_to("sendDocument", chat=chat) if c.status == 200]
    return {
        "photos": count,
        "seconds_to_last_upload": round(uploads[-1].done_at - started, 3),
        "seconds_to_first_upload": round(uploads[0].done_at - started, 3),
        "in_order": [m.reply_to for m in tg.documents(chat)] == sorted(m.reply_to or 0 for m in tg.documents(chat)),
        "429s_retried": sum(c.status == 429 for c in tg.calls) - flooded_before,
        "status_messages": len(tg.calls_to("sendMessage", chat=chat)),
        "status_edits": len(tg.calls_to("editMessageText", chat=chat)),
    }


async def main(count: int) -> dict[str, Any]:
    tg = FakeBotAPI()
    with tempfile.TemporaryDirectory() as folder:
        async with tg.running() as url:
            bare = await baseline(tg, url, count)
            settings = Settings(database=Path(folder) / "bench.sqlite3", telegram_bot_token=SecretStr(TOKEN),
                                telegram_api_url=url, daily_limit=0, _env_file=None)
            async with open_service(settings, remover=InstantRemover()) as service:
                bot = asyncio.create_task(adapter.run(service, settings))
                await tg.wait_for(lambda: tg.calls_to("getUpdates"), timeout=TIMEOUT)
                try:
                    await sequential(tg, 3)  # warm-up: imports, connection pool, SQLite pages
                    latencies = await sequential(tg, count)
                    unlimited = await burst(tg, "Burst", 20, seed=10_000)
                    tg.flood_limit(per_chat=5, seconds=1.0, retry_after=1)
                    flooded = await burst(tg, "Flooded", 20, seed=20_000)
                finally:
                    bot.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await bot
    def summary(seconds: list[float]) -> dict[str, float]:
        ms = sorted(1000 * s for s in seconds)
        return {"photos": len(ms), "median": round(statistics.median(ms), 1), "min": round(ms[0], 1),
                "p90": round(ms[int(0.9 * (len(ms) - 1))], 1), "max": round(ms[-1], 1)}

    return {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                    "processor": platform.processor() or platform.machine(),
                    "python-telegram-bot": metadata.version("python-telegram-bot")},
        "photo": {"width": SIDE, "height": SIDE, "jpeg_bytes": len(photo(0)), "remover": "instant"},
        "update_to_upload_ms": summary(latencies),
        "baseline_bare_ptb_echo_ms": summary(bare),
        "burst_unlimited": unlimited,
        "burst_flood_limited_5_per_s": flooded,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 photos instead of 30")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results = asyncio.run(main(10 if args.quick else 30))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
