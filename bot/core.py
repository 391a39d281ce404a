"""Service.handle(job): the one place where a job runs end to end, whatever the platform, and where jobs a stop
or a crash cut off are taken up again (``attach``)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from bot import i18n, images, messages
from bot.config import LOCAL_PLATFORMS, Settings
from bot.errors import FileUnavailable, Interrupted, UnmarkError
from bot.images import Image
from bot.jobs import ChatRef, ImageJob, Platform, Replies
from bot.links import fetch_link
from bot.picwish import PACING_MARGIN
from bot.removers import Remover, Resumable, open_remover
from bot.usage import RESULT_TTL, StoredJob, UsageStore

if TYPE_CHECKING:
    from bot.queue import JobQueue

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one job ended, for callers that need more than what the chat was told (``unmark clean``)."""

    job_id: int | None
    error_code: str | None = None
    result: Image | None = None
    cached: bool = False
    unchanged: bool = False  # no watermark found: the person was told so and kept their own file

    @property
    def ok(self) -> bool:
        """The person got a cleaned image, or was told there was nothing to clean."""
        return self.error_code is None


@dataclass(frozen=True, slots=True)
class _Answered:
    """What a job that went well answered with, for its row."""

    result: Image
    cached: bool = False
    api_ms: int | None = None
    unchanged: bool = False


REDELIVERED = "redelivered"  # the platform delivered a request again; its first job answers it
POSTPONED = "postponed"  # the platform is stopping: the job stays queued for the next start
QUEUED = "queued"  # handed to the shared job queue: a worker answers it
PLATFORM_WAIT = 30.0  # seconds a worker's job waits for its platform to finish starting


@dataclass(slots=True)
class _Lane:
    """One chat's line: its jobs run one at a time, in the order they arrived."""

    line: deque[asyncio.Future[None]] = field(default_factory=deque)  # the running job's first


@dataclass(frozen=True, slots=True)
class _Resumed:
    """What a restart knows of a job it finishes: a remote task to poll, a daily image already taken."""

    task_id: str | None
    sha256: str | None
    counted: bool


