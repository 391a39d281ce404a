"""The local shell chat: type an image path or link, get the cleaned file in the output folder."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TextIO

from adapters.paths import typed_path
from bot import messages
from bot.config import Settings
from bot.core import Service
from bot.errors import UnreadableFile
from bot.i18n import ENGLISH, Translations
from bot.jobs import ChatRef, ImageJob
from bot.links import looks_like_link
from bot.outputs import OutputFolder

DEFAULT_OUT = Path("unmark-out")


class ShellReplies:
    """Replies for a terminal: status lines on ``status``, results written into ``out_dir``.

    ``out_dir`` may be an OutputFolder shared by several replies (one per `unmark clean` argument), so that
    their results never take each other's names.
    """

    def __init__(self, out_dir: Path | OutputFolder, *, stream: TextIO = sys.stdout,
                 status: TextIO | None = None, tr: Translations = ENGLISH) -> None:
        self.out = out_dir if isinstance(out_dir, OutputFolder) else OutputFolder(out_dir)
        self.tr = tr  # the terminal's language
        self.stream = stream
        self.status = status  # None: keep quiet while working (a progress bar owns the terminal)
        self.saved: list[Path] = []

    async def progress(self, text: str) -> None:
        """Rewrite the status line in place on a terminal; into a pipe or a file, only the outcome is written,
        so each image is one line there (``ls *.jpg | unmark run > log``)."""
        if self.status is None or not self.status.isatty():
            return
        self.status.write(f"\r\033[K{text}")
        self.status.flush()

    async def send_image(self, data: bytes, filename: str, caption: str) -> None:
        """Write the result into the output folder under a name no other result has, and say which."""
        path = await asyncio.to_thread(self.out.save, filename, data)
        self.saved.append(path)
        await self.say(messages.saved(caption, path, tr=self.tr))

    async def say(self, text: str) -> None:
        """Print one line, ending any status line first."""
        if self.status is not None and self.status.isatty():
            self.status.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()


class LocalPlatform:
    """The terminal as the core's Platform: a record's source is a local path; its answers go through the
    replies ``make_replies`` gives it, into the session's output folder (which the record names in
    ``answer_to``)."""

    def __init__(self, name: str, make_replies: Callable[[ImageJob], ShellReplies]) -> None:
        self.name, self._make_replies = name, make_replies

    async def fetch(self, job: ImageJob) -> bytes:
        """Read the file the person named."""
        try:
            return await asyncio.to_thread(Path(job.source).read_bytes)
        except OSError as exc:
            raise UnreadableFile(job.source, exc.strerror or "") from None

    @contextlib.asynccontextmanager
    async def replies(self, job: ImageJob) -> AsyncIterator[ShellReplies]:
        """Lines in the terminal, results in the record's output folder."""
        yield self._make_replies(job)


def job_for(chat: ChatRef, text: str, *, out_dir: Path, language: str = "") -> ImageJob:
    """A typed line is a link or a path; its result goes to ``out_dir``. A file's size is checked before it is read.

    ``language`` is the terminal's (``bot.config.terminal_language``).
    """
    text = text.strip()
    if looks_like_link(text):
        return ImageJob.link(chat, text, answer_to=str(out_dir), language=language)
    path = typed_path(text)
    try:
        size: int | None = path.stat().st_size
    except OSError:
        size = None
    return ImageJob(chat=chat, source=str(path), answer_to=str(out_dir), filename=path.name, size=size,
                    language=language)


def _is_a_path(text: str) -> bool:
    """Whether a line that starts with a slash, as commands do, is an absolute path instead: one with more than
    one part (/home/me/photo.jpg), or a file that is there."""
    return "/" in text[1:] or Path(text).exists()


def local_chat(platform: str) -> ChatRef:
    """The one chat of a local session, owned by the logged-in user."""
    try:
        user = getpass.getuser()
    except Exception:  # no user database entry (containers)
        user = "local"
    return ChatRef(platform=platform, chat_id="local", user_id=user)


async def run(service: Service, settings: Settings, *, out_dir: Path | OutputFolder = DEFAULT_OUT,
              stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout, language: str = "") -> None:
    """Read paths, links and commands line by line until /quit or end of input (pipes work too).

    ``language`` is the terminal's (``bot.config.terminal_language``): every line is said in it.
    """
    chat = local_chat("shell")
    tr = service.translations(language)
    replies = ShellReplies(out_dir, stream=stdout, status=stdout, tr=tr)
    platform = LocalPlatform("shell", lambda job: replies)  # one session, one output folder: names never clash
    await replies.say(tr.gettext(messages.SHELL_HINT))
    await replies.say(tr.gettext(messages.SHELL_HELP))
    if left := await service.attach_anew(platform):
        await replies.say(messages.unfinished([job.source for job in left], tr=tr))
    while True:
        if stdin.isatty():
            stdout.write("unmark> ")
            stdout.flush()
        line = await asyncio.to_thread(stdin.readline)
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        match text.split()[0].lower():
            case "/quit" | "/exit":
                break
            case "/help" | "/start":
                await replies.say(tr.gettext(messages.SHELL_HELP))
            case "/usage":
                await replies.say(await service.usage_text(chat, language=language))
            case "/stats":
                await replies.say(await service.stats_text(chat, language=language))
            case command if command.startswith("/") and not _is_a_path(text):
                await replies.say(tr.gettext(messages.NOT_A_COMMAND))
            case _:
                await service.handle(job_for(chat, text, out_dir=replies.out.path, language=language))
