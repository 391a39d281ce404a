"""A loopback fake of the Telegram Bot API that python-telegram-bot talks to unchanged, as a Starlette app.

Point the bot at it with ``TELEGRAM_API_URL=<url>``: methods are served at ``/bot<token>/<method>`` (query,
urlencoded, multipart or JSON parameters, as Telegram accepts) and files at ``/file/bot<token>/<path>``.
``async with fake.running() as url:`` serves it on 127.0.0.1 (and wakes any long poll on the way out). Files
live in memory; every request is recorded in ``fake.calls`` with its parsed parameters, uploaded bytes and the
status it got, so tests assert on the real wire traffic.

People act on the control side; each call returns the message as Telegram would deliver it in an update:

- ``chat = fake.private_chat()`` or ``fake.group_chat()``; ``fake.person("Bob")`` for a second sender, and
  ``fake.person("Li", language_code="zh-hans")`` for one whose app is in another language.
- ``fake.send_photo(chat, jpeg)``: a photo with two sizes, a thumbnail and the image itself (largest last).
- ``fake.send_document(chat, data, file_name="x.png", mime_type="text/plain", size=25_000_000)``: ``size``
  pretends the file is that big (announced in the update, and refused by getFile above 20 MB).
- ``fake.send_album(chat, [jpeg, …], caption="/clean")``: one update per item, one ``media_group_id``.
- ``fake.send_text(chat, "/clean", reply_to=message)``: commands, @mentions and links get their entities.
- ``fake.privacy_mode = True``: group messages reach the bot only if they start with "/", mention it or
  reply to it (what BotFather's privacy mode promises).

Misbehaviour, scripted:

- ``fake.fail("sendDocument", 429, retry_after=1, times=2)``, ``fake.fail("getFile", 502)``.
- ``fake.hang("sendDocument", 30.0)``: hold the next such request (``"file"`` for a file download) that long
  before handling it; a client that hangs up meanwhile (killed) leaves nothing behind, as a request Telegram
  never finished reading would.
- ``fake.forget(file_id)``: the file can no longer be fetched (getFile answers 400, as for an expired id).
- ``fake.flood_limit(per_chat=5, seconds=1.0, retry_after=1)``: message-sending calls past the limit in one
  chat get a 429 with ``retry_after``, like Telegram's flood control.
- Always, like Telegram: getFile of a file over 20 MB is a 400 "file is too big"; a document over 50 MB (a
  photo over 10 MB) a 413; editing a message to the text it has is a 400 "message is not modified".

What a person would see: ``fake.transcript(chat)`` lists the bot's messages still in the chat, and
``fake.sent(chat)`` gives them as ``BotMessage`` records (with the uploaded bytes and the edit history).
``await fake.wait_for(lambda: …)`` polls state with a bounded wait. In webhook mode (after the bot's
``setWebhook``) updates are not polled: ``await fake.deliver()`` POSTs them to the webhook with the secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import re
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import PIL.Image
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.servers import serve

TOKEN = "123456789:TEST-fake_token_for_the_loopback_api"
BOT_USERNAME = "unmark_test_bot"
DOWNLOAD_LIMIT = 20_000_000  # getFile through the cloud Bot API
DOCUMENT_LIMIT = 50_000_000
PHOTO_LIMIT = 10_000_000
LONG_POLL_CAP = 50.0  # seconds: Telegram caps getUpdates' timeout too
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
FLOODED_METHODS = frozenset({"sendmessage", "senddocument", "sendphoto", "editmessagetext", "sendmediagroup"})
JSON_FIELDS = frozenset({"reply_parameters", "reply_markup", "commands", "scope", "allowed_updates", "entities",
                         "caption_entities", "link_preview_options"})
INT_FIELDS = frozenset({"chat_id", "message_id", "offset", "limit", "timeout", "reply_to_message_id",
                        "message_thread_id", "max_connections"})
BOOL_FIELDS = frozenset({"disable_content_type_detection", "drop_pending_updates", "disable_notification",
                         "protect_content", "allow_sending_without_reply"})
NOT_MODIFIED = ("Bad Request: message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message")
ENTITY_PATTERNS = (  # what Telegram's clients mark up in a text or caption
    ("bot_command", re.compile(r"(?<![\w/])/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?")),
    ("mention", re.compile(r"(?<![\w@])@[A-Za-z0-9_]{5,32}")),
    ("url", re.compile(r"https?://[^\s<>\"]+")),
)


@dataclass(slots=True)
class Upload:
    """A file part of a multipart request."""

    filename: str | None
    content_type: str | None
    data: bytes


@dataclass(slots=True)
class Call:
    """One request the fake received: the method as called, its parsed parameters and files, and the answer."""

    method: str
    params: dict[str, Any]
    files: dict[str, Upload]
    at: float  # time.monotonic() when the request arrived
    status: int = 0
    description: str | None = None
    done_at: float = 0.0  # when the body had been read (an upload's end)


@dataclass(slots=True)
class BotMessage:
    """A message the bot sent, as the chat has it."""

    message_id: int
    chat_id: int
    sent_at: float
    text: str | None = None
    caption: str | None = None
    document: Upload | None = None
    photo: Upload | None = None
    reply_to: int | None = None
    deleted: bool = False
    edits: list[tuple[float, str]] = field(default_factory=list)

    def line(self) -> str:
        """How the chat shows it, in one line."""
        if self.document is not None:
            return f"[{self.document.filename}] {self.caption or ''}".rstrip()
        if self.photo is not None:
            return f"[photo] {self.caption or ''}".rstrip()
        return self.text or ""


@dataclass(slots=True)
class StoredFile:
    file_id: str
    unique_id: str
    path: str
    data: bytes
    size: int  # what the file pretends to weigh (len(data) unless a test says otherwise)


@dataclass(slots=True)
class _Rule:
    method: str
    status: int
    times: int
    retry_after: int | None
    description: str | None


@dataclass(slots=True)
class Webhook:
    url: str
    secret: str | None
    allowed_updates: list[str] | None


class FakeBotAPI:
    """The Bot API subset unmark uses, with people to script and faults to inject."""

    def __init__(self, token: str = TOKEN, *, username: str = BOT_USERNAME, bot_id: int | None = None) -> None:
        self.token = token
        self.bot_user = {"id": bot_id or int(token.split(":")[0]), "is_bot": True, "first_name": "unmark",
                         "username": username}
        self.privacy_mode = False
        self.calls: list[Call] = []
        self.actions: list[tuple[int, str]] = []
        # scope ("default", "chat:<id>"), then "/<language_code>" for a menu in one language → commands
        self.commands: dict[str, list[tuple[str, str]]] = {}
        self.webhook: Webhook | None = None
        self.files: dict[str, StoredFile] = {}
        self.url = ""
        self._chats: dict[int, dict[str, Any]] = {}
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}  # what people sent, by (chat, id)
        self._sent: dict[tuple[int, int], BotMessage] = {}  # what the bot sent
        self._message_ids: dict[int, itertools.count[int]] = defaultdict(lambda: itertools.count(1))
        self._file_ids = itertools.count(1)
        self._update_ids = itertools.count(700)
        self._person_ids = itertools.count(1001)
        self._group_ids = itertools.count(1)
        self._album_ids = itertools.count(1)
        self._pending: list[dict[str, Any]] = []  # updates not yet confirmed by an offset (or a webhook 2xx)
        self._arrived = asyncio.Event()
        self._polls = 0
        self._closed = False
        self._rules: list[_Rule] = []
        self._hangs: dict[str, float] = {}  # method (lowercase, or "file") → seconds, for the next such request
        self._flood: tuple[int, float, int] | None = None
        self._flood_windows: dict[int, deque[float]] = defaultdict(deque)
        self.default_person = self.person("Alice")
        self.app = Starlette(routes=[
            Route("/bot{token}/{method}", self._method, methods=["GET", "POST"]),
            Route("/file/bot{token}/{path:path}", self._file, methods=["GET"]),
        ])

    # --- serving ----------------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        """Serve on 127.0.0.1 for the length of the block; yields the URL to use as TELEGRAM_API_URL."""
        async with serve(self.app) as url:
            self.url = url
            try:
                yield url
            finally:
                self._closed = True  # long polls answer at once, so the server stops without waiting
                self._arrived.set()

    # --- people -----------------------------------------------------------------------------------------------

    def person(self, first_name: str, *, language_code: str | None = None) -> dict[str, Any]:
        """Someone who can send messages; ``language_code`` is their app's language (an IETF tag, as Telegram
        sends it), left out as Telegram does when it is unknown."""
        user_id = next(self._person_ids)
        person = {"id": user_id, "is_bot": False, "first_name": first_name,
                  "username": first_name.lower() + str(user_id)}
        if language_code is not None:
            person["language_code"] = language_code
        return person

    def private_chat(self, person: dict[str, Any] | None = None) -> dict[str, Any]:
        """A private chat between ``person`` (Alice by default) and the bot."""
        person = person or self.default_person
        chat = {"id": person["id"], "type": "private", "first_name": person["first_name"]}
        self._chats[chat["id"]] = chat
        return chat

    def group_chat(self, title: str = "Friends") -> dict[str, Any]:
        """A supergroup the bot is a member of."""
        chat = {"id": -1_000_000_000_000 - next(self._group_ids), "type": "supergroup", "title": title}
        self._chats[chat["id"]] = chat
        return chat

    def send_photo(self, chat: dict[str, Any], data: bytes, *, caption: str | None = None,
                   sender: dict[str, Any] | None = None, reply_to: dict[str, Any] | None = None,
                   media_group_id: str | None = None) -> dict[str, Any]:
        """A photo: Telegram's sizes, smallest first; the largest is ``data`` itself."""
        with PIL.Image.open(io.BytesIO(data)) as picture:
            width, height = picture.size
            thumb = picture.convert("RGB")
            thumb.thumbnail((90, 90))
            out = io.BytesIO()
            thumb.save(out, "JPEG", quality=70)
        sizes = []
        for blob, (w, h) in ((out.getvalue(), thumb.size), (data, (width, height))):
            stored = self._store(blob, "photos", ".jpg")
            sizes.append({"file_id": stored.file_id, "file_unique_id": stored.unique_id, "width": w, "height": h,
                          "file_size": stored.size})
        return self._deliver(chat, {"photo": sizes}, caption=caption, sender=sender, reply_to=reply_to,
                             media_group_id=media_group_id)

    def send_document(self, chat: dict[str, Any], data: bytes, *, file_name: str | None = "image.png",
                      mime_type: str | None = "image/png", size: int | None = None, announce_size: bool = True,
                      caption: str | None = None, sender: dict[str, Any] | None = None,
                      reply_to: dict[str, Any] | None = None, media_group_id: str | None = None) -> dict[str, Any]:
        """A file, with whatever name and mime type the sender's client claimed."""
        stored = self._store(data, "documents", "." + (file_name or "file").rpartition(".")[2], size=size)
        document: dict[str, Any] = {"file_id": stored.file_id, "file_unique_id": stored.unique_id}
        if file_name is not None:
            document["file_name"] = file_name
        if mime_type is not None:
            document["mime_type"] = mime_type
        if announce_size:
            document["file_size"] = stored.size
        return self._deliver(chat, {"document": document}, caption=caption, sender=sender, reply_to=reply_to,
                             media_group_id=media_group_id)

    def send_album(self, chat: dict[str, Any], items: list[bytes], *, caption: str | None = None,
                   sender: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """An album of photos: one update each, sharing a media_group_id; the caption rides on the first."""
        group = f"album-{next(self._album_ids)}"
        return [self.send_photo(chat, data, caption=caption if i == 0 else None, sender=sender, media_group_id=group)
                for i, data in enumerate(items)]

    def send_text(self, chat: dict[str, Any], text: str, *, sender: dict[str, Any] | None = None,
                  reply_to: dict[str, Any] | None = None) -> dict[str, Any]:
        """A text message (a command, a link, a chat line)."""
        fields: dict[str, Any] = {"text": text}
        if entities := _entities(text):
            fields["entities"] = entities
        return self._deliver(chat, fields, sender=sender, reply_to=reply_to)

    # --- scripting --------------------------------------------------------------------------------------------

    def fail(self, method: str, status: int, *, times: int = 1, retry_after: int | None = None,
             description: str | None = None) -> None:
        """Answer the next ``times`` calls of ``method`` with an error (and ``retry_after`` on a 429)."""
        self._rules.append(_Rule(method.lower(), status, times, retry_after, description))

    def hang(self, method: str, seconds: float) -> None:
        """Hold the next call of ``method`` (or ``"file"``, a download) ``seconds`` before handling it."""
        self._hangs[method.lower()] = seconds

    def forget(self, file_id: str) -> None:
        """The file can no longer be fetched, as when Telegram no longer serves an old file id."""
        del self.files[file_id]

    @staticmethod
    async def _held(seconds: float | None, request: Request) -> bool:
        """Wait out a hang() of ``seconds``; True if the client hung up meanwhile (the call then never happened)."""
        if seconds is None:
            return False
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if await request.is_disconnected():
                return True
            await asyncio.sleep(0.05)
        return False

    def flood_limit(self, *, per_chat: int, seconds: float = 1.0, retry_after: int = 1) -> None:
        """At most ``per_chat`` message-sending calls per chat in any ``seconds``; the rest get 429s."""
        self._flood = (per_chat, seconds, retry_after)

    # --- observing --------------------------------------------------------------------------------------------

    def sent(self, chat: dict[str, Any], *, deleted: bool = False) -> list[BotMessage]:
        """The bot's messages in ``chat`` in the order sent (deleted ones only if asked)."""
        return [m for (chat_id, _), m in sorted(self._sent.items()) if chat_id == chat["id"]
                and (deleted or not m.deleted)]

    def transcript(self, chat: dict[str, Any]) -> list[str]:
        """What a person sees from the bot in ``chat`` now, one line per message."""
        return [m.line() for m in self.sent(chat)]

    def documents(self, chat: dict[str, Any]) -> list[BotMessage]:
        """The files the bot sent to ``chat``, in order."""
        return [m for m in self.sent(chat) if m.document is not None]

    def calls_to(self, method: str, *, chat: dict[str, Any] | None = None) -> list[Call]:
        """Recorded calls of ``method`` (any case), optionally only those for ``chat``."""
        return [c for c in self.calls if c.method.lower() == method.lower()
                and (chat is None or c.params.get("chat_id") == chat["id"])]

    async def wait_for(self, condition: Callable[[], object], *, timeout: float = 10.0, what: str = "") -> None:
        """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or condition}; calls: "
                                     f"{[(c.method, c.status) for c in self.calls[-20:]]}")
            await asyncio.sleep(0.01)

    async def deliver(self) -> list[int]:
        """Webhook mode: POST each pending update to the webhook, secret header included, as Telegram does."""
        assert self.webhook is not None, "the bot has not called setWebhook"
        statuses = []
        headers = {SECRET_HEADER: self.webhook.secret} if self.webhook.secret else {}
        async with httpx.AsyncClient(timeout=10.0) as client:
            while self._pending:
                response = await client.post(self.webhook.url, json=self._pending[0], headers=headers)
                statuses.append(response.status_code)
                if not response.is_success:
                    break  # Telegram keeps it and tries again later
                self._pending.pop(0)
        return statuses

    # --- the Bot API ------------------------------------------------------------------------------------------

    async def _method(self, request: Request) -> Response:
        call = Call(request.path_params["method"], {}, {}, time.monotonic())
        self.calls.append(call)
        hang = self._hangs.pop(call.method.lower(), None)  # the call that arrives takes it, even if cut off mid-upload
        try:
            call.params, call.files = await _parameters(request)
        except ValueError as exc:
            return self._error(call, 400, f"Bad Request: {exc}")
        call.done_at = time.monotonic()
        if await self._held(hang, request):
            call.status = 499  # nginx's "client closed request": nothing was done
            return Response(status_code=499)
        if request.path_params["token"] != self.token:
            return self._error(call, 401, "Unauthorized")
        name = call.method.lower()
        if (rule := self._take_rule(name)) is not None:
            return self._error(call, rule.status, rule.description, retry_after=rule.retry_after)
        if name in FLOODED_METHODS and (wait := self._flooded(call.params.get("chat_id"))):
            return self._error(call, 429, None, retry_after=wait)
        handler = getattr(self, f"_api_{name}", None)
        if handler is None:
            return self._error(call, 404, "Not Found")
        try:
            result = await handler(call)
        except _ApiError as exc:
            return self._error(call, exc.status, exc.description)
        call.status = 200
        return JSONResponse({"ok": True, "result": result})

    async def _file(self, request: Request) -> Response:
        path = request.path_params["path"]
        call = Call("file", {"path": path}, {}, time.monotonic(), done_at=time.monotonic())
        self.calls.append(call)
        if await self._held(self._hangs.pop("file", None), request):
            call.status = 499
            return Response(status_code=499)
        stored = next((f for f in self.files.values() if f.path == path), None)
        if request.path_params["token"] != self.token or stored is None:
            call.status = 404
            return JSONResponse({"ok": False, "error_code": 404, "description": "Not Found"}, 404)
        call.status = 200
        return Response(stored.data, media_type="application/octet-stream")

    async def _api_getme(self, call: Call) -> dict[str, Any]:
        return {**self.bot_user, "can_join_groups": True, "can_read_all_group_messages": not self.privacy_mode,
                "supports_inline_queries": False}

    async def _api_getupdates(self, call: Call) -> list[dict[str, Any]]:
        if self.webhook is not None:
            raise _ApiError(409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook "
                                 "to delete the webhook first")
        offset, limit = call.params.get("offset"), call.params.get("limit") or 100
        if isinstance(offset, int) and offset > 0:
            self._pending = [u for u in self._pending if u["update_id"] >= offset]
        allowed = call.params.get("allowed_updates") or None
        self._polls += 1
        poll = self._polls
        self._arrived.set()  # an older long poll gives way to this one
        deadline = time.monotonic() + min(float(call.params.get("timeout") or 0), LONG_POLL_CAP)
        while True:
            ready = [u for u in self._pending if allowed is None or any(key in u for key in allowed)]
            remaining = deadline - time.monotonic()
            if ready or remaining <= 0 or self._closed:
                return ready[:limit]
            if poll != self._polls:
                raise _ApiError(409, "Conflict: terminated by other getUpdates request; make sure that only one "
                                     "bot instance is running")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    async def _api_getfile(self, call: Call) -> dict[str, Any]:
        stored = self.files.get(str(call.params.get("file_id")))
        if stored is None:
            raise _ApiError(400, "Bad Request: invalid file_id")
        if stored.size > DOWNLOAD_LIMIT:
            raise _ApiError(400, "Bad Request: file is too big")
        return {"file_id": stored.file_id, "file_unique_id": stored.unique_id, "file_size": stored.size,
                "file_path": stored.path}

    async def _api_sendmessage(self, call: Call) -> dict[str, Any]:
        text = call.params.get("text")
        if not text:
            raise _ApiError(400, "Bad Request: message text is empty")
        return self._bot_sends(call, BotMessage(0, 0, call.at, text=str(text)))

    async def _api_senddocument(self, call: Call) -> dict[str, Any]:
        upload = _file_param(call, "document")
        if len(upload.data) > DOCUMENT_LIMIT:
            raise _ApiError(413, "Request Entity Too Large")
        return self._bot_sends(call, BotMessage(0, 0, call.done_at, caption=call.params.get("caption"),
                                                document=upload))

    async def _api_sendphoto(self, call: Call) -> dict[str, Any]:
        upload = _file_param(call, "photo")
        if len(upload.data) > PHOTO_LIMIT:
            raise _ApiError(413, "Request Entity Too Large")
        return self._bot_sends(call, BotMessage(0, 0, call.done_at, caption=call.params.get("caption"),
                                                photo=upload))

    async def _api_editmessagetext(self, call: Call) -> dict[str, Any]:
        message = self._sent.get((call.params.get("chat_id"), call.params.get("message_id")))  # type: ignore[arg-type]
        if message is None or message.deleted:
            raise _ApiError(400, "Bad Request: message to edit not found")
        text = str(call.params.get("text") or "")
        if text == message.text:
            raise _ApiError(400, NOT_MODIFIED)
        message.text = text
        message.edits.append((call.at, text))
        return self._as_message(message)

    async def _api_deletemessage(self, call: Call) -> bool:
        message = self._sent.get((call.params.get("chat_id"), call.params.get("message_id")))  # type: ignore[arg-type]
        if message is None or message.deleted:
            raise _ApiError(400, "Bad Request: message to delete not found")
        message.deleted = True
        return True

    async def _api_sendchataction(self, call: Call) -> bool:
        self._chat(call)
        self.actions.append((call.params["chat_id"], str(call.params.get("action"))))
        return True

    async def _api_setmycommands(self, call: Call) -> bool:
        commands = call.params.get("commands") or []
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", command.get("command", "")):
                raise _ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(command.get("description", "")) <= 256:
                raise _ApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        scope = call.params.get("scope") or {"type": "default"}
        key = scope["type"]
        if key == "chat":
            if scope.get("chat_id") not in self._chats:
                raise _ApiError(400, "Bad Request: chat not found")
            key = f"chat:{scope['chat_id']}"
        if language := call.params.get("language_code"):
            if not re.fullmatch(r"[a-z]{2}", str(language)):  # "A two-letter ISO 639-1 language code"
                raise _ApiError(400, "Bad Request: LANG_CODE_INVALID")
            key = f"{key}/{language}"
        self.commands[key] = [(c["command"], c["description"]) for c in commands]
        return True

    async def _api_setwebhook(self, call: Call) -> bool:
        if not str(call.params.get("url", "")).startswith(("http://", "https://")):
            raise _ApiError(400, "Bad Request: bad webhook: HTTPS url must be provided for webhook")
        secret = call.params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise _ApiError(400, "Bad Request: secret token contains unallowed characters")
        if call.params.get("drop_pending_updates"):
            self._pending.clear()
        self.webhook = Webhook(str(call.params["url"]), secret, call.params.get("allowed_updates"))
        return True

    async def _api_deletewebhook(self, call: Call) -> bool:
        if call.params.get("drop_pending_updates"):
            self._pending.clear()
        self.webhook = None
        return True

    async def _api_getwebhookinfo(self, call: Call) -> dict[str, Any]:
        return {"url": self.webhook.url if self.webhook else "", "has_custom_certificate": False,
                "pending_update_count": len(self._pending)}

    # --- plumbing ---------------------------------------------------------------------------------------------

    def _store(self, data: bytes, folder: str, suffix: str, *, size: int | None = None) -> StoredFile:
        n = next(self._file_ids)
        stored = StoredFile(f"file-{n}", f"unique-{n}", f"{folder}/file_{n}{suffix}", data,
                            len(data) if size is None else size)
        self.files[stored.file_id] = stored
        return stored

    def _deliver(self, chat: dict[str, Any], fields: dict[str, Any], *, caption: str | None = None,
                 sender: dict[str, Any] | None = None, reply_to: dict[str, Any] | None = None,
                 media_group_id: str | None = None) -> dict[str, Any]:
        """Put a person's message in the chat and, unless privacy mode hides it, in the bot's updates."""
        message = {"message_id": next(self._message_ids[chat["id"]]), "date": int(time.time()), "chat": chat,
                   "from": sender or self.default_person, **fields}
        if caption is not None:
            message["caption"] = caption
            if entities := _entities(caption):
                message["caption_entities"] = entities
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        if media_group_id is not None:
            message["media_group_id"] = media_group_id
        self._messages[(chat["id"], message["message_id"])] = message
        if self._bot_sees(message):
            self._pending.append({"update_id": next(self._update_ids), "message": message})
            self._arrived.set()
        return message

    def _bot_sees(self, message: dict[str, Any]) -> bool:
        if not self.privacy_mode or message["chat"]["type"] == "private":
            return True
        said = message.get("text") or message.get("caption") or ""
        reply = message.get("reply_to_message") or {}
        return (said.startswith("/") or f"@{self.bot_user['username']}".lower() in said.lower()
                or reply.get("from", {}).get("id") == self.bot_user["id"])

    def _chat(self, call: Call) -> dict[str, Any]:
        chat = self._chats.get(call.params.get("chat_id"))  # type: ignore[arg-type]
        if chat is None:
            raise _ApiError(400, "Bad Request: chat not found")
        return chat

    def _bot_sends(self, call: Call, message: BotMessage) -> dict[str, Any]:
        chat = self._chat(call)
        message.chat_id, message.message_id = chat["id"], next(self._message_ids[chat["id"]])
        reply = call.params.get("reply_parameters") or {}
        message.reply_to = reply.get("message_id") or call.params.get("reply_to_message_id")
        self._sent[(chat["id"], message.message_id)] = message
        return self._as_message(message)

    def _as_message(self, message: BotMessage) -> dict[str, Any]:
        payload: dict[str, Any] = {"message_id": message.message_id, "date": int(time.time()),
                                   "chat": self._chats[message.chat_id], "from": self.bot_user}
        if message.text is not None:
            payload["text"] = message.text
        if message.caption is not None:
            payload["caption"] = message.caption
        if message.document is not None:
            stored = self._store(message.document.data, "documents", ".bin")
            payload["document"] = {"file_id": stored.file_id, "file_unique_id": stored.unique_id,
                                   "file_name": message.document.filename, "file_size": stored.size}
        return payload

    def _take_rule(self, method: str) -> _Rule | None:
        for rule in self._rules:
            if rule.method == method and rule.times > 0:
                rule.times -= 1
                return rule
        return None

    def _flooded(self, chat_id: object) -> int | None:
        """Seconds to wait if this chat is over its flood limit; else count the call and return None."""
        if self._flood is None or not isinstance(chat_id, int):
            return None
        limit, seconds, retry_after = self._flood
        window, now = self._flood_windows[chat_id], time.monotonic()
        while window and window[0] <= now - seconds:
            window.popleft()
        if len(window) >= limit:
            return retry_after
        window.append(now)
        return None

    def _error(self, call: Call, status: int, description: str | None, *, retry_after: int | None = None) -> Response:
        text = description or _DESCRIPTIONS.get(status) or ("Internal Server Error" if status >= 500 else "Bad Request")
        if status == 429 and retry_after is not None and description is None:
            text = f"Too Many Requests: retry after {retry_after}"
        call.status, call.description = status, text
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": text}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        return JSONResponse(body, status)


_DESCRIPTIONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden: bot was blocked by the user",
                 404: "Not Found", 409: "Conflict", 413: "Request Entity Too Large", 429: "Too Many Requests",
                 500: "Internal Server Error", 502: "Bad Gateway"}


class _ApiError(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status, self.description = status, description


async def _parameters(request: Request) -> tuple[dict[str, Any], dict[str, Upload]]:
    """A method's parameters from the query string and the body, typed as Telegram reads them."""
    raw: dict[str, Any] = dict(request.query_params)
    files: dict[str, Upload] = {}
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        raw.update(await request.json())
    elif content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        async with request.form(max_part_size=10 * 2**20) as form:
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    files[key] = Upload(value.filename, value.content_type, await value.read())
                else:
                    raw[key] = value
    return {key: _typed(key, value) for key, value in raw.items()}, files


def _typed(key: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if key in JSON_FIELDS:
        return json.loads(value)
    if key in INT_FIELDS:
        with contextlib.suppress(ValueError):
            return int(value)
        return value
    if key in BOOL_FIELDS:
        return value.lower() == "true"
    return value


def _file_param(call: Call, name: str) -> Upload:
    value = call.params.get(name)
    if isinstance(value, str) and value.startswith("attach://"):
        value = call.files.get(value.removeprefix("attach://"))
    else:
        value = call.files.get(name)
    if value is None:
        raise _ApiError(400, f"Bad Request: there is no {name} in the request")
    return value


def _entities(text: str) -> list[dict[str, Any]]:
    """Entities as Telegram's clients mark them up: offsets and lengths in UTF-16 code units."""
    found = []
    for kind, pattern in ENTITY_PATTERNS:
        for match in pattern.finditer(text):
            offset = len(text[:match.start()].encode("utf-16-le")) // 2
            length = len(match.group().encode("utf-16-le")) // 2
            found.append({"type": kind, "offset": offset, "length": length})
    return sorted(found, key=lambda entity: entity["offset"])