class _LinkClient:
    """The HTTP client for typed links, made on first use: its TLS set-up costs 0.05 s that `unmark clean` on a
    local file need not pay. It is closed with the stack that owns the service."""

    def __init__(self, stack: contextlib.AsyncExitStack) -> None:
        self._stack, self._client = stack, None

    def __call__(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(headers={"User-Agent": "unmark"})
            self._stack.push_async_callback(self._client.aclose)
        return self._client


class Service:
    """Runs jobs: fetch → validate → dedupe → quota → remove → reply, and records each in the store."""

    def __init__(self, *, usage: UsageStore, remover: Remover, settings: Settings,
                 http: Callable[[], httpx.AsyncClient], queue: JobQueue | None = None) -> None:
        self.usage, self.remover, self.settings = usage, remover, settings
        self.queue = queue  # with PostgreSQL: chat jobs go through it, to whichever worker is free
        self._http = http
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._lanes: dict[tuple[str, str], _Lane] = {}
        self._platforms: dict[str, Platform] = {}
        self._attached: dict[str, asyncio.Event] = {}  # set once the platform can fetch and answer
        self._stopping: set[str] = set()

    async def attach(self, platform: Platform) -> list[Coroutine[Any, Any, Outcome]]:
        """Let ``platform``'s jobs run, and take up the ones a stop or a crash left unfinished.

        Returns one coroutine per unfinished job, for the adapter to run beside its own (so its graceful stop
        covers them too); each already holds its place in its chat's line, so it goes before any new job.
        """
        self._register(platform)
        unfinished = await self.usage.unfinished(platform.name)
        if self.queue is not None:  # the queue resumes what it holds; a job recorded but never queued joins it
            queued = await self.queue.deferred([stored.job_id for stored in unfinished])
            for stored in unfinished:
                if stored.job_id not in queued:
                    await self.queue.defer(stored.job_id, stored.job.chat)
            return []
        if unfinished:
            logger.info("%s: %d job(s) left unfinished by the last stop go first", platform.name, len(unfinished))
        # No await between the places taken in line: each chat's order is the order of its rows.
        return [self._resume(stored, self._line_up(stored.job.chat)) for stored in unfinished]

    async def attach_anew(self, platform: Platform) -> list[ImageJob]:
        """Let ``platform``'s jobs run; close the ones the last session left unfinished and return them.

        For the terminal, where the person who typed them may be gone: they are named, not run again.
        """
        self._register(platform)
        unfinished = await self.usage.unfinished(platform.name)
        for stored in unfinished:
            await self.usage.finish(stored.job_id, error_code=Interrupted.code)
        return [stored.job for stored in unfinished]

    def _register(self, platform: Platform) -> None:
        self._platforms[platform.name] = platform
        self._stopping.discard(platform.name)
        self._attached.setdefault(platform.name, asyncio.Event()).set()

    def detach(self, platform: Platform) -> None:
        """The platform is stopping: its jobs that have not begun stay queued for the next start."""
        self._stopping.add(platform.name)

    async def handle(self, job: ImageJob) -> Outcome:
        """Record the job, then run it in its chat's turn; never raises to the adapter (but cancellation).

        A job taken while its platform is stopping is only recorded: the next start runs it.
        """
        ticket = self._line_up(job.chat)  # the place in line is taken here, before anything awaits
        if self.queue is not None and job.chat.platform not in LOCAL_PLATFORMS:  # the terminal's folder is here
            return await self._enqueue(job, ticket)
        try:
            job_id = await self.usage.start(job, backend=self.remover.name)
        except BaseException:
            self._leave(job.chat, ticket)
            raise
        if job_id is None:
            self._leave(job.chat, ticket)
            logger.info("a %s request was delivered again; its job was taken already", job.chat.platform)
            return Outcome(None, REDELIVERED)
        if job.chat.platform in self._stopping:  # recorded, and nothing sent to a chat while we stop
            self._leave(job.chat, ticket)
            return Outcome(job_id, POSTPONED)
        return await self._run(job_id, job, ticket, resumed=None)

    async def _enqueue(self, job: ImageJob, ticket: asyncio.Future[None]) -> Outcome:
        """Record the job and hand it to the shared queue, one of the chat's images at a time, so its rows and the
        queue's order are the order the chat sent them; a worker answers it."""
        assert self.queue is not None
        try:
            await ticket
            job_id = await self.usage.start(job, backend=self.remover.name)
            if job_id is None:
                logger.info("a %s request was delivered again; its job was taken already", job.chat.platform)
                return Outcome(None, REDELIVERED)
            await self.queue.defer(job_id, job.chat)  # cut off before this, the next start queues it (attach)
            return Outcome(job_id, QUEUED)
        finally:
            self._leave(job.chat, ticket)

    async def run_queued(self, job_id: int) -> Outcome:
        """A worker's turn at a job from the queue: run it, or (run before and cut off) resume it.

        The queue has already put it after its chat's earlier jobs. A row closed meanwhile is left alone.
        """
        stored = await self.usage.stored(job_id)
        if stored is None:
            return Outcome(job_id)
        attached = self._attached.setdefault(stored.job.chat.platform, asyncio.Event())
        try:  # a worker takes jobs while its platforms still start; one it cannot answer through goes back
            await asyncio.wait_for(attached.wait(), PLATFORM_WAIT)
        except TimeoutError:
            logger.warning("job %d is for %s, which this process does not serve; handed back", job_id,
                           stored.job.chat.platform)
            return Outcome(job_id, POSTPONED)
        ticket = self._line_up(stored.job.chat)
        if stored.running or stored.delivered:  # another worker (or this one) began it: resume, never pay twice
            return await self._resume(stored, ticket)
        return await self._run(job_id, stored.job, ticket, resumed=None)

    async def work(self) -> None:
        """Run the queue's jobs until cancelled (``unmark worker``, and ``unmark run`` unless ``--no-work``)."""
        assert self.queue is not None, "work() needs the shared database's queue"
        await self.queue.work(self.run_queued, concurrency=self.settings.concurrency,
                              grace=self.settings.shutdown_grace)

    async def _resume(self, stored: StoredJob, ticket: asyncio.Future[None]) -> Outcome:
        if stored.delivered:  # answered, then cut off before the row was closed: never answer twice
            self._leave(stored.job.chat, ticket)
            await self.usage.finish(stored.job_id)
            return Outcome(stored.job_id)
        expired = time.time() - stored.created_at > RESULT_TTL  # any PicWish task is gone with its hour
        return await self._run(stored.job_id, stored.job, ticket, expired=expired,
                               resumed=_Resumed(stored.task_id, stored.sha256, stored.counted))

    async def _run(self, job_id: int, job: ImageJob, ticket: asyncio.Future[None], *, resumed: _Resumed | None,
                   expired: bool = False) -> Outcome:
        """The job's turn in its chat, its answer through its platform, and the row closed however it ends."""
        error_code: str | None = "internal_error"
        answered: _Answered | None = None
        try:
            async with contextlib.AsyncExitStack() as stack:
                stack.callback(self._leave, job.chat, ticket)  # however the job ends, the next one's turn comes
                platform = self._platforms[job.chat.platform]
                replies = await stack.enter_async_context(platform.replies(job))
                tr = self.translations(job.language)
                await self._wait_turn(job.chat, ticket, replies, tr)
                if job.chat.platform in self._stopping:  # the stop came while this job waited its turn
                    error_code = POSTPONED
                    return Outcome(job_id, POSTPONED)
                await stack.enter_async_context(self._slots)
                await self.usage.begin(job_id)
                # Failures are told inside the chat's turn, so they reach it before its next job's answer.
                try:
                    if expired:
                        raise Interrupted("older than an hour at the restart")
                    answered = await self._work(job_id, job, replies, platform, resumed, tr)
                    error_code = None
                except UnmarkError as error:
                    error_code = error.code
                    logger.info("job %d ended with %s (%s)", job_id, error.code, error)
                    at_terminal = job.chat.platform in LOCAL_PLATFORMS  # the person there is the operator
                    await self._safely(replies.say(messages.describe(error, operator=at_terminal, tr=tr)))
                except Exception:
                    logger.exception("job %d failed unexpectedly", job_id)
                    await self._safely(replies.say(tr.gettext(messages.INTERNAL_ERROR)))
        except asyncio.CancelledError:
            error_code = POSTPONED  # a stop outran the grace period: the next start finishes the job
            raise
        except Exception:  # no platform to answer through, or it could not open its replies: told nowhere
            logger.exception("job %d could not be answered", job_id)
        finally:
            if error_code != POSTPONED:
                await self.usage.finish(job_id, error_code=error_code, result=answered.result if answered else None,
                                        cached=answered is not None and answered.cached,
                                        api_ms=answered.api_ms if answered else None)
        if answered is None:
            return Outcome(job_id, error_code)
        return Outcome(job_id, error_code, answered.result, answered.cached, answered.unchanged)

    async def _work(self, job_id: int, job: ImageJob, replies: Replies, platform: Platform,
                    resumed: _Resumed | None, tr: i18n.Translations) -> _Answered:
        started = time.perf_counter()
        if resumed is not None and resumed.task_id and resumed.sha256 and isinstance(self.remover, Resumable):
            # PicWish has the image already: poll the task a restart cut off, at no second charge.
            await replies.progress(tr.gettext(messages.WORKING))
            result = await self.remover.resume(resumed.task_id, progress=self._progress_for(replies, tr))
            return await self._deliver(job_id, job, replies, resumed.sha256, result, started, tr)

        images.check_announced_size(job.size)  # before downloading a byte
        try:
            raw = await (self._fetch_link(job.url) if job.url else platform.fetch(job))
        except FileUnavailable as error:
            if resumed is not None:  # the platform let the file go while we were down: ask for it again
                raise Interrupted(f"the source could not be fetched again: {error}") from error
            raise
        image = await asyncio.to_thread(images.load, raw)
        await self.usage.record_input(job_id, image)

        previous = await self.usage.recent_result(image.sha256)
        if previous is not None:  # the same image within the hour: free, instant, no API call
            await replies.send_image(previous.data, images.result_filename(job.filename, previous),
                                     messages.done_caption(0, cached=True, tr=tr))
            await self.usage.delivered(job_id, cached=True)
            return _Answered(previous, cached=True)

        if resumed is None or not resumed.counted:
            exempt = self.settings.is_admin(job.chat.platform, job.chat.user_id)
            limit = 0 if exempt else self.settings.daily_limit_for(job.chat.platform)
            await self.usage.claim(job_id, job.chat, limit=limit)
        await replies.progress(tr.gettext(messages.WORKING))
        result = await self.remover.remove(
            image,
            progress=self._progress_for(replies, tr),
            on_task=functools.partial(self.usage.set_task, job_id),
            # PicWish may fetch a typed link itself only if it would see exactly the bytes we checked.
            source_url=job.url if image.data is raw else None,
        )
        if result.sha256 == image.sha256:  # the remover found no watermark and gave the image back as it was
            await self.usage.unchanged(job_id)  # gives back the daily image claimed above
            await replies.say(tr.gettext(messages.NO_WATERMARK))
            await self.usage.delivered(job_id)
            return _Answered(result, api_ms=int((time.perf_counter() - started) * 1000), unchanged=True)
        return await self._deliver(job_id, job, replies, image.sha256, result, started, tr)

    async def _deliver(self, job_id: int, job: ImageJob, replies: Replies, sha256: str, result: Image,
                       started: float, tr: i18n.Translations) -> _Answered:
        api_ms = int((time.perf_counter() - started) * 1000)
        await replies.send_image(result.data, images.result_filename(job.filename, result),
                                 messages.done_caption(time.perf_counter() - started, tr=tr))
        await self.usage.delivered(job_id)  # at once: from here a restart must not answer again
        # Cached after the person has it: a multi-MB write need not delay their answer.
        await self.usage.remember_result(sha256, result)
        return _Answered(result, api_ms=api_ms)

    async def _fetch_link(self, url: str) -> bytes:
        """Download a link a person typed, with the SSRF rules."""
        return await fetch_link(self._http(), url, allow_private=self.settings.allow_private_urls)

    def translations(self, language: str) -> i18n.Translations:
        """What a person whose platform or terminal names ``language`` reads (UNMARK_LANGUAGE, if set, for all)."""
        return i18n.translations(language, forced=self.settings.language)

    async def usage_text(self, chat: ChatRef, *, language: str = "") -> str:
        """This chat's usage and what is left today, in words (in ``language``)."""
        usage = await self.usage.chat_usage(chat)
        return messages.usage_summary(
            today=usage.today, cached_today=usage.cached_today, limit=self.settings.daily_limit_for(chat.platform),
            exempt=self.settings.is_admin(chat.platform, chat.user_id), last_30_days=usage.last_30_days,
            all_time=usage.all_time, success_rate=usage.success_rate, median_seconds=usage.median_seconds,
            tr=self.translations(language),
        )

    async def stats_text(self, chat: ChatRef, *, language: str = "") -> str:
        """Global usage for admins; others are told it is for admins only (in ``language``)."""
        tr = self.translations(language)
        if not self.settings.is_admin(chat.platform, chat.user_id):
            return tr.gettext(messages.ADMINS_ONLY)
        totals = await self.usage.totals()
        chats = await self.usage.active_chats(days=30)
        return messages.global_summary(totals.today, totals.last_30_days, totals.all_time, totals.failed,
                                       totals.cached, chats, totals.median_seconds, tr=tr)

    def _line_up(self, chat: ChatRef) -> asyncio.Future[None]:
        """Take the next place in the chat's line; the ticket is resolved when the job's turn comes."""
        lane = self._lanes.setdefault((chat.platform, chat.chat_id), _Lane())
        ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lane.line.append(ticket)
        if len(lane.line) == 1:
            ticket.set_result(None)
        return ticket

    def _leave(self, chat: ChatRef, ticket: asyncio.Future[None]) -> None:
        """Give up a place in line (once; again is a no-op); the next job's turn comes if this one was first."""
        key = (chat.platform, chat.chat_id)
        lane = self._lanes.get(key)
        if lane is None or ticket not in lane.line:
            return
        lane.line.remove(ticket)
        if lane.line:
            if not lane.line[0].done():
                lane.line[0].set_result(None)
        else:
            del self._lanes[key]

    async def _wait_turn(self, chat: ChatRef, ticket: asyncio.Future[None], replies: Replies,
                         tr: i18n.Translations) -> None:
        """Wait for this chat's earlier jobs, telling the chat its place."""
        if not ticket.done():
            place = self._lanes[(chat.platform, chat.chat_id)].line.index(ticket) + 1
            await self._safely(replies.progress(messages.queued(place, tr=tr)))
        await ticket

    def _progress_for(self, replies: Replies, tr: i18n.Translations):  # type: ignore[no-untyped-def]
        last = -1

        async def report(percent: int) -> None:
            nonlocal last
            if percent != last:  # pollers repeat themselves; the chat hears each step once
                last = percent
                await replies.progress(messages.progress(percent, tr=tr))

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
    """Open the store, the remover and the link downloader (and with PostgreSQL the job queue and the shared
    PicWish pacing), and close them all however we leave."""
    async with contextlib.AsyncExitStack() as stack:
        # A pool big enough for every job at once, the queue's listener and its heartbeat.
        usage = await stack.enter_async_context(UsageStore.open(settings.database, pool_size=settings.concurrency + 4))
        queue, limiter = None, None
        if settings.shared:
            from bot.postgres import PostgresDatabase, SharedRateLimit
            from bot.queue import JobQueue

            assert isinstance(usage.db, PostgresDatabase)
            queue = await stack.enter_async_context(JobQueue.open(usage.db, stalled_after=settings.stalled_after))
            if settings.picwish_api_key is not None:
                limiter = SharedRateLimit(usage.db, settings.picwish_api_key.get_secret_value(),
                                          interval=PACING_MARGIN / settings.picwish_qps)
        if remover is None:
            remover = await stack.enter_async_context(open_remover(settings, limiter=limiter))
        yield Service(usage=usage, remover=remover, settings=settings, http=_LinkClient(stack), queue=queue)
