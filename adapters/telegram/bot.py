"""TelegramBot: one handler per intent, wired in ``build_application``; albums collected, groups answered only when asked."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from telegram import Bot, Document, Message, MessageEntity, PhotoSize, Update
from telegram.constants import ChatType, FileSizeLimit
from telegram.error import BadRequest, TelegramError
from telegram.ext import Application, CommandHandler, ContextTypes, MessageHandler, filters

from adapters.telegram.replies import UPLOAD_LIMIT, Place, StatusLine, TelegramReplies, quietly
from bot import images, messages
from bot.config import Settings, SettingsError
from bot.core import Service
from bot.errors import FileTooLarge, FileUnavailable
from bot.i18n import Translations
from bot.jobs import ChatRef, ImageJob

logger = logging.getLogger(__name__)

DOWNLOAD_LIMIT = int(FileSizeLimit.FILESIZE_DOWNLOAD)  # 20 MB: the most getFile serves through the cloud Bot API
ALBUM_WAIT = 1.0  # an album is one update per item with no end marker: wait this long after the latest item
ALBUM_MAX = 10  # Telegram's largest album: a full one needs no more waiting
CLEAN = "clean"
PHOTO_NAME = "photo.jpg"  # photos arrive without a name
DOCUMENT_NAME = "image"
BOT_KEY = "unmark.telegram"  # where build_application leaves the TelegramBot in bot_data, for the lifecycle
Context = ContextTypes.DEFAULT_TYPE


class TelegramBot:
    """The handlers, bound to the service; each turns what a person sent into job records and hands them over.

    It is also the core's ``Platform`` for Telegram: it fetches a record's file and answers in the message the
    record names, so a job recorded before a restart is answered like any other.
    """

    name = "telegram"

    def __init__(self, service: Service, settings: Settings, *, upload_limit: int = UPLOAD_LIMIT,
                 album_wait: float = ALBUM_WAIT) -> None:
        self.service, self.settings = service, settings
        self.upload_limit, self.album_wait = upload_limit, album_wait
        self.bot: Bot | None = None  # the Application's, set by build_application
        self._lines: dict[int, StatusLine] = {}
        self._albums: dict[tuple[int, str], _Album] = {}
        self._jobs: set[asyncio.Task[Any]] = set()

    # --- handlers, one per intent -------------------------------------------------------------------------

    async def show_help(self, update: Update, context: Context) -> None:
        """/start and /help: what I do, the limits and privacy, in one paragraph."""
        await _answer(update, messages.telegram_help(context.bot.username, tr=self._translations(update)))

    async def show_usage(self, update: Update, context: Context) -> None:
        """/usage: this chat's usage and what is left today."""
        message = _message(update)
        await _answer(update, await self.service.usage_text(_chat(message), language=_language(message)))

    async def show_stats(self, update: Update, context: Context) -> None:
        """/stats: everyone's usage, for admins (anyone else is told it is for admins)."""
        message = _message(update)
        await _answer(update, await self.service.stats_text(_chat(message), language=_language(message)))

    async def clean_photo(self, update: Update, context: Context) -> None:
        """A photo: clean its largest size (in a group, only when its caption asks)."""
        if _asked(_message(update), context.bot):
            await self._clean([_message(update)])

    async def clean_document(self, update: Update, context: Context) -> None:
        """A file: sniffed from its bytes whatever its mime type says (in a group, only when its caption asks)."""
        if _asked(_message(update), context.bot):
            await self._clean([_message(update)])

    async def clean_album(self, update: Update, context: Context) -> None:
        """An album: gather its items (one update each) and clean them all under one status message."""
        items = await self._collect(_message(update))
        if items and any(_asked(item, context.bot) for item in items):
            await self._clean(items)

    async def clean_link(self, update: Update, context: Context) -> None:
        """Image links typed in a message (in a group, only when it mentions me or says /clean)."""
        if _asked(_message(update), context.bot):
            await self._clean([_message(update)])

    async def clean_reply(self, update: Update, context: Context) -> None:
        """/clean: the image or links of the message it replies to, else links typed after it."""
        message = _message(update)
        target = message.reply_to_message
        if target is not None and (_has_file(target) or _links(target)):
            await self._clean([target], asker=message)
        elif _links(message):
            await self._clean([message])
        else:
            await _answer(update, self._translations(update).gettext(messages.TELEGRAM_CLEAN_HOW))

    async def show_hint(self, update: Update, context: Context) -> None:
        """Anything else in a private chat: what I can do (or that the command is unknown)."""
        text = _message(update).text or ""
        hint = messages.NOT_A_COMMAND if text.startswith("/") else messages.TELEGRAM_SEND_AN_IMAGE
        await _answer(update, self._translations(update).gettext(hint))

    async def log_error(self, update: object, context: Context) -> None:
        """Log what a handler did not expect (the job itself never raises: the core answers its failures)."""
        logger.error("a Telegram update could not be handled", exc_info=context.error)

    # --- the work -----------------------------------------------------------------------------------------

    async def _clean(self, targets: list[Message], *, asker: Message | None = None) -> None:
        """Start one job per image or link in ``targets``, and wait for them all.

        Each is recorded before anything is fetched; one that arrives as we stop is recorded and left for the
        next start (the core sees to both).
        """
        chat = _chat(asker or targets[0])
        jobs = [job for target in targets  # in a group, each answer is in the language of the person who asked
                for job in _jobs_for(target, chat, request=(asker or target).message_id,
                                     language=_language(asker or target))]
        await asyncio.gather(*(self._start(self.service.handle(job)) for job in jobs), return_exceptions=True)

    def _start(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a job as a task the graceful stop can wait for."""
        task = asyncio.create_task(work)
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)
        return task

    async def resume(self) -> None:
        """Attach to the core and start the jobs the last stop left unfinished, before any new update."""
        for work in await self.service.attach(self):
            self._start(work)

    # --- the core's Platform ---------------------------------------------------------------------------------

    async def fetch(self, job: ImageJob) -> bytes:
        """The file's bytes through the Bot API; its URL (which holds the token) stays inside PTB."""
        assert self.bot is not None
        return await _download(self.bot, job.source, job.size)

    @contextlib.asynccontextmanager
    async def replies(self, job: ImageJob) -> AsyncIterator[TelegramReplies]:
        """Answers to the message the job names, its status on the chat's one status line."""
        assert self.bot is not None
        place = Place.decode(job.chat.chat_id, job.answer_to)
        replies = TelegramReplies(self.bot, place, self._line(place), upload_limit=self.upload_limit,
                                  tr=self.service.translations(job.language))
        try:
            yield replies
        finally:
            await quietly(replies.close())

    def _translations(self, update: Update) -> Translations:
        """What the sender of ``update`` reads."""
        return self.service.translations(_language(_message(update)))

    def _line(self, place: Place) -> StatusLine:
        line = self._lines.get(place.chat_id)
        if line is None:
            assert self.bot is not None
            line = self._lines[place.chat_id] = StatusLine(self.bot, place, on_empty=self._forget)
        return line

    def _forget(self, line: StatusLine) -> None:
        if self._lines.get(line.chat_id) is line:
            del self._lines[line.chat_id]

    async def _collect(self, message: Message) -> list[Message] | None:
        """The album's items once no more arrive; None for every item but the first (its handler does the work)."""
        key = (message.chat_id, message.media_group_id or "")
        if (album := self._albums.get(key)) is not None:
            album.add(message)
            return None
        album = self._albums[key] = _Album(message)
        try:
            await album.settled(self.album_wait)
        finally:
            del self._albums[key]
        return sorted(album.items, key=lambda item: item.message_id)

    async def aclose(self, grace: float) -> None:
        """Start no more jobs; give running ones ``grace`` seconds, then cancel the rest.

        What is cancelled, or had not begun, stays recorded as queued and is finished at the next start.
        """
        self.service.detach(self)
        if not self._jobs:
            return
        _, late = await asyncio.wait(set(self._jobs), timeout=grace)
        if late:
            logger.warning("%d Telegram job(s) still running at shutdown are left for the next start", len(late))
            for task in late:
                task.cancel()
            await asyncio.wait(late)


class _Album:
    """The items of one media group seen so far."""

    def __init__(self, first: Message) -> None:
        self.items = [first]
        self._arrived = asyncio.Event()

    def add(self, message: Message) -> None:
        self.items.append(message)
        self._arrived.set()

    async def settled(self, wait: float) -> None:
        """Return once ``wait`` seconds pass without a new item, or the album is full."""
        while len(self.items) < ALBUM_MAX:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), wait)
            except TimeoutError:
                return


