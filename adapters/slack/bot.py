"""SlackBot: one thin listener per way in, wired in ``build_app``; each acks, then starts the job in a task.

SlackBot is also the core's ``Platform`` for Slack: it fetches a record's file by id and answers in the place the
record names, so a job recorded before a restart is answered like any other."""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import aiohttp
import httpx
from slack_bolt import BoltResponse
from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.files import SlackFiles, name_of
from adapters.slack.replies import STATUS_INTERVAL, Answer, Place, SlackReplies, quietly
from bot import messages
from bot.config import Settings
from bot.core import Service
from bot.i18n import Translations
from bot.jobs import ChatRef, ImageJob

logger = logging.getLogger(__name__)

COMMAND = "/unmark"
SHORTCUT_ID = "remove_watermark"
EVENT_MEMORY = 600.0  # Slack redelivers after 0 s, 1 min and 5 min: remember event ids a little longer
MAX_REMEMBERED_EVENTS = 10_000
WORKING_REACTION, DONE_REACTION = "hourglass_flowing_sand", "white_check_mark"
TOP_CHANNELS = 5
LOCALE_MEMORY = 3600.0  # seconds a person's locale is remembered: one users.info per person an hour
MAX_REMEMBERED_LOCALES = 10_000
LOCALE_WAIT = 1.0  # at most this long for users.info before answering in English: a slash command is acked in 3 s

_LINK = re.compile(r"<(https?://[^|>\s]+)(?:\|[^>]*)?>|(https?://\S+)")  # Slack writes links as <url|label>
_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")

Ack = Callable[..., Awaitable[Any]]


