"""The Remover seam: PicWish's API or the local engine, chosen by whether PICWISH_API_KEY is set."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from bot import images
from bot.config import Settings
from bot.images import Image
from bot.picwish import Limiter, PicWishClient

if TYPE_CHECKING:  # onnxruntime loads only when the local engine is actually used
    from bot.engine import MarkEngine

Progress = Callable[[int], Awaitable[None]]
TaskStarted = Callable[[str], Awaitable[None]]


class Remover(Protocol):
    """Takes an image with a watermark, gives back the same image without it: or ``image`` itself, the very
    same bytes, when it found no watermark and changed nothing (the core then says so instead of sending it)."""

    name: str

    async def remove(self, image: Image, progress: Progress | None = None, *,
                     on_task: TaskStarted | None = None, source_url: str | None = None) -> Image:
        """Clean ``image``; report percent done to ``progress`` and a remote task id to ``on_task``."""


@runtime_checkable
class Resumable(Protocol):
    """A remover whose tasks outlive our process (PicWish keeps them an hour)."""

    async def resume(self, task_id: str, progress: Progress | None = None) -> Image:
        """Finish a task started before a restart."""


class LocalRemover:
    """The bundled engine, run in a worker thread so the event loop keeps answering chats."""

    name = "local"

    def __init__(self, engine: MarkEngine) -> None:
        self._engine = engine
        # The engine already uses both cores; two images at once would only thrash them.
        self._one_at_a_time = asyncio.Semaphore(1)

    async def remove(self, image: Image, progress: Progress | None = None, *,
                     on_task: TaskStarted | None = None, source_url: str | None = None) -> Image:
        """Decode, clean and re-encode in the image's own format, off the event loop."""
        loop = asyncio.get_running_loop()
        reports: asyncio.Queue[int] = asyncio.Queue()

        async def forward() -> None:
            while True:
                percent = await reports.get()
                if progress is not None:
                    await progress(percent)

        def clean() -> Image:
            rgb, alpha, icc = images.to_array(image)
            cleaned = self._engine.clean(rgb, lambda p: loop.call_soon_threadsafe(reports.put_nowait, p))
            if np.array_equal(cleaned, rgb):  # no mark found: the person keeps their file, not a re-encoded copy
                return image
            return images.from_array(cleaned, alpha, image.format, icc, like=image)

        async with self._one_at_a_time:
            forwarder = asyncio.create_task(forward())
            try:
                result = await asyncio.to_thread(clean)
            finally:
                forwarder.cancel()
        if progress is not None:
            await progress(100)
        return result


@contextlib.asynccontextmanager
async def open_remover(settings: Settings, *, limiter: Limiter | None = None) -> AsyncIterator[Remover]:
    """PicWish when a key is set, else the local engine (loaded now, so a broken model fails at start).

    ``limiter`` paces PicWish requests when processes share a key (bot.postgres.SharedRateLimit); without it
    this process paces its own at PICWISH_QPS.
    """
    if settings.picwish_api_key is not None:
        async with PicWishClient(
            settings.picwish_api_key.get_secret_value(),
            base_url=settings.picwish_api_url,
            deadline=settings.picwish_timeout,
            requests_per_second=settings.picwish_qps,
            limiter=limiter,
        ) as client:
            yield client
        return
    from bot.engine import MarkEngine  # onnxruntime loads only when the engine is used

    yield LocalRemover(await asyncio.to_thread(MarkEngine.load))
