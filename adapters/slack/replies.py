"""SlackReplies: one job's answers in Slack: a status message edited as it goes, the result uploaded in the thread."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import messages
from bot.i18n import ENGLISH, Translations

logger = logging.getLogger(__name__)

STATUS_INTERVAL = 1.0  # seconds between edits of one status message: Slack allows about a message a second per channel


@dataclass(frozen=True, slots=True)
class Place:
    """Where in Slack a request came from, and so where its answers go."""

    channel: str
    thread_ts: str | None = None  # answer in this thread; None answers at the top of the conversation
    message_ts: str | None = None  # the message that asked, for reactions


@dataclass(frozen=True, slots=True)
class Answer:
    """How a job answers, as its record keeps it (``answer_to``): the place, and what a restart must not forget."""

    place: Place
    label: str | None = None  # one of several images of a message: each of its answers says which
    private_to: str | None = None  # a slash command's asker: its status and errors are for them alone

    def encode(self) -> str:
        """The record's ``answer_to``."""
        return json.dumps({"channel": self.place.channel, "thread_ts": self.place.thread_ts,
                           "message_ts": self.place.message_ts, "label": self.label, "private_to": self.private_to})

    @classmethod
    def decode(cls, text: str) -> Answer:
        """What a record's ``answer_to`` says."""
        fields = json.loads(text)
        return cls(Place(fields["channel"], fields.get("thread_ts"), fields.get("message_ts")),
                   label=fields.get("label"), private_to=fields.get("private_to"))


class SlackReplies:
    """Replies for one job: a status message edited at most once per interval, the result uploaded in the thread.

    With ``private_to`` (a slash command's asker) the status and errors are ephemeral instead, seen only by the
    person who asked: through ``respond`` (the command's response_url) while we have it, and after a restart,
    which forgets it, through chat.postEphemeral. The cleaned image is still uploaded into the conversation.
    """

    def __init__(self, client: AsyncWebClient, place: Place, *, label: str | None = None,
                 private_to: str | None = None, respond: AsyncRespond | None = None,
                 interval: float = STATUS_INTERVAL, tr: Translations = ENGLISH) -> None:
        self._client, self._place, self._label, self._respond = client, place, label, respond
        self._tr = tr  # the words of the person who asked
        self._private_to = private_to
        self._interval = interval
        self._ts: str | None = None  # the status message, once posted
        self._shown, self._wanted, self._shown_at = "", "", 0.0
        self._editor: asyncio.Task[None] | None = None

    async def progress(self, text: str) -> None:
        """Post the status line once, then edit it at most once per interval; the latest text wins."""
        text = self._labelled(text)
        if self._private_to is not None:
            if not self._shown:  # a response_url takes five answers: say "working" once, not every percent
                self._shown = text
                await quietly(self._ephemeral(text))
            return
        self._wanted = text
        if self._ts is None:
            posted = await quietly(self._client.chat_postMessage(
                channel=self._place.channel, thread_ts=self._place.thread_ts, text=text))
            if posted is not None:
                self._ts, self._shown, self._shown_at = posted["ts"], text, time.monotonic()
        elif self._editor is None or self._editor.done():
            self._editor = asyncio.create_task(self._edit_soon())

    async def send_image(self, data: bytes, filename: str, caption: str) -> None:
        """Upload the result (files_upload_v2) into the conversation and thread, then remove the status."""
        await self._client.files_upload_v2(
            channel=self._place.channel, thread_ts=self._place.thread_ts, file=data, filename=filename,
            title=filename, initial_comment=caption)
        await self._stop_editing()
        if self._ts is not None:
            await quietly(self._client.chat_delete(channel=self._place.channel, ts=self._ts))
            self._ts = None
        if self._respond is not None and self._shown:
            # The private "Removing the watermark…" would stay under the posted result: take it back.
            await quietly(self._respond(delete_original=True))
            self._shown = ""

    async def say(self, text: str) -> None:
        """Turn the status message into this sentence (or post it); ephemeral for slash commands."""
        text = self._labelled(text)
        if self._private_to is not None:
            await self._ephemeral(text)
            return
        await self._stop_editing()
        if self._ts is not None and await quietly(
                self._client.chat_update(channel=self._place.channel, ts=self._ts, text=text)) is not None:
            return
        await self._client.chat_postMessage(channel=self._place.channel, thread_ts=self._place.thread_ts, text=text)

    async def close(self) -> None:
        """The job is over: no edit may still be on its way."""
        await self._stop_editing()

    async def _ephemeral(self, text: str) -> Any:
        if self._respond is not None:
            return await self._respond(text=text, response_type="ephemeral")
        assert self._private_to is not None
        return await self._client.chat_postEphemeral(channel=self._place.channel, user=self._private_to,
                                                     thread_ts=self._place.thread_ts, text=text)

    async def _edit_soon(self) -> None:
        await asyncio.sleep(max(0.0, self._shown_at + self._interval - time.monotonic()))
        text = self._wanted
        if self._ts is not None and text != self._shown:
            await quietly(self._client.chat_update(channel=self._place.channel, ts=self._ts, text=text))
            self._shown, self._shown_at = text, time.monotonic()

    async def _stop_editing(self) -> None:
        if self._editor is not None and not self._editor.done():
            self._editor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._editor

    def _labelled(self, text: str) -> str:
        return messages.labelled(self._label, text, tr=self._tr) if self._label else text


async def quietly(call: Awaitable[Any]) -> Any:
    """Await a cosmetic Web API call (status line, reaction); its failure is logged and is never the job's."""
    try:
        return await call
    except (SlackApiError, aiohttp.ClientError) as exc:
        logger.info("Slack call failed: %s", exc)
        return None