class _InAlbum(filters.MessageFilter):
    def filter(self, message: Message) -> bool:
        return message.media_group_id is not None


def build_application(service: Service, settings: Settings, *, webhook: bool = False,
                      upload_limit: int = UPLOAD_LIMIT, album_wait: float = ALBUM_WAIT) -> Application:
    """The PTB Application: the Bot API at TELEGRAM_API_URL, flood pacing, concurrent updates, every handler."""
    from adapters.telegram.modes import pacer  # the one place that knows how requests are paced

    if settings.telegram_bot_token is None:
        raise SettingsError("TELEGRAM_BOT_TOKEN: not set")
    bot = TelegramBot(service, settings, upload_limit=upload_limit, album_wait=album_wait)
    root = settings.telegram_api_url.rstrip("/")
    builder = (
        Application.builder()
        .token(settings.telegram_bot_token.get_secret_value())
        .base_url(f"{root}/bot")  # methods at {root}/bot<token>/<method>
        .base_file_url(f"{root}/file/bot")  # files at {root}/file/bot<token>/<path>
        .rate_limiter(pacer())
        .concurrent_updates(True)  # one chat's slow job must not hold up the others; the core orders each chat
    )
    if webhook:
        builder = builder.updater(None)  # updates come in through adapters.web
    application = builder.build()

    message = filters.UpdateType.MESSAGE
    images_or_files = filters.PHOTO | filters.Document.ALL
    application.add_handlers([
        CommandHandler(["start", "help"], bot.show_help, filters=message),
        CommandHandler("usage", bot.show_usage, filters=message),
        CommandHandler("stats", bot.show_stats, filters=message),
        CommandHandler(CLEAN, bot.clean_reply, filters=message),
        MessageHandler(message & images_or_files & _InAlbum(), bot.clean_album),
        MessageHandler(message & filters.PHOTO, bot.clean_photo),
        MessageHandler(message & filters.Document.ALL, bot.clean_document),
        MessageHandler(message & (filters.Entity(MessageEntity.URL) | filters.Entity(MessageEntity.TEXT_LINK)),
                       bot.clean_link),
        MessageHandler(message & filters.ChatType.PRIVATE, bot.show_hint),
    ])
    application.add_error_handler(bot.log_error)
    application.bot_data[BOT_KEY] = bot
    bot.bot = application.bot
    return application