class SlackBot:
    """The Slack side of unmark: listeners (bound methods) that turn requests into jobs, and the jobs' tasks."""

    name = "slack"

    def __init__(self, service: Service, settings: Settings, *, client: AsyncWebClient, http: httpx.AsyncClient,
                 status_interval: float = STATUS_INTERVAL) -> None:
        self.service, self.settings, self.client = service, settings, client
        self._files = SlackFiles(client, http)
        self._status_interval = status_interval
        self._tasks: set[asyncio.Task[None]] = set()
        self._responders: dict[ImageJob, AsyncRespond] = {}  # a slash command's response_url, while we have it
        self._seen = _RecentIds(EVENT_MEMORY, MAX_REMEMBERED_EVENTS)
        self._locales = _RecentLocales(LOCALE_MEMORY, MAX_REMEMBERED_LOCALES)
        self.app = build_app(self)

    # --- listeners -------------------------------------------------------------------------------------------

    async def skip_repeated_events(self, body: dict[str, Any],
                                   next_: Callable[[], Awaitable[None]]) -> BoltResponse | None:
        """Slack redelivers an event it thinks we missed (X-Slack-Retry-Num); each event id is handled once."""
        event_id = body.get("event_id")
        if isinstance(event_id, str) and not self._seen.first_time(event_id):
            logger.info("Slack redelivered event %s; it was handled already", event_id)
            return BoltResponse(status=200, body="")
        await next_()
        return None

    async def clean_direct_message(self, event: dict[str, Any], context: AsyncBoltContext) -> None:
        """A direct message: clean its images, or answer its words (a link, usage, help)."""
        if event.get("channel_type") != "im" or event.get("bot_id") or event.get("subtype") not in (None, "file_share"):
            return
        place = Place(event["channel"], event.get("thread_ts"), event["ts"])
        chat = self._chat(context, event["channel"], event.get("user", ""))
        if files := event.get("files"):
            self._start(self._clean_files(chat, place, files, request=event["ts"]))
        else:
            self._start(self._answer_words(chat, place, event.get("text", ""), otherwise=help_text,
                                           request=event["ts"]))

    async def clean_mentioned_images(self, event: dict[str, Any], context: AsyncBoltContext) -> None:
        """A channel message that mentions the bot: clean its images, answering in a thread under it."""
        if event.get("bot_id") or event["channel"].startswith("D"):  # direct messages arrive as message events
            return
        place = Place(event["channel"], event.get("thread_ts") or event["ts"], event["ts"])
        chat = self._chat(context, event["channel"], event.get("user", ""))
        if files := event.get("files"):
            self._start(self._clean_files(chat, place, files, request=event["ts"]))
        elif event.get("thread_ts") not in (None, event["ts"]) and intent(event.get("text", ""))[0] == "unknown":
            self._start(self._clean_thread_parent(chat, place, event.get("text", ""), request=event["ts"]))
        else:
            self._start(self._answer_words(chat, place, event.get("text", ""), otherwise=_no_image,
                                           request=event["ts"]))

    async def clean_shortcut_message(self, ack: Ack, shortcut: dict[str, Any], respond: AsyncRespond,
                                     context: AsyncBoltContext) -> None:
        """The "Remove watermark" shortcut: clean the chosen message's images in its thread."""
        await ack()
        message, channel = shortcut.get("message") or {}, shortcut["channel"]["id"]
        ts = shortcut.get("message_ts") or message.get("ts")
        place = Place(channel, message.get("thread_ts") or ts, ts)
        chat = self._chat(context, channel, shortcut["user"]["id"])
        kind, url = intent(message.get("text", ""))
        if files := message.get("files"):  # answered in the language of who chose the shortcut, not of the poster
            self._start(self._clean_files(chat, place, files))
        elif kind == "link" and url:
            self._start(self._clean_link(chat, place, url))
        else:
            self._start(self._respond_with(respond, self._no_image_for(chat.user_id)))

    async def answer_command(self, ack: Ack, command: dict[str, Any], respond: AsyncRespond,
                             context: AsyncBoltContext) -> None:
        """``/unmark <link>`` cleans the link; ``usage``, ``stats`` and ``help`` answer only the person."""
        kind, url = intent(command.get("text", ""))
        language = await self._language(command["user_id"])
        if kind in ("help", "unknown"):
            tr = self.service.translations(language)
            await ack(text=help_text(tr) if kind == "help" else tr.gettext(messages.SLACK_COMMAND_HINT),
                      response_type="ephemeral")
            return
        await ack()
        chat = self._chat(context, command["channel_id"], command["user_id"])
        if kind == "link" and url:
            self._start(self._clean_link(chat, Place(command["channel_id"]), url, respond=respond))
        else:
            self._start(self._respond_with(respond, self._words(kind, chat)))

    async def show_home(self, event: dict[str, Any], context: AsyncBoltContext) -> None:
        """The App Home tab: this workspace's usage and the limits."""
        if event.get("tab", "home") == "home":
            self._start(self._publish_home(_team(context), event["user"]))

    # --- the work, in tasks ------------------------------------------------------------------------------------

    async def _clean_files(self, chat: ChatRef, place: Place, files: list[dict[str, Any]], *,
                           request: str | None = None) -> None:
        """One job per file of one message, with an hourglass on the message until all are answered."""
        several = len(files) > 1
        await self._react("add", place, WORKING_REACTION)
        language = await self._language(chat.user_id)
        jobs = [await self._files.job(chat, file, request=request, language=language,
                                      answer_to=Answer(place, label=name_of(file) if several else None).encode())
                for file in files]
        outcomes = await asyncio.gather(*(self.service.handle(job) for job in jobs))
        await self._react("remove", place, WORKING_REACTION)
        if all(outcome.ok for outcome in outcomes):
            await self._react("add", place, DONE_REACTION)

    async def _clean_thread_parent(self, chat: ChatRef, place: Place, text: str, *, request: str) -> None:
        """A mention without an image in a thread: "clean this" means the image the thread is about."""
        assert place.thread_ts is not None
        replies = await quietly(self.client.conversations_replies(channel=place.channel, ts=place.thread_ts,
                                                                   limit=1))
        parent = (replies or {}).get("messages") or [{}]
        if files := parent[0].get("files"):
            await self._clean_files(chat, place, files, request=request)
        else:
            await self._answer_words(chat, place, text, otherwise=_no_image)

    async def _clean_link(self, chat: ChatRef, place: Place, url: str, *, respond: AsyncRespond | None = None,
                          request: str | None = None) -> None:
        private_to = chat.user_id if respond is not None else None
        job = ImageJob.link(chat, url, answer_to=Answer(place, private_to=private_to).encode(), request=request,
                            language=await self._language(chat.user_id))
        if respond is not None:
            self._responders[job] = respond
        await self.service.handle(job)

    async def _answer_words(self, chat: ChatRef, place: Place, text: str, *,
                            otherwise: Callable[[Translations], str], request: str | None = None) -> None:
        kind, url = intent(text)
        if kind == "link" and url:
            await self._clean_link(chat, place, url, request=request)
            return
        if kind == "unknown":
            reply = otherwise(self.service.translations(await self._language(chat.user_id)))
        else:
            reply = await self._words(kind, chat)
        await self.client.chat_postMessage(channel=place.channel, thread_ts=place.thread_ts, text=reply)

    async def _no_image_for(self, user: str) -> str:
        return _no_image(self.service.translations(await self._language(user)))

    async def _words(self, kind: str, chat: ChatRef) -> str:
        language = await self._language(chat.user_id)
        if kind == "usage":
            return await self.service.usage_text(chat, language=language)
        if kind == "stats":
            return await self.service.stats_text(chat, language=language)
        return help_text(self.service.translations(language))

    @staticmethod
    async def _respond_with(respond: AsyncRespond, text: Awaitable[str]) -> None:
        await respond(text=await text, response_type="ephemeral")

    async def _publish_home(self, team: str, user: str) -> None:
        tr = self.service.translations(await self._language(user))
        rows = [row for row in await self.service.usage.usage(platform="slack", days=30)
                if (row.chat_id or "").startswith(f"{team}:")]
        busiest: dict[str, int] = {}
        for row in rows:
            channel = (row.chat_id or "").partition(":")[2]
            name = tr.gettext(messages.SLACK_DIRECT_MESSAGES) if channel.startswith("D") else f"<#{channel}>"
            busiest[name] = busiest.get(name, 0) + row.last_30_days
        top = sorted(((name, n) for name, n in busiest.items() if n), key=lambda item: -item[1])[:TOP_CHANNELS]
        paragraphs = messages.slack_home(
            today=sum(row.today for row in rows), last_30_days=sum(row.last_30_days for row in rows),
            top_channels=top, limit=self.settings.daily_limit, exempt=self.settings.is_admin("slack", user), tr=tr)
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": tr.gettext(messages.SLACK_HOME_TITLE)}}]
        blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": text}} for text in paragraphs]
        await self.client.views_publish(user_id=user, view={"type": "home", "blocks": blocks})

    async def _react(self, action: str, place: Place, name: str) -> None:
        if place.message_ts is None:
            return
        call = self.client.reactions_add if action == "add" else self.client.reactions_remove
        await quietly(call(channel=place.channel, timestamp=place.message_ts, name=name))

    # --- the core's Platform ----------------------------------------------------------------------------------

    async def fetch(self, job: ImageJob) -> bytes:
        """The shared file's bytes, by id, with the bot token."""
        return await self._files.fetch(job.source)

    @contextlib.asynccontextmanager
    async def replies(self, job: ImageJob) -> AsyncIterator[SlackReplies]:
        """Answers in the place the job names (ephemeral for a slash command's status and errors)."""
        answer = Answer.decode(job.answer_to)
        replies = SlackReplies(self.client, answer.place, label=answer.label, private_to=answer.private_to,
                               respond=self._responders.pop(job, None), interval=self._status_interval,
                               tr=self.service.translations(job.language))
        try:
            yield replies
        finally:
            await replies.close()

    async def resume(self) -> None:
        """Attach to the core and start the jobs the last stop left unfinished, before any new event."""
        for work in await self.service.attach(self):
            self._start(work)

    async def _language(self, user: str) -> str:
        """The person's Slack locale (``zh-CN``), remembered an hour; "" (English) if Slack does not say in time.

        Needs the ``users:read`` scope; without it, or with UNMARK_LANGUAGE set, nobody is asked.
        """
        if self.settings.language or not user:
            return ""
        if (known := self._locales.get(user)) is not None:
            return known
        locale = ""
        try:
            async with asyncio.timeout(LOCALE_WAIT):
                found = await self.client.users_info(user=user, include_locale=True)
            locale = str((found.get("user") or {}).get("locale") or "")
        except SlackApiError as exc:  # e.g. missing_scope: remembered too, so we do not ask for every message
            logger.info("users.info for %s failed (%s); answering in English", user, exc.response.get("error"))
        except (TimeoutError, aiohttp.ClientError) as exc:
            logger.info("users.info for %s failed (%s); answering in English", user, type(exc).__name__)
            return ""
        self._locales.put(user, locale)
        return locale

    @staticmethod
    def _chat(context: AsyncBoltContext, channel: str, user: str) -> ChatRef:
        """Usage and quotas count per conversation, scoped by workspace: ``T123:C456``."""
        return ChatRef("slack", f"{_team(context)}:{channel}", user)

    # --- tasks -------------------------------------------------------------------------------------------------

    def _start(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run work after the ack, keeping a reference so shutdown can wait for it."""
        task = asyncio.create_task(_logged(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def join(self, timeout: float | None = None) -> None:
        """Wait until every job started so far (and any it started) has finished."""
        async with asyncio.timeout(timeout):
            while self._tasks:
                await asyncio.wait(set(self._tasks))

    async def aclose(self, grace: float) -> None:
        """Start no more jobs; give running ones ``grace`` seconds, then cancel the rest.

        What is cancelled, or had not begun, stays recorded as queued and is finished at the next start.
        """
        self.service.detach(self)
        try:
            await self.join(grace)
        except TimeoutError:
            pending = set(self._tasks)
            logger.warning("%d Slack job(s) still running at shutdown are left for the next start", len(pending))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


def build_app(bot: SlackBot) -> AsyncApp:
    """Wire every listener in one place; Bolt acks events itself and drops the bot's own messages."""
    secret = bot.settings.slack_signing_secret
    app = AsyncApp(name="unmark", client=bot.client, signing_secret=secret.get_secret_value() if secret else "",
                   ignoring_self_events_enabled=True)
    app.use(bot.skip_repeated_events)
    app.event("message")(bot.clean_direct_message)
    app.event("app_mention")(bot.clean_mentioned_images)
    app.message_shortcut(SHORTCUT_ID)(bot.clean_shortcut_message)
    app.command(COMMAND)(bot.answer_command)
    app.event("app_home_opened")(bot.show_home)
    return app


def intent(text: str) -> tuple[str, str | None]:
    """What typed words ask for: ("link", url), ("help" | "usage" | "stats", None) or ("unknown", None)."""
    text = _MENTION.sub("", text).strip()
    if match := _LINK.search(text):
        return "link", html.unescape(match.group(1) or match.group(2))
    word = text.split()[0].lower() if text else "help"
    return (word, None) if word in {"help", "usage", "stats"} else ("unknown", None)


def help_text(tr: Translations) -> str:
    """What the bot does, then how to reach it in Slack."""
    return f"{messages.about(tr=tr)}\n\n{tr.gettext(messages.SLACK_HELP)}"


def _no_image(tr: Translations) -> str:
    return tr.gettext(messages.SLACK_NO_IMAGE)


class _RecentIds:
    """Ids seen within ``ttl`` seconds (at most ``limit`` of them), so a redelivery is recognised."""

    def __init__(self, ttl: float, limit: int) -> None:
        self._ttl, self._limit = ttl, limit
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_time(self, key: str) -> bool:
        """Remember ``key``; False if it was seen within the window."""
        now = time.monotonic()
        while self._seen and (next(iter(self._seen.values())) < now - self._ttl or len(self._seen) >= self._limit):
            self._seen.popitem(last=False)
        if key in self._seen:
            return False
        self._seen[key] = now
        return True


class _RecentLocales:
    """People's locales, remembered for ``ttl`` seconds (at most ``limit`` of them, the oldest forgotten first)."""

    def __init__(self, ttl: float, limit: int) -> None:
        self._ttl, self._limit = ttl, limit
        self._values: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def get(self, key: str) -> str | None:
        """The value remembered for ``key``, if it is recent."""
        found = self._values.get(key)
        if found is None or found[0] < time.monotonic() - self._ttl:
            return None
        return found[1]

    def put(self, key: str, value: str) -> None:
        """Remember ``value`` for ``key`` from now on."""
        self._values.pop(key, None)
        while len(self._values) >= self._limit:
            self._values.popitem(last=False)
        self._values[key] = (time.monotonic(), value)


def _team(context: AsyncBoltContext) -> str:
    return context.team_id or context.enterprise_id or ""


async def _logged(work: Awaitable[Any]) -> None:
    try:
        await work
    except Exception:
        logger.exception("a Slack task failed")
