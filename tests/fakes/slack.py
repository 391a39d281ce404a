"""A loopback fake of the Slack Web API subset unmark uses, plus the Slack side of events (STYLE.md 7.7).

slack_sdk talks to it unchanged through ``SLACK_API_URL`` (``fake.api_url``). It must run on a real port
(``async with fake.serving():``) because slack_sdk's async client is aiohttp, and because every absolute URL
Slack hands out (``url_private``, upload URLs, ``response_url``, the Socket Mode WebSocket) points back here.

What it speaks:
- ``POST|GET /api/<method>`` for ``auth.test``, ``apps.connections.open``, ``chat.postMessage/update/delete/
  postEphemeral``, ``reactions.add/remove``, ``files.info``, ``files.getUploadURLExternal``,
  ``files.completeUploadExternal``, ``views.publish`` and ``users.info``; form, JSON or query parameters,
  ``Bearer`` token.
- ``POST /upload/<file_id>``: the raw bytes of an upload (kept in ``fake.uploads`` once completed).
- ``GET /files-pri/<team>-<file_id>/<name>``: a shared file, only for the bot token; anything else gets
  Slack's HTML sign-in page with status 200, as real Slack does when ``files:read`` is missing.
- ``POST /commands/<id>``: a ``response_url`` (ephemeral answers to /unmark and the shortcut); a body with
  ``replace_original`` or ``delete_original`` changes the last message posted there, as Slack does
  (``fake.ephemeral_shown()`` is what the person still sees).
- ``conversations.replies``: the messages of a thread people posted (``fake.post_as_person(event)``).
- ``WS /link``: Socket Mode; ``fake.push(envelope)`` sends, ``fake.socket_acks`` holds the answers.

Scripting: ``fake.add_file(data, name)`` shares a file and returns its object as events carry it;
``fake.locales["U0LI"] = "zh-CN"`` is what users.info says of a person's locale (``en-US`` for anyone else, and only
when asked ``include_locale``); ``fake.rate_limit("chat.update", retry_after=1)`` answers the next call with 429 +
``Retry-After``;
``fake.fail("files.info", "file_not_found")`` with ``{"ok": false}``; ``fake.files_readable = False`` turns
every download into the sign-in page. Payload builders (``message_event``, ``event_callback``,
``slash_command``, ``message_shortcut``) and ``signed_headers`` play Slack's side of an HTTP delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.fakes.servers import serve

BOT_TOKEN = "xoxb-fake-bot-token"
APP_TOKEN = "xapp-fake-app-token"
SIGNING_SECRET = "fake-signing-secret"
TEAM_ID, BOT_USER_ID, BOT_ID, APP_ID = "T0FAKE", "U0UNMARK", "B0UNMARK", "A0UNMARK"
SIGN_IN_PAGE = (
    "<!DOCTYPE html><html><head><title>Slack</title></head>"
    "<body><h1>Sign in to your workspace</h1></body></html>"
)


@dataclass(slots=True)
class Call:
    """One Web API call as received, and what it answered."""

    method: str
    params: dict[str, Any]
    token: str | None
    at: float  # time.monotonic()
    status: int = 200
    error: str | None = None


@dataclass(slots=True)
class Message:
    """A message in a conversation; ``texts`` is every version of it (posted, then each chat.update)."""

    channel: str
    ts: str
    texts: list[str]
    thread_ts: str | None = None
    deleted: bool = False

    @property
    def text(self) -> str:
        """The text shown now."""
        return self.texts[-1]


@dataclass(slots=True)
class SharedFile:
    """A file someone shared in Slack, as the fake stores it."""

    id: str
    name: str
    mimetype: str
    filetype: str
    data: bytes
    size: int  # as announced; may differ from len(data) to model a lying or huge file


@dataclass(slots=True)
class Upload:
    """A file the bot uploaded with files_upload_v2 and completed into a conversation."""

    file_id: str
    filename: str
    title: str | None
    data: bytes
    channel: str | None
    thread_ts: str | None
    initial_comment: str | None
    at: float  # time.monotonic() at files.completeUploadExternal


@dataclass(slots=True)
class _Fault:
    method: str
    times: int
    status: int
    error: str
    retry_after: float | None = None


@dataclass(slots=True)
class FakeSlack:
    """Slack's Web API, file hosting, response URLs and Socket Mode, for one workspace with one bot."""

    bot_token: str = BOT_TOKEN
    app_token: str = APP_TOKEN
    team_id: str = TEAM_ID
    bot_user_id: str = BOT_USER_ID
    bot_id: str = BOT_ID
    files_readable: bool = True
    url: str = ""  # http://127.0.0.1:<port>, set by serving()
    calls: list[Call] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    ephemerals: list[dict[str, Any]] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)  # JSON posted to response_urls
    _shown: dict[str, list[str]] = field(default_factory=dict)  # response_url → ephemeral texts still shown
    people_messages: list[dict[str, Any]] = field(default_factory=list)  # what people posted (message events)
    reactions: list[tuple[str, str, str, str]] = field(default_factory=list)  # (add|remove, channel, ts, name)
    views: list[dict[str, Any]] = field(default_factory=list)  # views.publish parameters
    uploads: list[Upload] = field(default_factory=list)
    downloads: list[tuple[str, str | None]] = field(default_factory=list)  # (file id, Authorization header)
    socket_acks: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, SharedFile] = field(default_factory=dict)
    locales: dict[str, str] = field(default_factory=dict)  # user id → locale, as users.info tells it
    _pending_uploads: dict[str, tuple[str, int, bytes | None]] = field(default_factory=dict)
    _faults: list[_Fault] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _outbox: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    app: Starlette = field(init=False)

    def __post_init__(self) -> None:
        self.app = Starlette(routes=[
            Route("/api/{method}", self._api, methods=["GET", "POST"]),
            Route("/upload/{file_id}", self._upload, methods=["POST"]),
            Route("/files-pri/{key}/{name}", self._download, methods=["GET"]),
            Route("/commands/{hook}", self._response_url, methods=["POST"]),
            WebSocketRoute("/link", self._socket),
        ])

    # --- running and scripting -------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[FakeSlack]:
        """Serve the fake on a loopback port for the length of the block."""
        async with serve(self.app) as url:
            self.url = url
            yield self

    @property
    def api_url(self) -> str:
        """What SLACK_API_URL should be."""
        return f"{self.url}/api/"

    def add_file(self, data: bytes, name: str, *, mimetype: str = "image/jpeg", filetype: str | None = None,
                 size: int | None = None) -> dict[str, Any]:
        """Share a file in the workspace; returns the file object as a message event carries it."""
        file = SharedFile(f"F{next(self._ids):08d}", name, mimetype, filetype or name.rpartition(".")[2].lower(),
                          data, len(data) if size is None else size)
        self.files[file.id] = file
        return self._file_object(file)

    def rate_limit(self, method: str, *, retry_after: float = 1, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with 429 ``ratelimited`` and a Retry-After header."""
        self._faults.append(_Fault(method, times, 429, "ratelimited", retry_after))

    def fail(self, method: str, error: str, *, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with ``{"ok": false, "error": error}``."""
        self._faults.append(_Fault(method, times, 200, error))

    def post_as_person(self, event: dict[str, Any]) -> dict[str, Any]:
        """Keep a person's message (a ``message_event``) where conversations.replies can read it; returns it."""
        self.people_messages.append(event)
        return event

    def ephemeral_shown(self) -> list[str]:
        """The ephemeral answers (through response_urls) the person still sees, in the order posted."""
        return [text for texts in self._shown.values() for text in texts]

    def called(self, method: str) -> list[Call]:
        """The calls of one Web API method, in order."""
        return [call for call in self.calls if call.method == method]

    def in_channel(self, channel: str) -> list[Message]:
        """Messages the bot posted in a channel (deleted ones included, flagged)."""
        return [message for message in self.messages if message.channel == channel]

    async def push(self, envelope: dict[str, Any]) -> None:
        """Send a Socket Mode envelope to the connected app (queued until one connects)."""
        await self._outbox.put(envelope)

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``condition()`` holds, re-checked whenever the fake records something."""
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(condition)

    # --- payloads, as Slack would send them --------------------------------------------------------

    def message_event(self, *, channel: str, user: str = "U0ALICE", text: str = "", files: list[dict] | None = None,
                      channel_type: str = "im", thread_ts: str | None = None) -> dict[str, Any]:
        """A ``message`` event (subtype ``file_share`` when files are attached)."""
        event: dict[str, Any] = {"type": "message", "channel": channel, "user": user, "text": text,
                                 "ts": self._ts(), "channel_type": channel_type, "team": self.team_id}
        if files:
            event |= {"subtype": "file_share", "files": files, "upload": False, "display_as_bot": False}
        if thread_ts:
            event["thread_ts"] = thread_ts
        return event

    def mention_event(self, *, channel: str, user: str = "U0ALICE", text: str = "", files: list[dict] | None = None,
                      thread_ts: str | None = None) -> dict[str, Any]:
        """An ``app_mention`` event; the text starts with the bot's mention, as Slack writes it."""
        event: dict[str, Any] = {"type": "app_mention", "channel": channel, "user": user, "ts": self._ts(),
                                 "text": f"<@{self.bot_user_id}> {text}".strip(), "team": self.team_id}
        if files:
            event["files"] = files
        if thread_ts:
            event["thread_ts"] = thread_ts
        return event

    def event_callback(self, event: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
        """The Events API envelope around one event."""
        return {
            "token": "legacy-verification-token", "team_id": self.team_id, "api_app_id": APP_ID, "event": event,
            "type": "event_callback", "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": int(time.time()), "is_ext_shared_channel": False,
            "authorizations": [{"team_id": self.team_id, "user_id": self.bot_user_id, "is_bot": True}],
        }

    def slash_command(self, text: str, *, channel: str = "C0GENERAL", user: str = "U0ALICE") -> dict[str, str]:
        """The form fields of a /unmark invocation."""
        return {
            "token": "legacy-verification-token", "team_id": self.team_id, "team_domain": "fake",
            "channel_id": channel, "channel_name": "general", "user_id": user, "user_name": "alice",
            "command": "/unmark", "text": text, "api_app_id": APP_ID,
            "response_url": self._response_hook(), "trigger_id": f"{next(self._ids)}.trigger",
        }

    def message_shortcut(self, message: dict[str, Any], *, channel: str, callback_id: str = "remove_watermark",
                         user: str = "U0BOB") -> dict[str, str]:
        """The form body of a message shortcut on ``message`` (a message event as posted)."""
        payload = {
            "type": "message_action", "token": "legacy-verification-token", "action_ts": self._ts(),
            "team": {"id": self.team_id, "domain": "fake"}, "user": {"id": user, "name": "bob"},
            "channel": {"id": channel, "name": "general"}, "callback_id": callback_id,
            "trigger_id": f"{next(self._ids)}.trigger", "message_ts": message["ts"], "message": message,
            "response_url": self._response_hook(),
        }
        return {"payload": json.dumps(payload)}

    def socket_envelope(self, payload: dict[str, Any], *, kind: str = "events_api") -> dict[str, Any]:
        """A Socket Mode envelope around an Events API payload (or a command/interactive one)."""
        return {"envelope_id": str(uuid.uuid4()), "payload": payload, "type": kind,
                "accepts_response_payload": kind != "events_api", "retry_attempt": 0, "retry_reason": ""}

    # --- the Web API -------------------------------------------------------------------------------

    async def _api(self, request: Request) -> Response:
        method = request.path_params["method"]
        params: dict[str, Any] = dict(request.query_params)
        if request.method == "POST":
            if request.headers.get("content-type", "").startswith("application/json"):
                params |= await request.json()
            else:
                async with request.form() as form:
                    params |= {key: value for key, value in form.items() if isinstance(value, str)}
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else params.get("token")
        call = Call(method, params, token, time.monotonic())
        self.calls.append(call)
        response = self._answer(call)
        call.status = response.status_code
        await self._notify()
        return response

    def _answer(self, call: Call) -> Response:
        for fault in self._faults:
            if fault.method == call.method and fault.times > 0:
                fault.times -= 1
                call.error = fault.error
                headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else None
                return JSONResponse({"ok": False, "error": fault.error}, fault.status, headers)
        expected = self.app_token if call.method == "apps.connections.open" else self.bot_token
        if call.token != expected:
            call.error = "invalid_auth"
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        handler = self._methods().get(call.method)
        if handler is None:
            call.error = "unknown_method"
            return JSONResponse({"ok": False, "error": "unknown_method"})
        result = handler(call.params)
        if not result.get("ok", True):
            call.error = result["error"]
            return JSONResponse(result)
        return JSONResponse({"ok": True, **result})

    def _methods(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "auth.test": lambda p: {"url": "https://fake.slack.com/", "team": "Fake", "user": "unmark",
                                    "team_id": self.team_id, "user_id": self.bot_user_id, "bot_id": self.bot_id,
                                    "is_enterprise_install": False},
            "apps.connections.open": lambda p: {"url": self.url.replace("http://", "ws://") + "/link"},
            "chat.postMessage": self._post_message,
            "chat.update": self._update_message,
            "chat.delete": self._delete_message,
            "chat.postEphemeral": self._post_ephemeral,
            "reactions.add": lambda p: self._react("add", p),
            "reactions.remove": lambda p: self._react("remove", p),
            "files.info": self._file_info,
            "files.getUploadURLExternal": self._upload_url,
            "files.completeUploadExternal": self._complete_upload,
            "views.publish": self._publish_view,
            "conversations.replies": self._thread,
            "users.info": self._user_info,
        }

    def _user_info(self, p: dict[str, Any]) -> dict[str, Any]:
        """A person; their ``locale`` only with ``include_locale`` (Slack leaves it out otherwise)."""
        user_id = str(p.get("user", ""))
        if not user_id.startswith(("U", "W")):
            return {"ok": False, "error": "user_not_found"}
        user: dict[str, Any] = {"id": user_id, "team_id": self.team_id, "name": user_id.lower(), "is_bot": False}
        if str(p.get("include_locale", "")).lower() in {"true", "1"}:
            user["locale"] = self.locales.get(user_id, "en-US")
        return {"user": user}

    def _thread(self, p: dict[str, Any]) -> dict[str, Any]:
        """The thread whose parent is ``ts``: the parent first, then its replies (or a lone message)."""
        found = sorted((m for m in self.people_messages if m["channel"] == p.get("channel")
                        and p.get("ts") in (m["ts"], m.get("thread_ts"))), key=lambda m: m["ts"])
        if not found:
            return {"ok": False, "error": "thread_not_found"}
        return {"messages": found[:int(p.get("limit") or 1000)], "has_more": False}

    def _post_message(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("channel") or not (p.get("text") or p.get("blocks")):
            return {"ok": False, "error": "no_text" if p.get("channel") else "channel_not_found"}
        message = Message(p["channel"], self._ts(), [p.get("text", "")], p.get("thread_ts") or None)
        self.messages.append(message)
        return {"channel": message.channel, "ts": message.ts,
                "message": {"type": "message", "user": self.bot_user_id, "bot_id": self.bot_id,
                            "text": message.text, "ts": message.ts}}

    def _find(self, p: dict[str, Any]) -> Message | None:
        return next((m for m in self.messages if m.channel == p.get("channel") and m.ts == p.get("ts")
                     and not m.deleted), None)

    def _update_message(self, p: dict[str, Any]) -> dict[str, Any]:
        message = self._find(p)
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        message.texts.append(p.get("text", ""))
        return {"channel": message.channel, "ts": message.ts, "text": message.text}

    def _delete_message(self, p: dict[str, Any]) -> dict[str, Any]:
        message = self._find(p)
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        message.deleted = True
        return {"channel": message.channel, "ts": message.ts}

    def _post_ephemeral(self, p: dict[str, Any]) -> dict[str, Any]:
        self.ephemerals.append(dict(p))
        return {"message_ts": self._ts()}

    def _react(self, action: str, p: dict[str, Any]) -> dict[str, Any]:
        key = (p.get("channel", ""), p.get("timestamp", ""), p.get("name", ""))
        present = {(c, t, n) for a, c, t, n in self.reactions if a == "add"} - {
            (c, t, n) for a, c, t, n in self.reactions if a == "remove"}
        if action == "add" and key in present:
            return {"ok": False, "error": "already_reacted"}
        if action == "remove" and key not in present:
            return {"ok": False, "error": "no_reaction"}
        self.reactions.append((action, *key))
        return {}

    def _file_info(self, p: dict[str, Any]) -> dict[str, Any]:
        file = self.files.get(p.get("file", ""))
        if file is None:
            return {"ok": False, "error": "file_not_found"}
        return {"file": self._file_object(file)}

    def _upload_url(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("filename") or not str(p.get("length", "")).isdigit():
            return {"ok": False, "error": "invalid_arguments"}
        file_id = f"F{next(self._ids):08d}"
        self._pending_uploads[file_id] = (p["filename"], int(p["length"]), None)
        return {"upload_url": f"{self.url}/upload/{file_id}", "file_id": file_id}

    def _complete_upload(self, p: dict[str, Any]) -> dict[str, Any]:
        entries = json.loads(p.get("files", "[]"))
        pending = [self._pending_uploads.get(entry.get("id", "")) for entry in entries]
        if not entries or any(item is None or item[2] is None for item in pending):
            return {"ok": False, "error": "invalid_arguments"}
        done = []
        for entry, (filename, _, data) in zip(entries, pending):  # type: ignore[misc]
            del self._pending_uploads[entry["id"]]
            self.uploads.append(Upload(entry["id"], filename, entry.get("title"), data, p.get("channel_id"),
                                       p.get("thread_ts") or None, p.get("initial_comment"), time.monotonic()))
            done.append({"id": entry["id"], "name": filename, "title": entry.get("title") or filename})
        return {"files": done}

    def _publish_view(self, p: dict[str, Any]) -> dict[str, Any]:
        view = p.get("view")
        view = json.loads(view) if isinstance(view, str) else view
        if not p.get("user_id") or not isinstance(view, dict) or view.get("type") != "home":
            return {"ok": False, "error": "invalid_arguments"}
        self.views.append({"user_id": p["user_id"], "view": view})
        return {"view": {"id": f"V{next(self._ids):08d}", **view}}

    # --- the other endpoints ----------------------------------------------------------------------

    async def _upload(self, request: Request) -> Response:
        file_id = request.path_params["file_id"]
        data = await request.body()
        pending = self._pending_uploads.get(file_id)
        if pending is None or pending[2] is not None:
            return PlainTextResponse("Not Found", 404)
        if len(data) != pending[1]:  # Slack refuses a body that differs from the announced length
            return PlainTextResponse("length mismatch", 400)
        self._pending_uploads[file_id] = (pending[0], pending[1], data)
        return PlainTextResponse(f"OK - {len(data)}")

    async def _download(self, request: Request) -> Response:
        key = request.path_params["key"]
        authorization = request.headers.get("authorization")
        file = self.files.get(key.partition("-")[2])
        self.downloads.append((key.partition("-")[2], authorization))
        await self._notify()
        if not self.files_readable or authorization != f"Bearer {self.bot_token}" or file is None:
            return Response(SIGN_IN_PAGE, media_type="text/html")  # what Slack serves to the unauthorised
        return Response(file.data, media_type=file.mimetype)

    async def _response_url(self, request: Request) -> Response:
        body = await request.json()
        self.responses.append(body)
        shown = self._shown.setdefault(request.path_params["hook"], [])
        if body.get("delete_original") in (True, "true"):
            if shown:
                shown.pop()
        elif body.get("replace_original") in (True, "true") and shown:
            shown[-1] = body.get("text", "")
        else:
            shown.append(body.get("text", ""))
        await self._notify()
        return PlainTextResponse("ok")

    async def _socket(self, websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"type": "hello", "num_connections": 1,
                                   "connection_info": {"app_id": APP_ID}})

        async def forward() -> None:
            while True:
                await websocket.send_json(await self._outbox.get())

        sender = asyncio.create_task(forward())
        try:
            while True:
                self.socket_acks.append(json.loads(await websocket.receive_text()))
                await self._notify()
        except WebSocketDisconnect:
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    # --- helpers ------------------------------------------------------------------------------------

    def _file_object(self, file: SharedFile) -> dict[str, Any]:
        private = f"{self.url}/files-pri/{self.team_id}-{file.id}/{file.name}"
        return {
            "id": file.id, "created": int(time.time()), "name": file.name, "title": file.name,
            "mimetype": file.mimetype, "filetype": file.filetype, "pretty_type": file.filetype.upper(),
            "user": "U0ALICE", "mode": "hosted", "is_external": False, "is_public": False, "size": file.size,
            "url_private": private, "url_private_download": f"{private}?download=1",
            "permalink": f"https://fake.slack.com/files/U0ALICE/{file.id}/{file.name}",
        }

    def _ts(self) -> str:
        return f"{int(time.time())}.{next(self._ids):06d}"

    def _response_hook(self) -> str:
        return f"{self.url}/commands/{uuid.uuid4().hex}"

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


def signed_headers(body: bytes, *, secret: str = SIGNING_SECRET, timestamp: int | None = None,
                   content_type: str = "application/json") -> dict[str, str]:
    """The headers Slack sends with an HTTP delivery, signed the way Slack signs them."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body)
    return {"content-type": content_type, "x-slack-request-timestamp": stamp, "x-slack-signature": signature}


def form_body(fields: dict[str, str]) -> bytes:
    """A form-encoded body (slash commands and interactivity payloads)."""
    return urlencode(fields).encode()