def bot_of(application: Application) -> TelegramBot:
    """The TelegramBot whose handlers ``application`` runs."""
    bot = application.bot_data[BOT_KEY]
    assert isinstance(bot, TelegramBot)
    return bot


def _jobs_for(message: Message, chat: ChatRef, *, request: int, language: str) -> list[ImageJob]:
    """The photo's largest size, the file, or else each link typed in the message; each answers ``message``.

    ``request`` is the message that asked (``message`` itself, or a /clean replying to it); ``language`` its sender's.
    """
    answer_to, asked = Place.of(message).encode(), str(request)
    attachment: PhotoSize | Document
    if message.photo:
        attachment, name = message.photo[-1], PHOTO_NAME
    elif message.document:
        attachment, name = message.document, message.document.file_name or DOCUMENT_NAME
    else:
        return [ImageJob.link(chat, url, answer_to=answer_to, request=asked, language=language)
                for url in _links(message)[:ALBUM_MAX]]
    return [ImageJob(chat=chat, source=attachment.file_id, answer_to=answer_to, filename=name,
                     size=attachment.file_size, request=asked, language=language)]


async def _download(bot: Bot, file_id: str, size: int | None) -> bytes:
    """The file's bytes through the Bot API; its URL (which holds the token) stays inside PTB."""
    images.check_announced_size(size, limit=DOWNLOAD_LIMIT)  # the cloud Bot API cannot serve more
    try:
        file = await bot.get_file(file_id)
        return bytes(await file.download_as_bytearray())
    except BadRequest as exc:
        if "too big" in exc.message.lower():  # the size was not announced, or not honestly
            raise FileTooLarge(size, DOWNLOAD_LIMIT) from None
        # "wrong file_id or the file is temporarily unavailable": gone, or no longer ours to fetch
        raise FileUnavailable(f"Telegram refused the download: {exc.message}") from None
    except TelegramError as exc:
        raise RuntimeError(f"downloading from Telegram failed: {exc.message}") from None


def _asked(message: Message, bot: Bot) -> bool:
    """Private chats always ask; in a group only a /clean or a mention of me does."""
    if message.chat.type == ChatType.PRIVATE:
        return True
    username = (bot.username or "").lower()
    entities = {**message.parse_entities(), **message.parse_caption_entities()}
    for entity, text in entities.items():
        said = text.lower()
        if entity.type == MessageEntity.BOT_COMMAND and said in {f"/{CLEAN}", f"/{CLEAN}@{username}"}:
            return True
        if entity.type == MessageEntity.MENTION and said == f"@{username}":
            return True
        if entity.type == MessageEntity.TEXT_MENTION and entity.user is not None and entity.user.id == bot.id:
            return True
    return False


def _links(message: Message) -> list[str]:
    """The http(s) links in a message's text, in order, once each."""
    found: list[str] = []
    for entity, text in message.parse_entities([MessageEntity.URL, MessageEntity.TEXT_LINK]).items():
        url = entity.url if entity.type == MessageEntity.TEXT_LINK and entity.url else text
        if "://" not in url:
            url = f"https://{url}"  # Telegram links bare domains too
        if url.lower().startswith(("http://", "https://")) and url not in found:
            found.append(url)
    return found


def _has_file(message: Message) -> bool:
    return bool(message.photo or message.document)


def _chat(message: Message) -> ChatRef:
    sender = message.from_user or message.sender_chat  # anonymous group admins speak as the chat
    return ChatRef(platform="telegram", chat_id=str(message.chat_id), user_id=str(sender.id if sender else 0))


def _language(message: Message) -> str:
    """The sender's language as their Telegram app says it (``zh-hans``); none for a group speaking as itself."""
    return (message.from_user.language_code or "") if message.from_user else ""


def _message(update: Update) -> Message:
    assert update.effective_message is not None  # every handler is registered for messages only
    return update.effective_message


async def _answer(update: Update, text: str) -> None:
    await _message(update).reply_text(text, do_quote=True)
