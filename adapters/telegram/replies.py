"""TelegramReplies: one job's answers. Its status goes on the chat's one status message; results and failures
answer the person's own message."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Awaitable, Callable
from pathlib import PurePath

import PIL.Image
from telegram import Message
from telegram.constants import ChatAction, FileSizeLimit
from telegram.error import BadRequest, TelegramError

from bot import messages
from bot.errors import FileTooLarge

logger = logging.getLogger(__name__)

EDIT_INTERVAL = 2.0  # seconds between writes of a status message: edits count against the flood limits
CHAT_ACTION_EVERY = 4.5  # Telegram shows "sending a file…" for about 5 s after each sendChatAction
UPLOAD_LIMIT = int(FileSizeLimit.FILESIZE_UPLOAD)  # 50 MB for a document through the cloud Bot API
UPLOAD_TIMEOUT = 120.0  # seconds to write one result
JPEG_QUALITIES = (95, 90, 85, 75)  # tried in turn when a result must shrink to fit the upload limit


class StatusLine:
    """One chat's status message, shared by every job in flight there (one for an album, one for a burst).

    Sent when the running job first reports, rewritten at most once per EDIT_INTERVAL and never with the
    text it already shows (so Telegram never answers "message is not modified"), and deleted when the last
    job leaves. Only the job at the head of the line, the one the core runs first, writes its words; the
    others are counted ("Image 3 of 5: …"). While the line lives the chat shows "sending a file…".
    """

    def __init__(self, anchor: Message, *, on_empty: Callable[[StatusLine], None]) -> None:
        self.chat_id = anchor.chat_id
        self._anchor, self._on_empty = anchor, on_empty
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
        text = messages.batch_status(min(self._done + 1, self._total), self._total, self._head_text)
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
                self._message = await self._anchor.reply_text(text, do_quote=True)
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
        thread = self._anchor.message_thread_id if self._anchor.is_topic_message else None
        while True:
            try:
                await self._anchor.get_bot().send_chat_action(
                    self.chat_id, ChatAction.UPLOAD_DOCUMENT, message_thread_id=thread)
            except Exception as exc:  # cosmetic: never worth failing or logging loudly over
                logger.debug("chat action failed: %s", exc)
            await asyncio.sleep(CHAT_ACTION_EVERY)


class TelegramReplies:
    """The Replies of one job: progress on the chat's status line; the result and any failure answer its message."""

    def __init__(self, message: Message, line: StatusLine, *, upload_limit: int = UPLOAD_LIMIT) -> None:
        self.message, self.line, self.upload_limit = message, line, upload_limit
        line.join(self)

    async def progress(self, text: str) -> None:
        """Show ``text`` on the chat's status line while this job is the one running."""
        await self.line.report(self, text)

    async def send_image(self, data: bytes, filename: str, caption: str) -> None:
        """Send the result as a document replying to the image: never recompressed, shrunk only past the limit."""
        if len(data) > self.upload_limit:
            data, filename = await asyncio.to_thread(shrink, data, filename, self.upload_limit)
            caption = f"{caption} {messages.TELEGRAM_REENCODED}"
        await self.message.reply_document(
            data, filename=filename, caption=caption, do_quote=True,
            disable_content_type_detection=True,  # or Telegram may turn an image document back into a photo
            write_timeout=UPLOAD_TIMEOUT,
        )

    async def say(self, text: str) -> None:
        """Answer the image's message with one sentence."""
        await self.message.reply_text(text, do_quote=True)

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
