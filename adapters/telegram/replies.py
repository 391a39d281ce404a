"""TelegramReplies: one job's answers. Its status goes on the chat's one status message; results and failures
answer the person's own message, named by a ``Place`` (chat, message, topic) that a restart can rebuild."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import PurePath

import PIL.Image
from telegram import Bot, Message, ReplyParameters
from telegram.constants import ChatAction, FileSizeLimit
from telegram.error import BadRequest, TelegramError

from bot import messages
from bot.errors import FileTooLarge
from bot.i18n import ENGLISH, Translations

logger = logging.getLogger(__name__)

EDIT_INTERVAL = 2.0  # seconds between writes of a status message: edits count against the flood limits
CHAT_ACTION_EVERY = 4.5  # Telegram shows "sending a file…" for about 5 s after each sendChatAction
UPLOAD_LIMIT = int(FileSizeLimit.FILESIZE_UPLOAD)  # 50 MB for a document through the cloud Bot API
UPLOAD_TIMEOUT = 120.0  # seconds to write one result
JPEG_QUALITIES = (95, 90, 85, 75)  # tried in turn when a result must shrink to fit the upload limit


@dataclass(frozen=True, slots=True)
class Place:
    """The message a job answers: its chat, its id, and its forum topic if it is in one."""

    chat_id: int
    message_id: int
    thread_id: int | None = None

    @classmethod
    def of(cls, message: Message) -> Place:
        """Where a reply to ``message`` goes."""
        return cls(message.chat_id, message.message_id, message.message_thread_id if message.is_topic_message else None)

    def encode(self) -> str:
        """The job record's ``answer_to``: the message id, and the topic after a slash."""
        return str(self.message_id) if self.thread_id is None else f"{self.message_id}/{self.thread_id}"

    @classmethod
    def decode(cls, chat_id: str, answer_to: str) -> Place:
        """The place a record names."""
        message_id, _, thread_id = answer_to.partition("/")
        return cls(int(chat_id), int(message_id), int(thread_id) if thread_id else None)

    async def reply_text(self, bot: Bot, text: str) -> Message:
        """Answer the message with text (still sent, unquoted, if the message was deleted meanwhile)."""
        return await bot.send_message(self.chat_id, text, reply_parameters=self.quoting(),
                                      message_thread_id=self.thread_id)

    def quoting(self) -> ReplyParameters:
        """Quote the message, or send anyway if it is gone."""
        return ReplyParameters(self.message_id, allow_sending_without_reply=True)


class StatusLine:
    """One chat's status message, shared by every job in flight there (one for an album, one for a burst).

    Sent when the running job first reports, rewritten at most once per EDIT_INTERVAL and never with the
    text it already shows (so Telegram never answers "message is not modified"), and deleted when the last
    job leaves. Only the job at the head of the line, the one the core runs first, writes its words; the
    others are counted ("Image 3 of 5: …"). While the line lives the chat shows "sending a file…".
    """

    def __init__(self, bot: Bot, anchor: Place, *, on_empty: Callable[[StatusLine], None]) -> None:
        self.chat_id = anchor.chat_id
        self._bot, self._anchor, self._on_empty = bot, anchor, on_empty
        self._members: list[TelegramReplies] = []
        self._total = self._done = 0
        self._head_text: str | None = None
        self._message: Message | None = None
        self._wanted: str | None = None  # the latest text asked for
        self._shown: str | None = None  # what the message says now
        self._written_at = float("-inf")
        self._closed = False
        self._lock = asyncio.Lock()  # one write at a time, the delete last
        self._flush: asyncio.Task[None] | None = None
        self._action = asyncio.create_task(self._keep_uploading(), name=f"chat action {self.chat_id}")

    def join(self, member: TelegramReplies) -> None:
        """A job starts in this chat."""
        self._members.append(member)
        self._total += 1

    async def report(self, member: TelegramReplies, text: str) -> None:
        """A job's progress; only the running job's shows (the others' are their queue places, already counted)."""
        if self._members and member is self._members[0]:
            self._head_text = text
            await self._show()

    async def leave(self, member: TelegramReplies) -> None:
        """A job ended; the last one out removes the status message."""
        if self._members and member is self._members[0]:
            self._head_text = None  # the next job's words come when it starts; never its stale queue place
        self._members.remove(member)
        self._done += 1
        if self._members:
            await self._show()
        else:
            await self._close()

    async def _show(self) -> None:
        if self._head_text is None or self._closed:
            return
        text = messages.batch_status(min(self._done + 1, self._total), self._total, self._head_text,
                                     tr=self._members[0].tr)  # the running job's person's words, all of them
        if text == self._wanted:
            return
        self._wanted = text
        if self._message is None and not self._lock.locked():
            await self._send()  # the first status appears at once
        elif self._flush is None:
            self._flush = asyncio.create_task(self._write_later())

    async def _send(self) -> None:
        async with self._lock:
            if self._message is not None or self._closed or self._wanted is None:
                return
            text = self._wanted
            try:
                self._message = await self._anchor.reply_text(self._bot, text)
                self._shown = text
            except TelegramError as exc:
                logger.info("could not send a status message: %s", exc.message)
            self._written_at = asyncio.get_running_loop().time()

    async def _write_later(self) -> None:
        """Bring the message up to date, no sooner than EDIT_INTERVAL after the last write."""
        loop = asyncio.get_running_loop()
        try:
            while not self._closed and self._wanted != self._shown:
                await asyncio.sleep(max(0.0, self._written_at + EDIT_INTERVAL - loop.time()))
                async with self._lock:
                    if self._closed or self._message is None:
                        break
                    if loop.time() - self._written_at < EDIT_INTERVAL or self._wanted == self._shown:
                        continue
                    await self._edit(self._wanted or "")
        finally:
            self._flush = None

    async def _edit(self, text: str) -> None:
        assert self._message is not None
        try:
            await self._message.edit_text(text)
        except BadRequest as exc:
            if "not found" in exc.message.lower():  # someone deleted it; the next job's line sends a new one
                self._message = None
            logger.info("could not edit the status message: %s", exc.message)
        except TelegramError as exc:
            logger.info("could not edit the status message: %s", exc.message)
        self._shown, self._written_at = text, asyncio.get_running_loop().time()

    async def _close(self) -> None:
        self._closed = True
        self._on_empty(self)
        for task in (self._action, self._flush):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        async with self._lock:
            if self._message is not None:
                try:
                    await self._message.delete()
                except TelegramError as exc:
                    logger.info("could not delete the status message: %s", exc.message)
                self._message = None

    async def _keep_uploading(self) -> None:
        while True:
            try:
                await self._bot.send_chat_action(
                    self.chat_id, ChatAction.UPLOAD_DOCUMENT, message_thread_id=self._anchor.thread_id)
            except Exception as exc:  # cosmetic: never worth failing or logging loudly over
                logger.debug("chat action failed: %s", exc)
            await asyncio.sleep(CHAT_ACTION_EVERY)


