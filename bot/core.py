"""Service.handle(job, replies): the one place where a job runs end to end, whatever the platform."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field

import httpx

from bot import images, messages
from bot.config import LOCAL_PLATFORMS, Settings
from bot.errors import UnmarkError
from bot.images import Image
from bot.jobs import ChatRef, ImageJob, Replies
from bot.links import fetch_link
from bot.removers import Remover, Resumable, open_remover
from bot.usage import PendingTask, UsageStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one job ended, for callers that need more than what the chat was told (``unmark clean``)."""

    job_id: int
    error_code: str | None = None
    result: Image | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        """The person got a cleaned image."""
        return self.error_code is None


@dataclass(slots=True)
class _Lane:
    """One chat's line: its jobs run one at a time, in the order they arrived."""

    line: deque[asyncio.Future[None]] = field(default_factory=deque)  # the running job's first


class Service:
    """Runs jobs: fetch → validate → dedupe → quota → remove → reply, and records each in the store."""

    def __init__(self, *, usage: UsageStore, remover: Remover, settings: Settings, http: httpx.AsyncClient) -> None:
        self.usage, self.remover, self.settings = usage, remover, settings
        self._http = http
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._lanes: dict[tuple[str, str], _Lane] = {}

    async def handle(self, job: ImageJob, replies: Replies) -> Outcome:
        """Run one job end to end and record how it ended; never raises to the adapter (but cancellation)."""
        job_id = await self.usage.start(job.chat, backend=self.remover.name, filename=job.filename)
        error_code: str | None = "internal_error"
        result, cached, api_ms = None, False, None
        try:
            async with self._turn(job.chat, replies):
                await self.usage.begin(job_id)
                # Failures are told inside the chat's turn, so they reach it before its next job's answer.
                try:
                    result, cached, api_ms = await self._run(job_id, job, replies)
                    error_code = None
                except UnmarkError as error:
                    error_code = error.code
                    logger.info("job %d ended with %s (%s)", job_id, error.code, error)
                    at_terminal = job.chat.platform in LOCAL_PLATFORMS  # the person there is the operator
                    await self._safely(replies.say(messages.describe(error, operator=at_terminal)))
                except Exception:
                    logger.exception("job %d failed unexpectedly", job_id)
                    await self._safely(replies.say(messages.INTERNAL_ERROR))
        except asyncio.CancelledError:
            error_code = "interrupted"  # shutdown: recorded, and resumed at the next start if it can be
            raise
        finally:
            await self.usage.finish(job_id, error_code=error_code, result=result, cached=cached, api_ms=api_ms)
        return Outcome(job_id, error_code, result, cached)

    async def _run(self, job_id: int, job: ImageJob, replies: Replies) -> tuple[Image, bool, int | None]:
        started = time.perf_counter()
        images.check_announced_size(job.size)  # before downloading a byte
        raw = await job.fetch()
        image = await asyncio.to_thread(images.load, raw)
        await self.usage.record_input(job_id, image)

        previous = await self.usage.recent_result(image.sha256)
        if previous is not None:  # the same image within the hour: free, instant, no API call
            await replies.send_image(previous.data, images.result_filename(job.filename, previous),
                                     messages.done_caption(0, cached=True))
            return previous, True, None

        exempt = self.settings.is_admin(job.chat.platform, job.chat.user_id)
        limit = 0 if exempt else self.settings.daily_limit_for(job.chat.platform)
        await self.usage.claim(job_id, job.chat, limit=limit)
        await replies.progress(messages.WORKING)
        removal_started = time.perf_counter()
        result = await self.remover.remove(
            image,
            progress=self._progress_for(replies),
            on_task=functools.partial(self.usage.set_task, job_id),
            # PicWish may fetch a typed link itself only if it would see exactly the bytes we checked.
            source_url=job.url if image.data is raw else None,
        )
        api_ms = int((time.perf_counter() - removal_started) * 1000)
        await replies.send_image(result.data, images.result_filename(job.filename, result),
                                 messages.done_caption(time.perf_counter() - started))
        # Cached after the person has it: a multi-MB write need not delay their answer.
        await self.usage.remember_result(image.sha256, result)
        return result, False, api_ms

    async def fetch_link(self, url: str) -> bytes:
        """Download a link a person typed (adapters build ``ImageJob.fetch`` from this)."""
        return await fetch_link(self._http, url, allow_private=self.settings.allow_private_urls)

    def link_job(self, chat: ChatRef, url: str) -> ImageJob:
        """An ImageJob for a typed link."""
        name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "image"
        return ImageJob(chat=chat, fetch=functools.partial(self.fetch_link, url), filename=name, url=url)

    async def usage_text(self, chat: ChatRef) -> str:
        """This chat's usage and what is left today, in words."""
        usage = await self.usage.chat_usage(chat)
        return messages.usage_summary(
            today=usage.today, cached_today=usage.cached_today, limit=self.settings.daily_limit_for(chat.platform),
            exempt=self.settings.is_admin(chat.platform, chat.user_id), last_30_days=usage.last_30_days,
            all_time=usage.all_time, success_rate=usage.success_rate, median_seconds=usage.median_seconds,
        )

    async def stats_text(self, chat: ChatRef) -> str:
        """Global usage for admins; others are told it is for admins only."""
        if not self.settings.is_admin(chat.platform, chat.user_id):
            return messages.ADMINS_ONLY
        totals = await self.usage.totals()
        chats = await self.usage.active_chats(days=30)
        return messages.global_summary(totals.today, totals.last_30_days, totals.all_time, totals.failed,
                                       totals.cached, chats, totals.median_seconds)

    async def resume(self, pending: list[PendingTask]) -> int:
        """Finish PicWish tasks a restart cut off (still within their hour) into the result cache."""
        if not isinstance(self.remover, Resumable):
            return 0
        resumed = 0
        for task in pending:
            try:
                result = await self.remover.resume(task.task_id)
            except UnmarkError as error:
                logger.info("could not resume the task of job %d: %s", task.job_id, error.code)
                await self.usage.finish(task.job_id, error_code=error.code)
                continue
            await self.usage.remember_result(task.sha256, result)
            await self.usage.mark_resumed(task.job_id, result)
            resumed += 1
        return resumed

    @contextlib.asynccontextmanager
    async def _turn(self, chat: ChatRef, replies: Replies) -> AsyncIterator[None]:
        """Wait for this chat's earlier jobs (telling the chat its place), then for a free slot."""
        key = (chat.platform, chat.chat_id)
        lane = self._lanes.setdefault(key, _Lane())
        ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lane.line.append(ticket)  # the place in line is taken here, before anything awaits
        try:
            if len(lane.line) == 1:
                ticket.set_result(None)
            else:
                await self._safely(replies.progress(messages.queued(len(lane.line))))
            await ticket
            async with self._slots:
                yield
        finally:
            lane.line.remove(ticket)
            if lane.line:
                if not lane.line[0].done():
                    lane.line[0].set_result(None)  # the next job's turn
            else:
                del self._lanes[key]

    def _progress_for(self, replies: Replies):  # type: ignore[no-untyped-def]
        last = -1

        async def report(percent: int) -> None:
            nonlocal last
            if percent != last:  # pollers repeat themselves; the chat hears each step once
                last = percent
                await replies.progress(messages.progress(percent))

        return report

    @staticmethod
    async def _safely(telling: Awaitable[None]) -> None:
        """Tell the chat something; the platform failing to deliver must not hide the job's own outcome."""
        try:
            await telling
        except Exception:
            logger.exception("could not deliver a message to the chat")


@contextlib.asynccontextmanager
async def open_service(settings: Settings, *, remover: Remover | None = None) -> AsyncIterator[Service]:
    """Open the store, the remover and the link downloader, and close all three however we leave."""
    async with contextlib.AsyncExitStack() as stack:
        usage = await stack.enter_async_context(UsageStore.open(settings.database))
        if remover is None:
            remover = await stack.enter_async_context(open_remover(settings))
        http = await stack.enter_async_context(httpx.AsyncClient(headers={"User-Agent": "unmark"}))
        service = Service(usage=usage, remover=remover, settings=settings, http=http)
        # Rows left running by the last exit are closed before any new job starts; resuming their
        # PicWish tasks (network) goes on in the background.
        recovery = asyncio.create_task(service.resume(await usage.recover()))
        try:
            yield service
        finally:
            if not recovery.done():
                recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await recovery
