"""Shared fixtures: clean environment, settings on a temporary database, the PicWish fake and client."""

from __future__ import annotations

import asyncio
import functools
import io
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import PIL.Image
import pytest

from bot import images
from bot.config import Settings
from bot.images import Image
from bot.picwish import PicWishClient
from bot.removers import LocalRemover

if TYPE_CHECKING:
    from bot.engine import MarkEngine
    from bot.server import WorkerPool
from tests.fakes.picwish import FakePicWish

KEY = "test-key"
ENV_PREFIXES = ("PICWISH_", "TELEGRAM_", "SLACK_", "UNMARK_")
TERMINAL_LANGUAGE = ("LC_ALL", "LC_MESSAGES", "LANG")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """A developer's own tokens, .env or terminal language never leak into a test (the terminal is C.UTF-8)."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIXES) or name == "PORT" or name in TERMINAL_LANGUAGE:
            monkeypatch.delenv(name)
    monkeypatch.setenv("LANG", "C.UTF-8")  # so a child process still writes UTF-8 (the sentences have – and …)
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database=tmp_path / "unmark.sqlite3", _env_file=None)


@pytest.fixture
def fake() -> FakePicWish:
    return FakePicWish(keys={KEY})


@pytest.fixture
async def client(fake: FakePicWish) -> AsyncIterator[PicWishClient]:
    """The real client, talking to the fake in-process; fast polling, quick back-off, no QPS limits."""
    fake.qps = None
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app))
    async with http:
        yield PicWishClient(KEY, base_url="http://picwish.test", http=http, poll_interval=0.01,
                            backoff=0.01, requests_per_second=None)


@functools.cache
def _mark_engine() -> MarkEngine:
    from bot.engine import MarkEngine

    return MarkEngine.load()


@pytest.fixture
async def local_engine() -> LocalRemover:
    """The bundled engine as the bot runs it without a PicWish key (loaded once per test session)."""
    return LocalRemover(await asyncio.to_thread(_mark_engine))


def marked(width: int = 640, height: int = 480, *, seed: int = 3, fmt: str = "png") -> bytes:
    """A photo with a white "SAMPLE" at 60 % opacity across it (a mark the bundled engine finds), as PNG or JPEG."""
    from tests.watermarks import add_text_watermark, encode, photo

    rgb = add_text_watermark(photo(width, height, seed=seed), text="SAMPLE", alpha=0.6, seed=seed)[0]
    return encode(rgb, fmt)


def mirror(image: Image) -> Image:
    """A cleaned image as a stand-in remover returns it: ``image`` flipped, so not the very same bytes (a remover
    that hands back the input itself is saying it found no watermark)."""
    picture = PIL.Image.open(io.BytesIO(image.data))
    out = io.BytesIO()
    picture.transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT).save(out, picture.format)
    return images.load(out.getvalue())


def jpeg(width: int = 640, height: int = 480, *, seed: int = 0, quality: int = 90, **save: object) -> bytes:
    """A photo-like JPEG of the given size (smooth gradient plus a little noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / max(width, 1), y * 255 / max(height, 1), (x + y) * 127 / max(width + height, 1)], -1)
    pixels = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    PIL.Image.fromarray(pixels).save(out, "JPEG", quality=quality, **save)
    return out.getvalue()


def encode(picture: PIL.Image.Image, fmt: str, **save: object) -> bytes:
    out = io.BytesIO()
    picture.save(out, fmt, **save)
    return out.getvalue()


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    """One engine worker for a module's servers (started once: loading the engine takes a second)."""
    from bot.server import WorkerPool

    workers = WorkerPool.start(1, threads=1)
    try:
        yield workers
    finally:
        workers.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """An empty PostgreSQL database for this test (skipped, with the reason, where no server answers)."""
    from tests.postgres import fresh_database

    with fresh_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test on both databases: the SQLite file a single process uses, and shared PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "u.sqlite3")
    return request.getfixturevalue("postgres_url")