class TelegramReplies:
    """The Replies of one job: progress on the chat's status line; the result and any failure answer its message."""

    def __init__(self, bot: Bot, place: Place, line: StatusLine, *, upload_limit: int = UPLOAD_LIMIT,
                 tr: Translations = ENGLISH) -> None:
        self.bot, self.place, self.line, self.upload_limit = bot, place, line, upload_limit
        self.tr = tr  # the words of the person who asked
        line.join(self)

    async def progress(self, text: str) -> None:
        """Show ``text`` on the chat's status line while this job is the one running."""
        await self.line.report(self, text)

    async def send_image(self, data: bytes, filename: str, caption: str) -> None:
        """Send the result as a document replying to the image: never recompressed, shrunk only past the limit."""
        if len(data) > self.upload_limit:
            data, filename = await asyncio.to_thread(shrink, data, filename, self.upload_limit)
            caption = messages.sentences([caption, self.tr.gettext(messages.TELEGRAM_REENCODED)])
        await self.bot.send_document(
            self.place.chat_id, data, filename=filename, caption=caption, reply_parameters=self.place.quoting(),
            message_thread_id=self.place.thread_id,
            disable_content_type_detection=True,  # or Telegram may turn an image document back into a photo
            write_timeout=UPLOAD_TIMEOUT,
        )

    async def say(self, text: str) -> None:
        """Answer the image's message with one sentence."""
        await self.place.reply_text(self.bot, text)

    async def close(self) -> None:
        """The job is over: leave the status line."""
        await self.line.leave(self)


def shrink(data: bytes, filename: str, limit: int) -> tuple[bytes, str]:
    """Re-encode a result as the best JPEG under ``limit`` bytes, or raise FileTooLarge if none fits."""
    with PIL.Image.open(io.BytesIO(data)) as picture:
        rgb = picture.convert("RGB") if picture.mode not in {"RGB", "L"} else picture.copy()
    for quality in JPEG_QUALITIES:
        out = io.BytesIO()
        rgb.save(out, "JPEG", quality=quality, subsampling=0 if quality >= 90 else 2)
        if out.tell() <= limit:
            return out.getvalue(), f"{PurePath(filename).stem}.jpg"
    raise FileTooLarge(len(data), limit)


async def quietly(call: Awaitable[object], *, timeout: float = 10.0) -> None:
    """Await a courtesy call (a goodbye, a cleanup) without letting its failure or slowness matter."""
    try:
        async with asyncio.timeout(timeout):
            await call
    except Exception as exc:
        logger.info("could not finish a courtesy call: %s", exc)
