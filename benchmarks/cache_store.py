"""Benchmark: where the shared result cache should keep a 12 MP result: PostgreSQL bytea, or files on a volume.

A worker keeps each result for an hour so a resent image is answered at once by any worker. This times keeping
one result and reading it back, for a 12 MP JPEG and a 12 MP PNG, three ways on this machine:

- `postgres bytea`: the cache as it is (UsageStore.remember_result / recent_result on PostgreSQL);
- `files`: the bytes written to a file (flushed and fsynced, as a shared volume needs) and read back, the index
  row aside (a file store would still need it);
- `sqlite blob`: the single-process cache, for reference.

    python benchmarks/cache_store.py          # median of 10 each
Needs PostgreSQL at UNMARK_TEST_POSTGRES (default postgresql://127.0.0.1:5432/test).
"""

from __future__ import annotations

import asyncio
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL.Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot import images  # noqa: E402
from bot.usage import UsageStore  # noqa: E402
from tests.postgres import fresh_database  # noqa: E402

ROUNDS = 10


def photo(fmt: str) -> images.Image:
    """A 12 MP photo-like image (4000 x 3000: smooth gradients and sensor-like noise), encoded as ``fmt``."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:3000, 0:4000]
    base = np.stack([x / 16 % 256, y / 12 % 256, (x + y) / 28 % 256], axis=-1)
    pixels = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    PIL.Image.fromarray(pixels).save(out, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return images.load(out.getvalue())


async def store_times(store: UsageStore, image: images.Image) -> tuple[float, float]:
    writes, reads = [], []
    for n in range(ROUNDS):
        key = f"{image.sha256}-{n}"
        started = time.perf_counter()
        await store.remember_result(key, image)
        writes.append(time.perf_counter() - started)
        started = time.perf_counter()
        assert await store.recent_result(key) == image
        reads.append(time.perf_counter() - started)
    return statistics.median(writes), statistics.median(reads)


def file_times(folder: Path, image: images.Image) -> tuple[float, float]:
    writes, reads = [], []
    for n in range(ROUNDS):
        path = folder / f"{image.sha256}-{n}"
        started = time.perf_counter()
        with path.open("wb") as out:
            out.write(image.data)
            out.flush()
            os.fsync(out.fileno())
        writes.append(time.perf_counter() - started)
        started = time.perf_counter()
        assert path.read_bytes() == image.data
        reads.append(time.perf_counter() - started)
    return statistics.median(writes), statistics.median(reads)


async def main() -> None:
    print(f"median of {ROUNDS}, milliseconds to keep one result / to read it back, on {os.cpu_count()} cores")
    print("| result | size | postgres bytea | files (fsync) | sqlite blob |")
    print("|---|---|---|---|---|")
    for fmt in ("JPEG", "PNG"):
        image = photo(fmt)
        with tempfile.TemporaryDirectory() as folder, fresh_database() as url:
            async with UsageStore.open(url) as store:
                pg = await store_times(store, image)
            files = file_times(Path(folder), image)
            async with UsageStore.open(Path(folder) / "cache.sqlite3") as store:
                lite = await store_times(store, image)
        cells = " | ".join(f"{w * 1000:.0f} / {r * 1000:.0f}" for w, r in (pg, files, lite))
        print(f"| 12 MP {fmt} | {len(image.data) / 2**20:.1f} MB | {cells} |")


if __name__ == "__main__":
    asyncio.run(main())
